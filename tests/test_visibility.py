"""Long steps are visible (issue 14): progress from the library's `progress` callbacks, plain
lines when stderr is not a terminal, tables that keep full names when piped, the notice of
which model file `load` picked, and `quantize --exclude-modules` counted in the report."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.core.sample_texts import builtin_texts
from onnxport.graph.quantizer import quantizable_units
from onnxport.graph.tags import KEY_MODULE
from onnxport.tools.cli import main

NOTICE = re.compile(r"onnxport: using model\.onnx \(fp32, passed\) on CPUExecutionProvider")
STEP_LINE = re.compile(r"^ *\d+\.\ds verifying model\.onnx: batch (\d)/(\d) \(b(\d+) x (\d+) tokens\)$", re.M)


def run_cli(*args):
    # Click's runner is not a terminal: what a user gets with `| cat` or in a CI log (80 columns).
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_bert_folder) -> Path:
    out = tmp_path_factory.mktemp("visible") / "artifact"
    onnxport.export(tiny_bert_folder, out=out)
    return out


@pytest.fixture
def tiny_artifact(tiny_export, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_export, tmp_path / "artifact"))


def unconfigure_logging(monkeypatch):
    """As in an application that configured no logging: pytest's capture handlers, which it adds
    to the root logger when the test body starts, taken off for the rest of the test."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.delenv("ONNXPORT_QUIET", raising=False)


# ---------------------------------------------------------------- tables


def test_piped_hierarchy_table_keeps_full_module_names(tiny_artifact):
    from onnxport.graph.tags import inspect_hierarchy

    result = run_cli("inspect", tiny_artifact, "--hierarchy")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "…" not in result.stdout
    assert max(map(len, lines)) > 80  # the rows are wider than the runner's 80 columns: nothing was cut
    for row in inspect_hierarchy(tiny_artifact)["modules"]:
        name = row["module"] or "(root)"
        line = next((line for line in lines if re.search(rf"│ +{re.escape(name)} +│", line)), None)
        assert line is not None, (name, result.stdout)
        assert row["class"] in line and f"{row['parameters']:,}" in line


def test_piped_verify_table_keeps_full_check_rows(tiny_artifact):
    result = run_cli("verify", tiny_artifact)
    assert result.exit_code == 0, result.output
    assert "PASSED" in result.stdout
    report = onnxport.Artifact(tiny_artifact).files["model.onnx"]["verification"]
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) > 80
    for check in report["checks"]:  # each row whole on one line (a worst input is cut to 60 characters upstream)
        cells = [check["name"], check["output"], ", ".join(f"{k}={v:.3g}" for k, v in check["measured"].items()),
                 check.get("note") or check.get("worst_input") or ""]
        assert any(all(cell in line for cell in cells) for line in lines), (cells, result.stdout)


# ---------------------------------------------------------------- progress


def test_verify_reports_each_batch_of_the_shape_matrix(tiny_artifact):
    steps: list[str] = []
    report = onnxport.verify(tiny_artifact, progress=steps.append)
    assert report.passed
    batches = [s for s in steps if ": batch " in s]
    assert [re.search(r"batch (\d)/5", s).group(1) for s in batches] == ["1", "2", "3", "4", "5"], steps
    assert [list(map(int, re.findall(r"b(\d+) x (\d+) tokens", s)[0])) for s in batches] == report.shapes
    assert any("padding invariance" in s for s in steps), steps


def test_verify_cli_prints_a_line_per_step_when_piped(tiny_artifact):
    result = run_cli("verify", tiny_artifact)
    assert result.exit_code == 0, result.output
    found = STEP_LINE.findall(result.stderr)
    assert [(int(i), int(n)) for i, n, _, _ in found] == [(i, 5) for i in range(1, 6)], result.stderr
    assert "\x1b[" not in result.stderr  # plain text, no terminal codes


def test_steps_print_plain_lines_off_a_terminal(monkeypatch):
    from rich.console import Console

    from onnxport.tools import render

    monkeypatch.setattr(render, "console", Console(file=io.StringIO(), stderr=True, soft_wrap=True))
    with render.steps() as say:
        say("verifying model.onnx: batch 3/5 (b7 x 41 tokens)")
        say("a [bracketed] step")
    text = render.console.file.getvalue()
    assert re.search(r"^ +\d+\.\ds verifying model\.onnx: batch 3/5 \(b7 x 41 tokens\)$", text, re.M), text
    assert re.search(r"^ +\d+\.\ds a \[bracketed\] step$", text, re.M), text


def test_bench_progress_prints_lines_when_piped():
    from rich.console import Console

    from onnxport.tools.bench import live_progress

    out = io.StringIO()
    with live_progress(Console(file=out, soft_wrap=True)) as update:
        assert update is not None
        update(None, total=3)
        update("loading onnx fp32")
        update("throughput onnx fp32 at batch 8 (1/2)")
        update("throughput onnx fp32 at batch 8 (2/2)")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # the second throughput step came too soon after the first to get a line
    assert lines[0].split("s ", 1)[1] == "[1/3] loading onnx fp32", lines
    assert lines[1].split("s ", 1)[1] == "[2/3] throughput onnx fp32 at batch 8 (1/2)", lines


