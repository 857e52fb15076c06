"""Options several `onnxport` commands share (the verbs that run an artifact over texts),
kept apart from the commands so that each command module can take them."""

from __future__ import annotations

from pathlib import Path

import click

from ..runtime.batching import DEFAULT_BATCH_TOKENS


def run_options(formats: str = ".jsonl, .npy or .parquet") -> list:
    """Options of every verb that runs an artifact over texts (embed, ner, classify, rerank, fill-mask)."""
    return [
        click.argument("artifact", type=click.Path(path_type=Path)),
        click.argument("inputs", nargs=-1),
        click.option("-o", "--output", type=click.Path(path_type=Path),
                     help=f"Write {formats} [default: JSON Lines on stdout]."),
        click.option("--text-field", default="text", show_default=True, help="Text field of .jsonl/.csv/.parquet."),
        click.option("--id-field", default="id", show_default=True, help="Id field of .jsonl/.csv/.parquet."),
        click.option("--skip-bad", is_flag=True, help="Skip bad input rows (each is reported) instead of stopping."),
        click.option("--batch-size", type=int, default=32, show_default=True, help="At most this many texts per model run."),
        click.option("--max-batch-tokens", type=click.IntRange(min=1), default=DEFAULT_BATCH_TOKENS, show_default=True,
                     help="At most this many padded tokens (texts x longest) per model run: short texts run in "
                          "batches of --batch-size, long ones in smaller batches (docs/performance.md)."),
        click.option("--model", "model_kind", type=click.Choice(["auto", "fp32", "opt", "int8", "fp16"]),
                     default="auto", show_default=True, help="Which model file of the artifact."),
        click.option("--providers", help="Comma-separated onnxruntime providers, e.g. cuda,cpu."),
        click.option("--threads", type=int, help="Intra-op threads [default: physical cores]."),
        click.option("--backend", type=click.Choice(["onnx", "torch"]), default="onnx", show_default=True),
    ]


def apply_options(command, options: list):
    for option in reversed(options):
        command = option(command)
    return command
