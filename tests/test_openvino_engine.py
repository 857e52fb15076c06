"""engine="openvino": the verified model.onnx run by OpenVINO, judged against PyTorch (f32)
or by quality against model.onnx (bf16, on CPUs that have it), with a verdict of its own
that load, inspect and bench read."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.core.artifact import MANIFEST, MODIFIED, Artifact
from onnxport.core.cpus import cpu_name
from onnxport.errors import InputError
from onnxport.runtime.openvino_model import bf16_capable
from onnxport.tools import bench
from onnxport.tools.cli import main

pytest.importorskip("openvino")  # the `openvino` extra, part of [all]

TEXTS = ["the night bus to the airport", "a timetable for trains and buses on sundays",
         "where is platform nine", "hi"]


@pytest.fixture
def artifact(tiny_embedding_artifact, tmp_path):
    return shutil.copytree(tiny_embedding_artifact, tmp_path / "artifact")


def test_f32_is_verified_against_pytorch_and_recorded_for_the_engine_alone(artifact):
    before = Artifact(artifact).files["model.onnx"]["verification"]
    report = onnxport.verify(artifact, engine="openvino")
    assert report.passed and report.engine.startswith("OpenVINO") and report.engine.endswith("CPU, f32")
    assert report.reference.startswith("pytorch") and report.recorded == "verdict"
    art = Artifact(artifact)
    assert art.files["model.onnx"]["verification"] == before  # onnxruntime's verdict is untouched
    entry = art.engine_entry("openvino-f32")
    assert art.engine_verdict("openvino-f32") == "passed" and entry["measured_on"]["cpu"] == cpu_name()
    shown = CliRunner().invoke(main, ["inspect", str(artifact)])
    assert f"model.onnx on openvino-f32: verified on {cpu_name()}" in shown.output


def test_load_runs_openvino_and_gives_what_pytorch_gives(artifact, recwarn):
    onnxport.verify(artifact, engine="openvino")
    pipeline = onnxport.load(artifact, engine="openvino")
    assert pipeline.backend == "openvino" and pipeline.model_file == "model.onnx"
    assert pipeline.choice.reason == "asked for (openvino f32), verified on this CPU"
    assert not [w for w in recwarn if "no passing verdict" in str(w.message)]
    torch_pipeline = onnxport.load(artifact, backend="torch")  # the independent reference
    np.testing.assert_allclose(pipeline.embed(TEXTS), torch_pipeline.embed(TEXTS), atol=1e-5)
    # the same run twice: outputs are copies, not views of tensors the next run overwrites
    first = pipeline.embed(TEXTS[:2])
    pipeline.embed(TEXTS[2:])
    np.testing.assert_allclose(first, torch_pipeline.embed(TEXTS[:2]), atol=1e-5)


def test_bf16_runs_only_where_the_cpu_has_it(artifact):
    manifest_before = (artifact / MANIFEST).read_text()
    if not bf16_capable():
        # OpenVINO would quietly compile f32; a bf16 verdict or figure must be bf16.
        with pytest.raises(InputError, match="this CPU has no bf16 for OpenVINO"):
            onnxport.verify(artifact, engine="openvino", precision="bf16")
        result = CliRunner().invoke(main, ["verify", str(artifact), "--engine", "openvino", "--precision", "bf16"])
        assert result.exit_code == 2 and "no bf16" in result.output
        assert (artifact / MANIFEST).read_text() == manifest_before  # nothing recorded
        with pytest.raises(InputError, match="no bf16"):
            onnxport.load(artifact, engine="openvino", precision="bf16")
    else:  # judged like int8: by quality against model.onnx
        report = onnxport.verify(artifact, engine="openvino", precision="bf16")
        assert report.mode == "quality" and report.engine.endswith("bf16")
        metrics = {k: v for c in report.checks for k, v in c.measured.items()}
        assert report.passed == (metrics["mean_cosine"] >= 0.995 and metrics["min_cosine"] >= 0.98)
        assert Artifact(artifact).engine_verdict("openvino-bf16") == report.verdict


@pytest.mark.parametrize("kwargs, message", [
    (dict(engine="openvino", model="int8"), "runs model.onnx only"),
    (dict(engine="openvino", precision="fp8"), "precision must be one of f32, bf16"),
    (dict(precision="bf16"), "precision goes with engine='openvino'"),
    (dict(engine="tensorrt"), "engine must be 'onnxruntime' or 'openvino'"),
    (dict(engine="openvino", providers=["cuda"]), "providers are onnxruntime's"),
])
def test_wrong_combinations_are_clear_errors(artifact, kwargs, message):
    with pytest.raises(InputError, match=message):
        onnxport.load(artifact, **kwargs)


def test_cli_precision_without_the_engine_is_a_usage_error(artifact):
    result = CliRunner().invoke(main, ["verify", str(artifact), "--precision", "f32"])
    assert result.exit_code == 2 and "--precision goes with --engine openvino" in result.output


def test_the_engine_verdict_follows_the_bytes_of_model_onnx(artifact):
    with pytest.warns(UserWarning, match="no passing verdict on OpenVINO"):  # never verified on it
        onnxport.load(artifact, engine="openvino")
    onnxport.verify(artifact, engine="openvino")
    manifest = json.loads((artifact / MANIFEST).read_text())
    manifest["files"]["model.onnx"]["engines"]["openvino-f32"]["sha256"] = "0" * 64  # judged other bytes
    (artifact / MANIFEST).write_text(json.dumps(manifest))
    assert Artifact(artifact).engine_verdict("openvino-f32") == MODIFIED
    with pytest.warns(UserWarning, match="modified since verified"):
        onnxport.load(artifact, engine="openvino")


def test_bench_measures_model_onnx_on_each_engine_it_was_verified_on(artifact):
    onnxport.verify(artifact, engine="openvino")
    settings = bench.Settings(batch_sizes=(2,), repeats=1, warmup=0, latency_samples=2, cold_start=False, threads=1)
    report = bench.measure(artifact, texts=TEXTS, settings=settings)
    by_name = {c["name"]: c for c in report["contenders"]}
    openvino = by_name["onnx openvino f32"]
    assert openvino["available"] and openvino["verified"] is True, openvino["reason"]
    assert openvino["runs_in"]["detail"].startswith("OpenVINO") and openvino["throughput"][0]["runs"] == 1
    assert openvino["quality"]["metrics"]["mean_cosine"] > 0.99999  # against PyTorch, in its own process


def set_engine_record(folder, key, **changes):
    """Rewrite an engine verdict's facts as a run on another machine or model would have."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["model.onnx"]["engines"][key].update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_auto_picks_another_engine_only_where_verified_and_measured_faster_here(artifact):
    from onnxport.runtime.pipelines import choose_model_file

    onnxport.verify(artifact, engine="openvino")
    speed = Artifact(artifact).engine_entry("openvino-f32")["speed"]
    # measured against what onnxruntime runs here; a tiny model's passes are too short to count
    assert speed["against"] == "model.onnx" and speed["speedup"] > 0 and speed["timed_seconds"] < 0.2
    pipeline = onnxport.load(artifact)
    assert pipeline.choice.engine == "onnxruntime" and pipeline.backend == "onnx"

    # as a real model on a CPU where OpenVINO wins would have recorded it
    set_engine_record(artifact, "openvino-f32", speed={"against": "model.onnx", "speedup": 1.5, "timed_seconds": 1.2})
    pipeline = onnxport.load(artifact)
    assert pipeline.choice.engine == "openvino" and pipeline.backend == "openvino"
    assert pipeline.choice.reason.endswith("1.50x model.onnx here")
    assert pipeline.choice.skipped == (("model.onnx", "openvino f32 measured 1.50x faster on this CPU"),)
    np.testing.assert_allclose(pipeline.embed(TEXTS), onnxport.load(artifact, backend="torch").embed(TEXTS),
                               atol=1e-5)
    # asked for onnxruntime (or its providers), or a caller that runs onnxruntime files: no switch
    assert onnxport.load(artifact, engine="onnxruntime").backend == "onnx"
    assert onnxport.load(artifact, providers=["cpu"]).backend == "onnx"
    assert choose_model_file(Artifact(artifact), "auto") == "model.onnx"

    # measured against another file than the one onnxruntime would run now: stale, not used
    set_engine_record(artifact, "openvino-f32", speed={"against": "model.int8.onnx", "speedup": 1.5,
                                                       "timed_seconds": 1.2})
    assert onnxport.load(artifact).choice.engine == "onnxruntime"
    # verified and measured on another CPU model: says nothing about this one
    set_engine_record(artifact, "openvino-f32", speed={"against": "model.onnx", "speedup": 1.5, "timed_seconds": 1.2},
                      measured_on={"cpu": "Some Other CPU 9000", "isa": "avx512_vnni"})
    assert onnxport.load(artifact).choice.engine == "onnxruntime"