def test_quantize_guard_reports_the_ranking_and_every_count_it_tries(tiny_artifact):
    steps: list[str] = []
    units = quantizable_units(onnx.load(str(tiny_artifact / "model.onnx")))
    entry = onnxport.quantize(tiny_artifact, texts=builtin_texts(8), targets={"mean_cosine": 1.5},
                              progress=steps.append)  # an unreachable target: the guard ends with all in float
    n = len(units)
    ranked = [s for s in steps if s.startswith("ranking")]
    assert [re.search(r"(\d+)/(\d+)", s).groups() for s in ranked] == [(str(i), str(n)) for i in range(1, n + 1)]
    tried = [int(re.search(r"(\d+)", s).group(1)) for s in steps if s.startswith("guard")]
    doubling = [2 ** i for i in range(n.bit_length()) if 2 ** i < n] + [n]
    assert tried == doubling, steps  # 1, 2, 4, ... then all, never every count in turn
    assert sorted(entry["float_units"]) == sorted(units)
    ranking = list(entry["sensitivity"])
    assert sorted(ranking) == sorted(units)
    # Every attempt kept a prefix of the ranking in float, and said what it measured.
    assert [a["float_units"] for a in entry["attempts"]] == [ranking[:count] for count in [0, *doubling]]
    assert all(not a["passed"] and "mean_cosine" in a for a in entry["attempts"])
    assert any(s.startswith("verifying model.int8.onnx") for s in steps), steps


# ---------------------------------------------------------------- quantize --exclude-modules


def test_exclude_modules_counts_excluded_units_as_float(tiny_artifact, tmp_path):
    patterns = ["encoder.layer.1.intermediate", "encoder.layer.0.attention.self.query"]
    model = onnx.load(str(tiny_artifact / "model.onnx"))
    module = {n.name: next((p.value for p in n.metadata_props if p.key == KEY_MODULE), None)
              for n in model.graph.node}
    matched = {name for name, path in module.items()
               if path and any(path == p or path.startswith(p + ".") for p in patterns)}
    units = quantizable_units(model)
    whole = [u for u, nodes in units.items() if set(nodes) <= matched]
    partly = [u for u, nodes in units.items() if u not in whole and set(nodes) & matched]
    assert whole == ["layer.1.intermediate"] and partly == ["layer.0.attention"]  # the test means something

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(builtin_texts(8)) + "\n")
    args = ["quantize", tiny_artifact, "--no-guard", "--texts", texts]
    result = run_cli(*args, *[a for p in patterns for a in ("--exclude-modules", p)])
    assert result.exit_code in (0, 1), result.output
    entry = onnxport.Artifact(tiny_artifact).files["model.int8.onnx"]
    assert entry["float_units"] == whole and entry["excluded_units"] == whole
    assert entry["partly_float_units"] == partly
    assert entry["quantized_units"] == len(units) - len(whole) - len(partly)
    assert sorted(entry["float_nodes"]) == sorted(matched)
    line = next(line for line in result.stderr.splitlines() if line.startswith("model.int8.onnx:"))
    assert f"{entry['quantized_units']} of {len(units)} units int8" in line, line
    assert "kept float: layer.1.intermediate (excluded)" in line and "partly float: layer.0.attention" in line
    int8 = {n.name: n.op_type for n in onnx.load(str(tiny_artifact / "model.int8.onnx")).graph.node}
    for name in units["layer.1.intermediate"] + [n for n in units["layer.0.attention"] if n in matched]:
        assert int8[name] == "MatMul", name  # really float


# ---------------------------------------------------------------- which model file load() picked


def test_load_says_which_file_it_picked_on_stderr(tiny_artifact, monkeypatch, capsys):
    unconfigure_logging(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a notice, not a warning
        onnxport.load(tiny_artifact)
    err = capsys.readouterr().err
    assert len(NOTICE.findall(err)) == 1, err


def test_onnxport_quiet_and_the_logger_level_silence_the_notice(tiny_artifact, capsys, monkeypatch):
    unconfigure_logging(monkeypatch)
    monkeypatch.setenv("ONNXPORT_QUIET", "1")
    onnxport.load(tiny_artifact)
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("ONNXPORT_QUIET")
    logger = logging.getLogger("onnxport")
    monkeypatch.setattr(logger, "level", logging.WARNING)
    onnxport.load(tiny_artifact)
    assert capsys.readouterr().err == ""


def test_configured_logging_gets_the_notice_once(tiny_artifact, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="onnxport"):
        onnxport.load(tiny_artifact)
    assert [r.name for r in caplog.records if NOTICE.search(r.getMessage())] == ["onnxport"]
    assert capsys.readouterr().err == ""  # the application's logging shows it, not a second copy


@pytest.mark.parametrize("quiet", [False, True])
def test_a_fresh_interpreter_shows_the_notice_by_default(tiny_artifact, quiet):
    import os

    env = {k: v for k, v in os.environ.items() if k != "ONNXPORT_QUIET"}
    if quiet:
        env["ONNXPORT_QUIET"] = "1"
    done = subprocess.run([sys.executable, "-c", f"import onnxport; onnxport.load({str(tiny_artifact)!r})"],
                          capture_output=True, text=True, env=env, check=True)
    assert len(NOTICE.findall(done.stderr)) == (0 if quiet else 1), done.stderr


def test_cli_names_the_model_file_once(tiny_artifact, monkeypatch):
    unconfigure_logging(monkeypatch)
    result = run_cli("embed", tiny_artifact, "hello world", "a second text")
    assert result.exit_code == 0, result.output
    assert len(NOTICE.findall(result.stderr)) == 1, result.stderr
    assert result.stderr.count("model.onnx") == 1, result.stderr
    assert len([json.loads(line) for line in result.stdout.splitlines()]) == 2
