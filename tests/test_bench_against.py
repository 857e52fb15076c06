"""`onnxport bench --against`: sentence-transformers' onnx, int8 and OpenVINO backends and
fastembed, each in a worker process in the side environment the bench builds (pip, from the
package index), judged against PyTorch in the same run. A tiny random BERT keeps it quick;
the environments are built once for the module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from onnxport.tools import bench
from onnxport.tools.bench import side_envs
from onnxport.tools.cli import main
from onnxport.core.cpus import detect_isa

from conftest import export_once

pytestmark = [pytest.mark.side_venv]

AGAINST = "st-onnx,st-onnx-int8,st-openvino,fastembed"


@pytest.fixture(scope="module")
def envs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench-envs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ONNXPORT_BENCH_ENVS", str(root))
        yield root


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, tiny_bert_folder) -> Path:
    return export_once(tmp_path_factory, tiny_bert_folder, "against", task="sentence-embedding", verify=False)


@pytest.fixture(scope="module")
def report(envs, artifact, tmp_path_factory) -> dict:
    # Short texts: every contender sees them whole, whatever its truncation.
    texts = tmp_path_factory.mktemp("texts") / "texts.txt"
    texts.write_text("\n".join(["the bus leaves at noon", "a short note about trains and timetables",
                                "where does the night bus to the airport stop", "hello"] * 3) + "\n")
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(main, ["bench", str(artifact), "--quick", "--threads", "1", "--texts", str(texts),
                                       "--against", AGAINST, "--against", "st-onnx", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text())


def test_each_contender_runs_in_its_side_environment_and_matches_pytorch(report, envs):
    by_name = {c["name"]: c for c in report["contenders"]}
    assert list(by_name)[-4:] == AGAINST.split(",")  # named twice, measured once
    for name in AGAINST.split(","):
        result = by_name[name]
        assert result["available"], result["reason"]
        python = Path(result["runs_in"]["python"])
        assert python.is_relative_to(envs), python  # a venv the bench built, not this interpreter
        assert all(row["runs"] == 2 and row["texts_per_s"] > 0 for row in result["throughput"])
        assert result["latency_ms"]["p50"] > 0 and result["cold_start"]["seconds"] > 0
    optimum = by_name["st-onnx"]["runs_in"]["versions"]
    assert optimum["sentence-transformers"] == "5.7.0" and optimum["transformers"] == "4.57.6"
    assert by_name["fastembed"]["runs_in"]["versions"]["fastembed"] == "0.9.1"
    # Independent reference: PyTorch, in its own process. The float backends agree with it;
    # fastembed runs the artifact's own model.onnx on texts short enough not to be cut.
    for name in ("st-onnx", "st-openvino", "fastembed"):
        metrics = by_name[name]["quality"]["metrics"]
        assert metrics["mean_cosine"] > 0.9999 and metrics["min_cosine"] > 0.999, (name, metrics)
    assert by_name["st-openvino"]["runs_in"]["detail"].startswith("OpenVINO, inference precision")
    preset = "avx2" if detect_isa() == "generic" else detect_isa()
    assert by_name["st-onnx-int8"]["runs_in"]["detail"].endswith(f"(preset {preset})")
    assert by_name["st-onnx-int8"]["quality"]["metrics"]["mean_cosine"] > 0.9
    report_md_line = bench.to_markdown(report)
    assert "## What each contender ran" in report_md_line and "each in a process of its own" in report_md_line


def test_fastembed_truncation_is_the_one_its_tokenizer_config_implies(report, artifact):
    config = json.loads((artifact / "tokenizer_config.json").read_text())
    limits = [v for v in (config.get("model_max_length"), config.get("max_length")) if isinstance(v, int)]
    detail = {c["name"]: c for c in report["contenders"]}["fastembed"]["runs_in"]["detail"]
    assert detail.endswith(f"truncation at {min(limits)} tokens"), detail


def test_an_environment_that_cannot_be_built_says_why_and_the_rest_runs(envs, artifact, monkeypatch, tmp_path):
    monkeypatch.setitem(side_envs.SIDE_ENVS, "fastembed", ("onnxport-no-such-package==0.0.1",))
    settings = bench.Settings(batch_sizes=(2,), repeats=1, warmup=0, latency_samples=2, cold_start=False, threads=1)
    report = bench.measure(artifact, texts=["a bus", "a train"], settings=settings, against=["fastembed"])
    by_name = {c["name"]: c for c in report["contenders"]}
    reason = by_name["fastembed"]["reason"]
    assert not by_name["fastembed"]["available"] and "could not build the side environment for fastembed" in reason
    assert "onnxport-no-such-package" in reason
    assert not side_envs.env_dir("fastembed").exists()  # nothing half-built is left to be reused
    assert by_name["onnx fp32"]["available"] and by_name["onnx fp32"]["throughput"][0]["runs"] == 1
