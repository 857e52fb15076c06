"""The `onnxport` command: one thin command per verb; bodies call the library.

User mistakes (OnnxportError) become one clear line on stderr and exit code 2 (1 for a
failed verification). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import InputError, OnnxportError

console = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


def reports_errors(command):
    """Turn OnnxportError into `error: ...` and its exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except OnnxportError as error:
            console.print(f"[bold red]error:[/] {escape(str(error))}")
            sys.exit(error.exit_code)

    return wrapper


def _static_shape(ctx, param, value):
    if value is None:
        return None
    try:
        batch, sequence = (int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter("write it as BATCH,SEQUENCE, for example 1,128") from None
    return batch, sequence


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxport")
def main() -> None:
    """Export transformer encoders to verified ONNX artifacts, and run them."""


@main.command()
@click.option("-m", "--model", "model", help="Model folder or cached hub id [default: built-in all-MiniLM-L6-v2].")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Artifact directory to write.")
@click.option("--task", type=click.Choice(["feature-extraction", "sentence-embedding", "token-classification",
                                           "sequence-classification"]),
              help="What to export [default: detected from the model].")
@click.option("--pooling", type=click.Choice(["mean", "cls", "max", "pooler", "mean-sqrt-len", "last-token"]),
              help="Sentence-embedding pooling [default: from the sentence-transformers config, else mean].")
@click.option("--normalize/--no-normalize", default=None, help="L2-normalize sentence embeddings.")
@click.option("--opset", type=int, help="ONNX opset [default: newest the target onnxruntime runs].")
@click.option("--target-ort", help="onnxruntime version the artifact must run on, e.g. 1.16 [default: installed].")
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript", show_default=True,
              help="torch.onnx exporter; the other one is tried if this one fails.")
@click.option("--int32", is_flag=True, help="Graph takes int32 ids and masks.")
@click.option("--token-type-ids/--no-token-type-ids", default=None,
              help="Keep or drop the token_type_ids input (dropped: zeros are fed inside the graph).")
@click.option("--static-shape", callback=_static_shape, metavar="B,S", help="Fix batch and sequence sizes.")
@click.option("--output-names", help="Comma-separated output names (custom modules only).")
@click.option("--allow-pickle", is_flag=True, help="Allow loading pickle (.bin/.pt) weights.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the model's own Python code to run.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists and is not empty.")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Verify the export against PyTorch.")
@click.option("--texts", type=click.Path(path_type=Path), help="Texts to verify with (one per line or JSONL).")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Verification tolerance.")
@reports_errors
def export(model, out, task, pooling, normalize, opset, target_ort, exporter, int32, token_type_ids, static_shape,
           output_names, allow_pickle, trust_remote_code, force, verify, texts, atol):
    """Export a model to a verified ONNX artifact directory."""
    from .exporter import export as run_export
    from .texts import read_texts

    started = time.perf_counter()
    verify_texts = read_texts(texts) if texts else None
    artifact = None
    try:
        artifact = run_export(
            model, out=out, task=task, pooling=pooling, normalize=normalize, opset=opset, target_ort=target_ort,
            exporter=exporter, int32=int32, token_type_ids=token_type_ids, static_shape=static_shape,
            output_names=output_names.split(",") if output_names else None, allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code, force=force, verify=verify, texts=verify_texts, atol=atol,
            progress=lambda step: console.print(f"[dim]{time.perf_counter() - started:6.1f}s[/] {step}"),
        )
    except OnnxportError as error:
        if error.exit_code == 1 and out.exists():  # failed verification: show the evidence first
            from .artifact import Artifact

            _print_report(Artifact(out).files["model.onnx"]["verification"])
        raise
    _print_summary(artifact)
    console.print(f"[green]done[/] in {time.perf_counter() - started:.1f}s: {out}")


def _dims(dims: list) -> str:
    return escape("[" + ", ".join(map(str, dims)) + "]")


