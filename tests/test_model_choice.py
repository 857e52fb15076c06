"""`load(model="auto")` picks the file for this machine and says why: a verified int8 file
only when it also met the targets on held-out texts, was judged on kernels this CPU runs
the same way, and was not measured slower here than its source. Each case is a real
quantized artifact; where a case needs another machine's record (another CPU, a slower
measurement), the manifest is edited the way that machine would have written it."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.core.artifact import MANIFEST, Artifact
from onnxport.core.cpus import cpu_name
from onnxport.runtime import model_choice
from onnxport.tools.cli import main

INT8, OPT, FP32 = "model.int8.onnx", "model.opt.onnx", "model.onnx"
TEXTS = ["the night bus to the airport", "a timetable for trains", "where is platform nine"]


@pytest.fixture(scope="module")
def quantized(tiny_embedding_artifact, tmp_path_factory):
    out = shutil.copytree(tiny_embedding_artifact, tmp_path_factory.mktemp("choice") / "artifact")
    onnxport.optimize(out)
    onnxport.quantize(out)  # for this CPU: the instruction set it detects
    return out


@pytest.fixture
def artifact(quantized, tmp_path):
    return shutil.copytree(quantized, tmp_path / "artifact")


def edit_int8_record(folder, **changes):
    """Rewrite model.int8.onnx's manifest entry as another run would have written it."""
    manifest = json.loads((folder / MANIFEST).read_text())
    entry = manifest["files"][INT8]
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(entry.get(key), dict):
            entry[key].update(value)
        else:
            entry[key] = value
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def test_the_verified_int8_file_is_picked_with_the_reasons_from_its_record(artifact, caplog):
    entry = Artifact(artifact).files[INT8]
    assert entry["measured_on"]["cpu"] == cpu_name() and entry["held_out_quality"]["passed"]
    # A tiny model's passes take milliseconds: too short for its speed-up to count either way.
    assert entry["speedup_timed_seconds"] < model_choice.MIN_TIMED_SECONDS
    with caplog.at_level(logging.INFO, logger="onnxport"):
        pipeline = onnxport.load(artifact)
    assert pipeline.model_file == INT8 and pipeline.choice.file == INT8 and pipeline.choice.skipped == ()
    reason = pipeline.choice.reason
    held_out = entry["held_out_quality"]
    assert f"mean cosine {entry['quality']['mean_cosine']:.4f}" in reason
    assert f"mean cosine {held_out['mean_cosine']:.4f}" in reason and f"on {held_out['texts']} held-out texts" in reason
    assert f"{entry['speedup_vs_source']:.2f}x {OPT} on this CPU" in reason  # stated, whatever it is
    assert f"using {INT8} (int8, passed) on CPUExecutionProvider: {reason}" in caplog.text  # the notice says why


def test_int8_below_target_on_held_out_texts_is_passed_over(artifact, caplog):
    edit_int8_record(artifact, held_out_quality={"passed": False, "mean_cosine": 0.9801})
    with caplog.at_level(logging.INFO, logger="onnxport"):
        pipeline = onnxport.load(artifact)
    assert pipeline.model_file == OPT
    (name, why), = pipeline.choice.skipped
    assert name == INT8 and why.startswith("below the quality targets on") and "mean cosine 0.9801" in why
    assert f"passed over {INT8}: below the quality targets" in caplog.text
    shown = CliRunner().invoke(main, ["inspect", str(artifact)])  # inspect says the same
    assert shown.exit_code == 0 and f"model='auto' here: {OPT} (verified against" in shown.output
    assert f"passed over {INT8}: below the quality targets" in " ".join(shown.output.split())
    # what runs is the fused file, and it gives what model.onnx gives
    expected = onnxport.load(artifact, model="fp32").embed(TEXTS)
    assert np.allclose(pipeline.embed(TEXTS), expected, atol=1e-5)


def test_int8_made_for_vnni_is_passed_over_on_a_cpu_whose_kernels_can_saturate(artifact, monkeypatch, tmp_path):
    # A real file quantized for AVX-512 VNNI: full 8-bit weights, no reduce_range.
    vnni = shutil.copytree(artifact, tmp_path / "vnni")
    entry = onnxport.quantize(vnni, isa="avx512_vnni")
    assert entry["isa"] == "avx512_vnni" and entry["reduce_range"] is False
    monkeypatch.setattr(model_choice, "detect_isa", lambda: "avx2")
    choice = model_choice.auto_choice(Artifact(vnni))
    assert choice.file == OPT and choice.skipped[0][0] == INT8
    assert "quantized for avx512_vnni without reduce_range" in choice.skipped[0][1]
    monkeypatch.setattr(model_choice, "detect_isa", lambda: "avx512_vnni")  # a VNNI CPU runs it as judged
    assert model_choice.auto_choice(Artifact(vnni)).file == INT8
    # and a file made with reduce_range for AVX2 is fine on an AVX2 CPU
    monkeypatch.setattr(model_choice, "detect_isa", lambda: "avx2")
    edit_int8_record(artifact, isa="avx2", reduce_range=True)
    assert model_choice.auto_choice(Artifact(artifact)).file == INT8


def test_int8_measured_slower_on_this_cpu_is_passed_over_but_not_elsewhere(artifact):
    edit_int8_record(artifact, speedup_vs_source=0.8, speedup_timed_seconds=0.05)  # too short to count
    assert model_choice.auto_choice(Artifact(artifact)).file == INT8
    edit_int8_record(artifact, speedup_timed_seconds=1.5)  # as a real model's passes take
    choice = model_choice.auto_choice(Artifact(artifact))
    assert choice.file == OPT and choice.skipped == ((INT8, f"0.80x the speed of {OPT} on this CPU ({cpu_name()})"),)
    # measured on another CPU model: that says nothing about this one, so it stays the pick
    edit_int8_record(artifact, measured_on={"cpu": "Some Other CPU 9000"})
    choice = model_choice.auto_choice(Artifact(artifact))
    assert choice.file == INT8 and f"0.80x {OPT} on Some Other CPU 9000" in choice.reason


def test_named_files_are_taken_as_asked_and_unverified_ones_passed_over(artifact):
    assert onnxport.load(artifact, model="fp32").choice.reason == "asked for (model='fp32')"
    (artifact / INT8).write_bytes((artifact / INT8).read_bytes() + b"\0")  # changed since verified
    choice = model_choice.auto_choice(Artifact(artifact))
    assert choice.file == OPT and choice.skipped == ((INT8, "modified since verified"),)
