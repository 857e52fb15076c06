"""How the `onnxport` command shows results: the two consoles and every table it prints.

Data in (reports, manifests, inspection dicts), rich output out; no library calls here,
so the command bodies in `cli` stay short and these stay testable through the CLI runner.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from ..core.artifact import verdict_of
from ..core.model_files import MODEL_FILE

console = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


class _Table(Table):
    """A rich Table that, off a terminal (a pipe, a file, a CI log), takes the width its cells
    need rather than the console's 80 columns, so no name is cut with '…' or wrapped."""

    def __rich_console__(self, console, options):
        if not console.is_terminal:
            natural = Measurement.get(console, options.update_width(100_000), self).maximum
            options = options.update_width(max(options.max_width, natural))
        return super().__rich_console__(console, options)


def table(title: str, *columns: str, right: tuple[str, ...] = ()) -> Table:
    """A left-titled table with these columns; the ones named in `right` are numbers, right-aligned."""
    grid = _Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, justify="right" if column in right else "left")
    return grid


_COUNTED = re.compile(r"\b(\d+)/(\d+)\b")


@contextlib.contextmanager
def steps(started: float | None = None) -> Iterator[Callable[[str], None]]:
    """The `progress` callback a long command hands to the library.

    Off a terminal (a pipe, a log) every step is one plain line with the seconds since
    `started`: `  12.3s verifying model.onnx: batch 3/5 (b7 x 41 tokens)`. On a terminal
    steps stay as dim lines too, except counted ones ("i/n"), which drive a live bar instead
    of a line each; the bar disappears when the command is done."""
    started = time.perf_counter() if started is None else started

    def line(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - started:6.1f}s[/] {escape(message)}")

    if not console.is_terminal:
        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    # Results printed on stdout meanwhile go above the bar when both are this terminal, and
    # straight to their file when stdout is redirected (`> report.txt`).
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True, redirect_stdout=stdout.is_terminal) as bar:
        task = bar.add_task("", total=None)

        def update(message: str) -> None:
            counted = _COUNTED.search(message)
            if counted:
                done, total = int(counted[1]) - 1, int(counted[2])
                bar.update(task, description=escape(message), completed=done, total=total)
            else:
                line(message)
                bar.update(task, description=escape(message), completed=0, total=None)

        yield update


def dims(values: list) -> str:
    return escape("[" + ", ".join(map(str, values)) + "]")


def print_summary(artifact) -> None:
    """`export`: the artifact's inputs and outputs, and its verdict."""
    manifest = artifact.manifest
    grid = table(f"{artifact.path}  ({manifest['task']}, opset {manifest['opset']}, "
                   f"onnxruntime >= {manifest['min_onnxruntime']})", "", "name", "dtype", "dims")
    for kind in ("inputs", "outputs"):
        for tensor in manifest[kind]:
            grid.add_row(kind[:-1], tensor["name"], tensor["dtype"], dims(tensor["dims"]))
    console.print(grid)
    report = manifest["files"][MODEL_FILE].get("verification")
    if report is None:
        console.print("[yellow]not verified[/] (--no-verify); run `onnxport verify` before shipping it")
    elif verdict_of(report) != "passed":
        console.print(f"[yellow]{verdict_of(report)}[/]: {escape(report.get('unverified_reason') or '')}")
    else:
        console.print(f"verified: [green]{len(report['checks'])} checks passed[/] over {report['texts']} texts, "
                      f"shapes {', '.join('x'.join(map(str, s)) for s in report['shapes'])}")