def _print_summary(artifact) -> None:
    manifest = artifact.manifest
    table = Table(title=f"{artifact.path}  ({manifest['task']}, opset {manifest['opset']}, "
                        f"onnxruntime >= {manifest['min_onnxruntime']})", title_justify="left")
    for column in ("", "name", "dtype", "dims"):
        table.add_column(column)
    for kind in ("inputs", "outputs"):
        for tensor in manifest[kind]:
            table.add_row(kind[:-1], tensor["name"], tensor["dtype"], _dims(tensor["dims"]))
    console.print(table)
    report = manifest["files"]["model.onnx"].get("verification")
    if report is None:
        console.print("[yellow]not verified[/] (--no-verify); run `onnxport verify` before shipping it")
    else:
        console.print(f"verified: [green]{len(report['checks'])} checks passed[/] over {report['texts']} texts, "
                      f"shapes {', '.join('x'.join(map(str, s)) for s in report['shapes'])}")


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--model-file", default="model.onnx", show_default=True, help="Which model file of the artifact.")
@click.option("--reference", type=click.Path(path_type=Path), help="Reference model folder [default: the source].")
@click.option("--texts", type=click.Path(path_type=Path), help="Texts file (one per line or JSONL).")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Tolerance for fp32 files.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@reports_errors
def verify(artifact, model_file, reference, texts, atol, as_json):
    """Check an artifact against PyTorch (fp32) or its fp32 model (int8/fp16); exit 1 on a mismatch."""
    from .texts import read_texts
    from .verification import verify as run_verify

    report = run_verify(artifact, model_file=model_file, reference=reference,
                        texts=read_texts(texts) if texts else None, atol=atol)
    data = report.to_dict()
    if as_json:
        stdout.print_json(json.dumps(data))
    else:
        _print_report(data)
    sys.exit(0 if report.passed else 1)


def _print_report(report: dict) -> None:
    table = Table(title=f"{report['model_file']}: {report['mode']} against {report['reference']}",
                  title_justify="left")
    for column in ("check", "output", "measured", "limit", "result", "worst input"):
        table.add_column(column)
    for check in report["checks"]:
        measured = ", ".join(f"{k}={v:.3g}" for k, v in check["measured"].items())
        limits = ", ".join(f"{k}{'≤' if 'diff' in k else '≥'}{v:g}" for k, v in check["limits"].items())
        result = "[green]ok[/]" if check["passed"] else "[bold red]FAIL[/]"
        worst = check.get("note") or check.get("worst_input") or ""
        table.add_row(check["name"], check["output"], measured, limits, result, escape(worst))
    stdout.print(table)
    for reason in report.get("skipped", []):
        stdout.print(f"[yellow]skipped[/] {reason}")
    passed = report["passed"]
    failed = sum(not c["passed"] for c in report["checks"])
    stdout.print("[green]PASSED[/]" if passed else f"[bold red]FAILED[/]: {failed} of {len(report['checks'])} checks")


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@reports_errors
def inspect(path, as_json):
    """Show what is inside a .onnx file or an artifact, without running it."""
    from .graph import inspect as run_inspect

    info = run_inspect(path)
    if as_json:
        stdout.print_json(json.dumps(info))
        return
    _print_inspection(info)


def _print_inspection(info: dict) -> None:
    if "artifact" in info:
        art = info["artifact"]
        stdout.print(f"[bold]artifact[/] {art['path']}: task {art['task']}"
                     + (f", pooling {art['pooling']}, normalize {art['normalize']}" if art["pooling"] else "")
                     + f", max length {art['max_length']}")
        if art["labels"]:
            stdout.print("labels: " + ", ".join(f"{k}={v}" for k, v in art["labels"].items()))
        for name, entry in art["files"].items():
            status = {True: "[green]verified[/]", False: "[red]verification FAILED[/]", None: "[yellow]not verified[/]"}
            stdout.print(f"  {name} ({entry['kind']}): {status[entry['verified']]}")
    model = info["model"]
    table = Table(title=f"{model['path']}", title_justify="left")
    for column in ("", "name", "dtype", "dims"):
        table.add_column(column)
    for kind in ("inputs", "outputs"):
        for tensor in model[kind]:
            table.add_row(kind[:-1], tensor["name"], tensor["dtype"], _dims(tensor["dims"]))
    stdout.print(table)
    opsets = ", ".join(f"{domain} {version}" for domain, version in model["opsets"].items())
    stdout.print(f"opsets: {opsets}; IR {model['ir_version']}; needs onnxruntime >= {model['min_onnxruntime']}")
    stdout.print(f"producer: {model['producer']}; size {model['size_bytes'] / 1e6:.1f} MB"
                 + (f" (external data: {', '.join(model['external_data'])})" if model["external_data"] else "")
                 + f"; {model['parameters']:,} parameters; {model['nodes']} nodes")
    stdout.print("ops: " + ", ".join(f"{op} {count}" for op, count in model["op_types"].items()))
    stdout.print("fused transformer ops: " + (", ".join(f"{op} {n}" for op, n in model["fused_ops"].items())
                                              or "none (run `onnxport optimize`)"))
    if model["metadata"]:
        stdout.print("metadata: " + ", ".join(f"{k}={v}" for k, v in model["metadata"].items()))
    for tool, result in model["loads"].items():
        stdout.print(f"{tool}: " + ("[green]loads[/]" if result["ok"] else f"[red]fails[/]: {result['error']}"))


