"""The report: its structure, the summary numbers, and how it reads and is written.

`_new_report` and `_new_result` start the JSON-ready dict that `measure` fills in
(`_mark_unavailable` records why a contender dropped out), and `_summarize` turns the raw
timings into medians, spreads, percentiles and speed-ups. The rest renders it: rows and
columns for markdown (`to_markdown`) and the terminal (`print_report`), and `write_reports`
writes report.md, report.json and chart.png.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ...core.artifact import Artifact
from ...core.files import write_bytes_atomic
from ...core.messages import first_line
from ...errors import InputError
from .chart import draw_chart, quality_text
from .contenders import Contender


def _new_report(art: Artifact, settings: dict, machine: dict, corpus: list[str], tokens: list[int], truncated: int,
                texts_source: str | None) -> dict:
    """The report before anything is measured: the artifact, the `machine` facts, the
    `settings` as recorded (Settings.recorded) and the texts."""
    source = art.manifest.get("source", {}).get("path")
    return {
        "format": 1,
        "artifact": str(art.path),
        "model": _model_name(art),
        "task": art.task.value,
        "source": source,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "partial": False,
        "interrupted_during": None,
        "machine": machine,
        "settings": settings,
        "texts": {"source": texts_source or "given", "count": len(corpus), "tokens": int(sum(tokens)),
                  "tokens_min": int(min(tokens)), "tokens_mean": round(float(np.mean(tokens)), 1),
                  "tokens_max": int(max(tokens)), "max_length": art.manifest["tokenizer"]["max_length"],
                  "truncated": truncated},
        "reference": None,
        "contenders": [],
    }


def _model_name(art: Artifact) -> str:
    source = art.manifest.get("source", {})
    path = Path(source.get("path") or art.path)
    # Packaged models live in .../<package>/model; the package name says more than "model".
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def _new_result(contender: Contender) -> dict:
    return {"name": contender.name, "kind": contender.kind, "file": contender.file,
            "size_bytes": contender.size_bytes, "verified": contender.verified,
            "available": contender.unavailable is None, "reason": contender.unavailable,
            "throughput": [], "latency_ms": None, "cold_start": None, "quality": None}


def _mark_unavailable(result: dict, error: BaseException, during: str | None = None) -> None:
    message = first_line(error)
    if not isinstance(error, InputError) and type(error).__module__.split(".")[0] != "onnxport":
        message = f"{type(error).__name__}: {message}"
    result["available"] = False
    result["reason"] = f"failed during {during}: {message}" if during else message


def _summarize(report: dict, results: dict[str, dict], seconds: dict[tuple[str, int], list[float]],
               latencies: dict[str, list[float]], tokens: list[int]) -> None:
    """Medians, spreads, percentiles and speed-ups from the raw timings: a run's `seconds` per
    timed pass (by contender and batch size), `latencies` per single-text call, and `tokens` per text."""
    count, total_tokens = len(tokens), int(sum(tokens))
    baseline = report["reference"]
    report["baseline"] = baseline
    for result in results.values():
        result["throughput"] = []
        for batch_size in report["settings"]["batch_sizes"]:
            runs = seconds[(result["name"], batch_size)]
            row = {"batch_size": batch_size, "runs": len(runs), "seconds": runs,
                   "texts_per_s": None, "texts_per_s_min": None, "texts_per_s_max": None, "tokens_per_s": None,
                   "speedup": None}
            if runs:
                median = float(np.median(runs))
                row.update(texts_per_s=count / median, texts_per_s_min=count / max(runs),
                           texts_per_s_max=count / min(runs), tokens_per_s=total_tokens / median)
            result["throughput"].append(row)
        samples = latencies[result["name"]]
        if samples:
            p50, p95, p99 = np.percentile(np.array(samples) * 1000, [50, 95, 99])
            result["latency_ms"] = {"batch_size": 1, "samples": len(samples), "p50": float(p50), "p95": float(p95),
                                    "p99": float(p99)}
    base = results.get(baseline)
    for result in results.values():
        for row in result["throughput"]:
            base_row = next((r for r in base["throughput"] if r["batch_size"] == row["batch_size"]), None) \
                if base else None
            if row["texts_per_s"] and base_row and base_row["texts_per_s"]:
                row["speedup"] = row["texts_per_s"] / base_row["texts_per_s"]


# ---------------------------------------------------------------- rendering

def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _mb(size: int | None) -> str:
    return "–" if size is None else f"{size / 1e6:,.1f}"


def _speedup(row: dict) -> str:
    return "–" if row["speedup"] is None else f"{row['speedup']:.2f}x"


def _cold(result: dict) -> tuple[str, str]:
    cold = result["cold_start"]
    if not cold:
        return "–", "–"
    if "error" in cold:
        return "failed", "–"
    return f"{cold['seconds']:.2f}", _fmt(cold.get("peak_rss_mb"), 0)


def throughput_rows(report: dict) -> list[list[str]]:
    rows = []
    for result in report["contenders"]:
        for row in result["throughput"]:
            if not result["available"] and not row["runs"]:
                continue
            spread = "–" if not row["runs"] else f"{_fmt(row['texts_per_s_min'])}–{_fmt(row['texts_per_s_max'])}"
            rows.append([result["name"], str(row["batch_size"]), _fmt(row["texts_per_s"]), spread,
                         _fmt(row["tokens_per_s"], 0), _speedup(row), str(row["runs"])])
    return rows


def summary_rows(report: dict) -> list[list[str]]:
    rows = []
    for result in report["contenders"]:
        if not result["available"] and not result["latency_ms"]:
            continue
        latency = result["latency_ms"] or {}
        cold, rss = _cold(result)
        rows.append([result["name"], _fmt(latency.get("p50"), 2), _fmt(latency.get("p95"), 2),
                     _fmt(latency.get("p99"), 2), cold, rss, _mb(result["size_bytes"]),
                     quality_text(result["quality"])])
    return rows


SUMMARY_COLUMNS = ["contender", "p50 ms", "p95 ms", "p99 ms", "cold start s", "peak RSS MB", "size MB", "quality"]


def throughput_columns(report: dict) -> list[str]:
    """The speed-up column names its baseline: PyTorch, or fp32 ONNX when PyTorch is unavailable."""
    return ["contender", "batch", "texts/s (median)", "min–max", "tokens/s",
            f"speed-up vs {report['baseline'] or '–'}", "runs"]


def _intro(report: dict) -> list[str]:
    s, t, m = report["settings"], report["texts"], report["machine"]
    baseline = report["baseline"]
    lines = [
        f"Artifact `{report['artifact']}` ({report['task']}, {report['model']}), {report['created']}.",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs"
        + (f" ({' '.join(m['cpu_flags'])})" if m["cpu_flags"] else "") + f", {m['platform']}, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + "."
        + (f" Load average (1/5/15 min) {'/'.join(map(str, m['load_average']))} at the start, "
           f"{'/'.join(map(str, m.get('load_average_end') or []))} at the end." if m.get("load_average") else ""),
        f"Texts: {t['count']} from {t['source']}; {t['tokens_min']}–{t['tokens_max']} tokens (mean "
        f"{t['tokens_mean']}), {t['truncated']} truncated at {t['max_length']}. Tokens counted by the artifact's "
        "tokenizer for every contender.",
        f"Every contender uses {s['threads']} thread{'s' if s['threads'] != 1 else ''}"
        + (", each in a process of its own" if any(r.get("runs_in") for r in report["contenders"]) else "")
        + ". After an untimed quality "
        f"pass over all texts and {s['warmup']} warm-up pass(es) per batch size, {s['repeats']} timed passes over "
        "all texts per batch size (median, with min–max), contenders taking turns within each pass; latency from "
        f"{s['latency_samples']} single-text calls.",
    ]
    if baseline == "pytorch":
        lines.append("Speed-up: throughput divided by PyTorch's at the same batch size, measured in this run.")
    elif baseline:
        lines.append(f"**PyTorch is unavailable**, so speed-up and quality are relative to `{baseline}` instead.")
    lines.append("Cold start: import + load + first result in a fresh interpreter; peak RSS of that process "
                 f"after one more batch of the {s.get('rss_batch') or max(s['batch_sizes'])} longest texts.")
    return lines


def runs_in_text(runs_in: dict) -> str:
    """'OpenVINO, inference precision f32; sentence-transformers 5.7.0, ... (python /venv/bin/python)'."""
    versions = ", ".join(f"{k} {v}" for k, v in (runs_in.get("versions") or {}).items() if v)
    return "; ".join(part for part in (runs_in.get("detail"), versions, f"`{runs_in['python']}`") if part)


def to_markdown(report: dict) -> str:
    lines = [f"# onnxport bench: {report['model']}", ""]
    if report["partial"]:
        lines += [f"**Partial report**: interrupted during {report['interrupted_during']}; "
                  "only what was measured until then is shown.", ""]
    lines += [f"{line}  " for line in _intro(report)] + [""]
    for title, columns, rows in (("Throughput", throughput_columns(report), throughput_rows(report)),
                                 ("Latency at batch 1, cold start, memory, size, quality", SUMMARY_COLUMNS,
                                  summary_rows(report))):
        alignment = ["---" if i == 0 or column == "quality" else "---:" for i, column in enumerate(columns)]
        lines += [f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "|".join(alignment) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows] + [""]
    ran = [r for r in report["contenders"] if r.get("runs_in")]
    if ran:
        lines += ["## What each contender ran", ""] + [f"- **{r['name']}**: {runs_in_text(r['runs_in'])}" for r in ran]
        lines += [""]
    unavailable = [r for r in report["contenders"] if not r["available"]]
    if unavailable:
        lines += ["## Not measured", ""] + [f"- **{r['name']}**: {r['reason']}" for r in unavailable] + [""]
    failed_cold = [r for r in report["contenders"] if r["cold_start"] and "error" in r["cold_start"]]
    lines += [f"- cold start of **{r['name']}** failed: {r['cold_start']['error']}" for r in failed_cold]
    return "\n".join(lines).rstrip() + "\n"


def print_report(report: dict, console) -> None:
    """The two tables (and what was not measured) on a rich console."""
    from rich.markup import escape
    from rich.table import Table

    from rich.console import Console

    if not console.is_terminal:  # a pipe or a file has no width to respect: do not crop the numbers
        console = Console(file=console.file, width=160, highlight=False, soft_wrap=True, no_color=True)
    title = f"{report['model']}: {report['texts']['count']} texts, {report['settings']['threads']} thread(s)"
    for columns, rows, caption in ((throughput_columns(report), throughput_rows(report), title),
                                   (SUMMARY_COLUMNS, summary_rows(report), "latency at batch 1, cold start, memory")):
        table = Table(title=caption, title_justify="left")
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i == 0 or column == "quality" else "right",
                             no_wrap=column != "quality")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    if report["baseline"] != "pytorch":
        console.print(f"[yellow]PyTorch unavailable[/]: speed-up and quality are relative to {report['baseline']}")
    for result in report["contenders"]:
        if not result["available"]:
            console.print(f"[yellow]not measured[/] {escape(result['name'])}: {escape(result['reason'])}")
    if report["partial"]:
        console.print(f"[yellow]partial[/]: interrupted during {escape(report['interrupted_during'])}")


def prepare_report_dir(report_dir: str | Path) -> Path:
    """Create REPORT_DIR up front, so a bad path fails before minutes of measuring."""
    folder = Path(report_dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"report directory {folder} is a file; choose a directory path with -o")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create report directory {folder}: {error.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise InputError(f"report directory {folder} is not writable; choose another with -o")
    return folder


def write_reports(report: dict, report_dir: str | Path) -> dict[str, Path]:
    """report.md, report.json and chart.png, each written to a temp file and renamed."""
    folder = prepare_report_dir(report_dir)
    chart = draw_chart(report)
    written = {}
    for name, data in (("report.json", (json.dumps(report, indent=2) + "\n").encode()),
                       ("report.md", to_markdown(report).encode()), ("chart.png", chart)):
        write_bytes_atomic(folder / name, data)
        written[name] = folder / name
    return written