def print_report(report: dict) -> None:
    """One verification report: every check, what was skipped, and the verdict."""
    engine = f" on {report['engine']}" if report.get("engine") else ""
    grid = table(f"{report['model_file']}{engine}: {report['mode']} against {report['reference']}",
                   "check", "output", "measured", "limit", "result", "worst input")
    for check in report["checks"]:
        measured = ", ".join(f"{k}={v:.3g}" for k, v in check["measured"].items())
        limits = ", ".join(f"{k}{'≤' if 'diff' in k else '≥'}{v:g}" for k, v in check["limits"].items())
        result = "[green]ok[/]" if check["passed"] else "[bold red]FAIL[/]"
        worst = check.get("note") or check.get("worst_input") or ""
        grid.add_row(check["name"], check["output"], measured, limits, result, escape(worst))
    stdout.print(grid)
    for reason in report.get("skipped", []):
        stdout.print(f"[yellow]skipped[/] {escape(reason)}")
    verdict = verdict_of(report)
    failed = sum(not c["passed"] for c in report["checks"])
    if verdict == "passed":
        stdout.print("[green]PASSED[/]")
    elif verdict == "failed":
        stdout.print(f"[bold red]FAILED[/]: {failed} of {len(report['checks'])} checks")
    else:
        stdout.print(f"[bold yellow]NOT VERIFIED[/]: {escape(report.get('unverified_reason') or 'no checks ran')}")



def print_recorded(recorded: str | None, model_file: str) -> None:
    """Say where `verify` put its report when it was not simply the file's verdict."""
    if recorded == "beside":
        console.print(f"[dim]kept beside the recorded verdict of {model_file} (this run used its own texts, "
                      "tolerance or reference); pass --record to make it the verdict[/]")
    elif recorded == "read-only":
        console.print("[yellow]note:[/] the artifact is read-only, so this report was not recorded")
    elif recorded == "not recorded":
        console.print("[dim]not recorded (this run used its own texts, tolerance or reference, or had nothing to "
                      "compare with); pass --record to make it the verdict[/]")


def print_inspection(info: dict) -> None:
    """`inspect`: the artifact's files and verdicts, then the model file's facts."""
    if "artifact" in info:
        art = info["artifact"]
        stdout.print(f"[bold]artifact[/] {art['path']}: task {art['task']}"
                     + (f", pooling {art['pooling']}, normalize {art['normalize']}" if art["pooling"] else "")
                     + f", max length {art['max_length']}")
        if art["labels"]:
            stdout.print("labels: " + escape(", ".join(f"{k}={v}" for k, v in art["labels"].items())))
        status = {"passed": "[green]verified[/]", "failed": "[red]verification FAILED[/]",
                  "not verified": "[yellow]not verified[/]",
                  "modified since verified": "[red]modified since verified[/] (its verdict no longer applies; "
                                             "run `onnxport verify` to re-judge it)"}
        for name, entry in art["files"].items():
            line = status.get(entry["verdict"], escape(entry["verdict"]))
            if entry.get("integrity") == "missing":
                line = "[red]missing[/] (listed in the manifest, not on disk)"
            elif entry.get("integrity") == "modified" and entry["verdict"] == "not verified":
                line += " [red](modified since written)[/]"
            stdout.print(f"  {name} ({entry['kind']}): {line}")
            for key, engine in (entry.get("engines") or {}).items():
                where = f" on {engine['cpu']}" if engine.get("cpu") else ""
                stdout.print(f"  {name} on {key}: {status.get(engine['verdict'], escape(engine['verdict']))}{where}")
        auto = art.get("auto")
        if auto:
            stdout.print(f"model='auto' here: {escape(auto['file'] or 'nothing')} ({escape(auto['reason'])})"
                         + "".join(f"; passed over {escape(n)}: {escape(why)}" for n, why in auto["skipped"]))
    model = info["model"]
    grid = table(f"{model['path']}", "", "name", "dtype", "dims")
    for kind in ("inputs", "outputs"):
        for tensor in model[kind]:
            grid.add_row(kind[:-1], tensor["name"], tensor["dtype"], dims(tensor["dims"]))
    stdout.print(grid)
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
        stdout.print(f"{tool}: " + ("[green]loads[/]" if result["ok"] else f"[red]fails[/]: {escape(result['error'])}"))


def print_fusion(name: str, counts: dict, report) -> None:
    fused = ", ".join(f"{op} {n}" for op, n in sorted(counts.items())) or "nothing fused"
    status = {"passed": "verified", "failed": "FAILED verification", "not verified": "not verified"}[
        "not verified" if report is None else report.verdict]
    console.print(f"{name}: {fused}; {status}")