def pipeline_options(command):
    """Options shared by embed, ner and classify."""
    options = [
        click.argument("artifact", type=click.Path(path_type=Path)),
        click.argument("inputs", nargs=-1),
        click.option("-o", "--output", type=click.Path(path_type=Path),
                     help="Write .jsonl, .npy or .parquet [default: JSON Lines on stdout]."),
        click.option("--text-field", default="text", show_default=True, help="Text field of .jsonl/.csv/.parquet."),
        click.option("--id-field", default="id", show_default=True, help="Id field of .jsonl/.csv/.parquet."),
        click.option("--skip-bad", is_flag=True, help="Skip bad input rows (each is reported) instead of stopping."),
        click.option("--batch-size", type=int, default=32, show_default=True),
        click.option("--model", "model_kind", type=click.Choice(["auto", "fp32", "opt", "int8", "fp16"]),
                     default="auto", show_default=True, help="Which model file of the artifact."),
        click.option("--providers", help="Comma-separated onnxruntime providers, e.g. cuda,cpu."),
        click.option("--threads", type=int, help="Intra-op threads [default: physical cores]."),
        click.option("--backend", type=click.Choice(["onnx", "torch"]), default="onnx", show_default=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run_pipeline(method: str, artifact, inputs, output, text_field, id_field, skip_bad, batch_size, model_kind,
                  providers, threads, backend, **method_options) -> None:
    from .pipelines import load
    from .textio import check_output, read_rows, write_results

    check_output(output)
    rows = read_rows(inputs, text_field=text_field, id_field=id_field, skip_bad=skip_bad,
                     warn=lambda message: console.print(f"[yellow]warning:[/] {escape(message)}"))
    pipeline = load(artifact, model=model_kind, providers=providers.split(",") if providers else None,
                    threads=threads, backend=backend)
    console.print(f"[dim]{pipeline.model_file} ({backend}), {len(rows)} texts[/]")
    run = getattr(pipeline, method, None)
    if run is None:
        raise InputError(f"{artifact} is a {pipeline.artifact.task.value} artifact; `onnxport {_COMMANDS[method]}` "
                         f"needs {_TASKS[method]}")
    texts = [row.text for row in rows]
    chunk = max(batch_size * 8, 256)
    results: list = []
    with _progress(len(texts) > chunk) as progress:
        task = progress.add_task(method, total=len(texts)) if progress else None
        for start in range(0, len(texts), chunk):
            part = run(texts[start:start + chunk], batch_size=batch_size, **method_options)
            results.extend(_as_records(method, part))
            if progress:
                progress.update(task, advance=len(part))
    write_results(rows, results, output)


_COMMANDS = {"embed": "embed", "extract": "ner", "classify": "classify"}
_TASKS = {"embed": "a sentence-embedding or feature-extraction artifact",
          "extract": "a token-classification artifact", "classify": "a sequence-classification artifact"}


def _as_records(method: str, part):
    if method == "embed":
        return list(part)
    key = {"extract": "entities", "classify": "labels"}[method]
    return [{key: value} for value in part]


def _progress(wanted: bool):
    import contextlib

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    if not wanted or not console.is_terminal:
        return contextlib.nullcontext(None)
    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


@main.command()
@pipeline_options
@reports_errors
def embed(artifact, inputs, **options):
    """Sentence embeddings for texts (arguments, a file, or stdin)."""
    _run_pipeline("embed", artifact, inputs, **options)


@main.command()
@pipeline_options
@click.option("--aggregation", type=click.Choice(["simple", "first", "max", "average"]), default="simple",
              show_default=True, help="How token labels become word and entity labels.")
@reports_errors
def ner(artifact, inputs, aggregation, **options):
    """Entities (label, text, start, end, score) for texts."""
    _run_pipeline("extract", artifact, inputs, aggregation=aggregation, **options)


@main.command()
@pipeline_options
@click.option("--top-k", type=int, default=1, show_default=True, help="How many labels per text.")
@reports_errors
def classify(artifact, inputs, top_k, **options):
    """Labels with scores for texts."""
    _run_pipeline("classify", artifact, inputs, top_k=top_k, **options)


if __name__ == "__main__":  # pragma: no cover
    main()
