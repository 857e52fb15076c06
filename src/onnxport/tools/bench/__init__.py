"""Benchmark an artifact side by side: its model files, the PyTorch source, and with --against
sentence-transformers (torch, onnx, onnx int8, OpenVINO backends) and fastembed.

Every contender runs in a process of its own, on the same texts with the same thread count;
onnxport's files and PyTorch through the same pipeline code (tokenize, length-sorted batches,
run, restore order), the others through their own `encode`/`embed`. Contenders that need
other library versions run in side environments the bench builds once.
Measured per contender: throughput per batch size (median of repeated runs after warm-up,
with min/max), latency percentiles at batch 1, cold start and peak RSS (in a fresh
interpreter), file size, and quality against the PyTorch reference with verify's metrics.
Contenders take turns within each repeat so a noisy, shared CPU slows all of them alike;
speed-up is a ratio to the reference measured in the same run.

This process imports neither torch nor the contenders' libraries. Ctrl-C keeps what was
measured; the report says it is partial.

Modules, each building only on those before it: `scripts` (each contender as a program),
`side_envs` (the venvs), `workers` (a contender in its own process), `cold_start` (fresh
interpreters), `contenders` (what is measured, and how it loads), `chart` (the PNG), `report` (the report's
structure, summary numbers, markdown, terminal tables, files), `measurement` (settings and
the measuring run). This package holds `bench`, what the command does, and re-exports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ...core.artifact import Artifact
from ...errors import InputError
from ..textio import read_texts
from .chart import CHART_SIZE, draw_chart, quality_text
from .cold_start import measure_cold_start
from .contenders import (AGAINST, EMBEDDING_TASKS, Contender, PipelineRunner, Program, Runner, against_contender,
                         artifact_contenders, onnx_contender, program_contender, torch_contender)
from .measurement import Settings, measure, parse_batch_sizes
from .report import (SUMMARY_COLUMNS, prepare_report_dir, print_report, summary_rows, throughput_columns,
                     throughput_rows, to_markdown, write_reports)

__all__ = [
    "AGAINST", "CHART_SIZE", "EMBEDDING_TASKS", "SUMMARY_COLUMNS", "Contender", "PipelineRunner", "Program", "Runner",
    "Settings", "against_contender", "artifact_contenders", "bench", "draw_chart", "live_progress", "measure",
    "measure_cold_start", "onnx_contender", "parse_against", "parse_batch_sizes", "prepare_report_dir",
    "print_report", "program_contender", "quality_text", "summary_rows", "throughput_columns", "throughput_rows",
    "to_markdown", "torch_contender", "write_reports",
]


def parse_against(values: Sequence[str]) -> tuple[str, ...]:
    """--against values, each one name or several separated by commas, in order, once each."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in AGAINST]
    if unknown:
        raise InputError(f"unknown --against {', '.join(repr(n) for n in unknown)}; choose from {', '.join(AGAINST)} "
                         "(several separated by commas)")
    return tuple(dict.fromkeys(names))


def bench(artifact: str | Path, *, report_dir: str | Path, texts_file: str | Path | None = None,
          batch_sizes: Sequence[int] | None = None, against: Sequence[str] = (), quick: bool = False,
          threads: int | None = None, progress: Callable[..., None] | None = None,
          extra_contenders: Sequence[Contender] = ()) -> dict:
    """What `onnxport bench` does: measure, then write the three report files."""
    art = Artifact(artifact)
    overrides = {"batch_sizes": tuple(batch_sizes) if batch_sizes else None, "threads": threads}
    settings = Settings.quick(**overrides) if quick else dataclasses.replace(
        Settings(), **{k: v for k, v in overrides.items() if v is not None})
    texts = read_texts(texts_file) if texts_file else None
    prepare_report_dir(report_dir)
    report = measure(art, texts=texts, texts_source=str(texts_file) if texts_file else None, settings=settings,
                     against=against, extra_contenders=extra_contenders, progress=progress)
    report["files"] = {name: str(path) for name, path in write_reports(report, report_dir).items()}
    return report


@contextlib.contextmanager
def live_progress(console) -> Iterator[Callable[..., None]]:
    """The callback `measure` takes: a rich progress bar on a terminal; elsewhere (a pipe, a
    CI log) a plain line per step, `  12.3s [5/40] throughput onnx fp32 at batch 8 (1/5)`."""
    if not console.is_terminal:
        yield _step_lines(console)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("bench", total=None)

        def update(description: str | None, total: int | None = None) -> None:
            if total is not None:
                bar.update(task, total=total)
            if description is not None:
                bar.update(task, description=description, advance=1)

        yield update


def _step_lines(console, quiet_for: float = 2.0) -> Callable[..., None]:
    """One line per step; steps of the same phase (first word) that come within `quiet_for`
    seconds of the last line are counted but not printed, so quick ones (latency, a chunk of
    texts per contender) do not flood the log."""
    started = time.perf_counter()
    state: dict = {"done": 0, "total": None, "printed": float("-inf"), "phase": None}

    def update(description: str | None, total: int | None = None) -> None:
        if total is not None:
            state["total"] = total
        if description is None:
            return
        state["done"] += 1
        now = time.perf_counter()
        phase = description.split(" ", 1)[0]
        if phase == state["phase"] and now - state["printed"] < quiet_for:
            return
        state["phase"], state["printed"] = phase, now
        count = f"[{state['done']}/{state['total']}] " if state["total"] else ""
        console.print(f"{now - started:6.1f}s {count}{description}", markup=False, highlight=False)

    return update