def print_quantization(entry: dict) -> None:
    excluded = set(entry.get("excluded_units", ()))  # by --exclude-modules; the others by the guard
    kept = ", ".join(f"{unit} ({'excluded' if unit in excluded else 'guard'})" for unit in entry["float_units"])
    partly = entry.get("partly_float_units") or []
    total = entry.get("total_units")
    console.print(f"model.int8.onnx: {entry['mode']} int8 for {entry['isa']} (per-channel, "
                  f"reduce_range {entry['reduce_range']}) from {entry['source_file']}; "
                  f"{entry['quantized_units']}{f' of {total}' if total else ''} units int8, "
                  f"kept float: {kept or 'none'}"
                  + (f"; partly float: {', '.join(partly)} (excluded nodes)" if partly else ""))
    quality = ", ".join(f"{k}={v:.4f}" for k, v in entry["quality"].items() if k not in ("float_units", "passed"))
    console.print(f"quality vs fp32: {quality}; speed-up vs {entry['source_file']}: {entry['speedup_vs_source']}x")
    held = entry.get("held_out_quality")
    if held:
        measured = ", ".join(f"{k}={v:.4f}" for k, v in held.items() if isinstance(v, float))
        line = f"on {held['texts']} held-out texts (never measured by the guard): {measured}"
        console.print(line if held["passed"] else f"[yellow]warning:[/] below target {line}")
    print_report(entry["verification"])


def print_hierarchy(tree: dict) -> None:
    """`inspect --hierarchy`: the module tree with nodes, op types and parameters."""
    modules = table(f"{tree['path']}: PyTorch modules", "module", "class", "nodes", "op types", "params",
                    right=("nodes", "params"))
    for row in tree["modules"]:
        ops = ", ".join(f"{op} {n}" for op, n in list(row["op_types"].items())[:4])
        ops += ", ..." if len(row["op_types"]) > 4 else ""
        modules.add_row(escape("  " * row["depth"] + (row["module"] or "(root)")), row["class"], str(row["nodes"]),
                        ops, f"{row['parameters']:,}")
    stdout.print(modules)
    coverage = tree["coverage"]
    glue = ", ".join(f"{op} {n}" for op, n in tree["glue_op_types"].items())
    stdout.print(f"glue (no module): {tree['glue_nodes']} of {tree['nodes']} nodes" + (f" ({glue})" if glue else ""))
    stdout.print(f"compute nodes with a module: {coverage['tagged_compute_nodes']} of {coverage['compute_nodes']} "
                 f"({coverage['share']:.1%}); parameters in no single module: {tree['unowned_parameters']:,}")


def print_stages(data: dict) -> None:
    """`profile --stages`: one pipeline call's wall time per stage."""
    rows = table(f"{data['model_file']}: where {data['verb']}() spends its time", "stage", "ms", "share", "what",
                 right=("ms", "share"))
    for row in data["stages"]:
        rows.add_row(row["stage"], f"{row['ms']:.1f}", f"{row['share']:.1%}", row["what"])
    stdout.print(rows)
    threads = data["threads"] or "default"
    stdout.print(f"{data['repeat']} calls over {data['texts']} texts ({data['tokens']} tokens), batch "
                 f"{data['batch_size']}, {threads} threads: {data['wall_ms']:.1f} ms, "
                 f"{data['texts_per_second']:.1f} texts/s")


def print_profile(data: dict, depth: int) -> None:
    """`profile`: kernel time per module."""
    rows = table(f"{data['model_file']}: kernel time per module (depth {depth})", "module", "class", "ms",
                 "share", "top ops", right=("ms", "share"))
    for row in data["rows"]:
        ops = ", ".join(f"{op} {ms / row['ms']:.0%}" for op, ms in list(row["ops"].items())[:3] if row["ms"])
        rows.add_row(escape(row["module"] or "(root)"), row["class"], f"{row['ms']:.1f}", f"{row['share']:.1%}", ops)
    stdout.print(rows)
    stdout.print(f"{data['runs']} runs over {data['texts']} texts (batch {data['batch_size']}, {data['threads']} "
                 f"threads): kernel time {data['kernel_ms']:.1f} ms = {data['kernel_share_of_wall']:.1%} of the "
                 f"measured wall time {data['wall_ms']:.1f} ms (onnxruntime's own run time {data['session_ms']:.1f} ms)")
