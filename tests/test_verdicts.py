"""A verdict needs a reference: what verify, optimize and load do when PyTorch is not
there, the pickle consent of `verify --reference`, the export install hint, and the one
span decoder shared by `ner` and the int8 guard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.checks.quality import entity_spans
from onnxport.convert import references, requirements
from onnxport.core.spans import group_spans, split_tag
from onnxport.errors import MissingDependency
from onnxport.runtime.pipelines import decode_entities
from onnxport.tools.cli import main


def run_cli(*args):
    return CliRunner(env={"COLUMNS": "500"}).invoke(main, [str(a) for a in args])


def manifest(path: Path) -> dict:
    return json.loads((path / "onnxport.json").read_text())


@pytest.fixture(scope="module")
def exported(tiny_bert_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verdicts") / "artifact"
    onnxport.export(tiny_bert_folder, out=out, task="sentence-embedding")
    onnxport.optimize(out)
    return out


@pytest.fixture()
def artifact(exported, tmp_path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / "artifact"))


@pytest.fixture()
def without_torch(monkeypatch):
    """What a runtime-only install sees: the export extra is missing."""
    real = requirements.importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name in ("torch", "transformers") else real(name, *args, **kwargs)

    monkeypatch.setattr(requirements.importlib.util, "find_spec", find_spec)


def test_with_torch_the_fp32_file_is_judged_against_pytorch(artifact):
    report = onnxport.verify(artifact, record=False)
    assert report.verdict == "passed" and report.reference.startswith("pytorch (")
    assert any(c.name.startswith("pytorch parity") for c in report.checks)


def test_without_torch_model_onnx_is_not_verified_and_keeps_its_recorded_verdict(artifact, without_torch):
    before = manifest(artifact)["files"]["model.onnx"]["verification"]
    report = onnxport.verify(artifact)
    assert report.verdict == "not verified" and not report.passed
    assert report.reference == "none"
    assert "PyTorch is not available" in report.unverified_reason
    assert any('pip install "onnxport[export]"' in note for note in report.skipped)
    # The padding checks ran, and they alone never make a pass.
    assert report.checks and all(c.passed for c in report.checks)
    assert all(c.name.startswith("padding invariance") for c in report.checks)
    assert manifest(artifact)["files"]["model.onnx"]["verification"] == before
    result = run_cli("verify", artifact)
    assert result.exit_code == 1 and "NOT VERIFIED" in result.stdout and "PASSED" not in result.stdout


def test_without_torch_the_optimized_file_is_judged_against_model_onnx(artifact, without_torch):
    name, counts, report = onnxport.optimize(artifact)
    assert name == "model.opt.onnx" and counts
    assert report.verdict == "passed"
    assert report.reference.startswith("fp32 model.onnx (verified against pytorch")
    assert any(c.name.startswith("fp32 model.onnx parity") for c in report.checks)
    recorded = manifest(artifact)["files"]["model.opt.onnx"]["verification"]
    assert recorded["verdict"] == "passed" and recorded["reference"] == report.reference


def test_a_reference_that_is_not_verified_gives_no_pass(artifact):
    from onnxport.graph.optimizer import optimize as fuse

    data = manifest(artifact)
    data["files"]["model.onnx"]["verification"] = None  # as after `export --no-verify`
    (artifact / "onnxport.json").write_text(json.dumps(data))
    _, _, report = fuse(artifact)  # no reference given: judged against model.onnx
    assert report.verdict == "not verified"
    assert "model.onnx is not verified itself" in report.unverified_reason
    assert all(c.passed for c in report.checks)  # it does match model.onnx; that is not enough
    assert onnxport.Artifact(artifact).verdict("model.opt.onnx") == "not verified"
    # ... so model="auto" does not pick the optimized file.
    assert onnxport.load(artifact).model_file == "model.onnx"


def test_export_without_the_export_extra_exits_2_with_the_install_hint(tmp_path, without_torch):
    out = tmp_path / "never"
    result = run_cli("export", "-o", out)
    assert result.exit_code == 2, result.output
    assert 'pip install "onnxport[export]"' in result.stderr
    assert "Traceback" not in result.output and not out.exists()
    with pytest.raises(MissingDependency, match="onnxport\\[export\\]"):
        onnxport.export(out=out)
    with pytest.raises(ImportError):  # MissingDependency is an ImportError too
        references.TorchReference(None)


def test_verify_reference_with_pickle_weights_needs_consent(tmp_path, tiny_bert_folder, wordpiece_tokenizer):
    import torch
    from transformers import AutoModel

    pickled = tmp_path / "pickled"
    model = AutoModel.from_pretrained(tiny_bert_folder)
    model.config.save_pretrained(pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")  # the legacy pickle checkpoint
    wordpiece_tokenizer.save_pretrained(pickled)
    assert not list(pickled.glob("*.safetensors")) and (pickled / "pytorch_model.bin").exists()
    out = tmp_path / "artifact"
    onnxport.export(pickled, out=out, allow_pickle=True)
    refused = run_cli("verify", out, "--reference", pickled)
    assert refused.exit_code == 2 and "--allow-pickle" in refused.stderr, refused.output
    allowed = run_cli("verify", out, "--reference", pickled, "--allow-pickle", "--json")
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout)["reference"] == f"pytorch ({pickled})"
    # The recorded source path is best effort: without consent it is a note, not a pass.
    report = onnxport.verify(out, record=False)
    assert report.verdict == "not verified"
    assert any("--allow-pickle" in note for note in report.skipped)


# ---------------------------------------------------------------- one span decoder


@pytest.mark.parametrize("tag, expected", [("B-SRC", ("B", "SRC")), ("I-SRC", ("I", "SRC")), ("O", ("O", "")),
                                            ("SRC", ("I", "SRC")), ("S-LOC", ("S", "LOC")), ("E_LOC", ("E", "LOC"))])
def test_split_tag(tag, expected):
    assert split_tag(tag) == expected


def test_group_spans_by_hand():
    tags = ["B-SRC", "I-SRC", "O", "SRC", "SRC", "B-DEST", "I-SRC", "S-LOC", "B-LOC", "E-LOC", "I-LOC"]
    spans = [(s.start, s.end, s.label) for s in group_spans((i, i + 1, t, 1.0) for i, t in enumerate(tags))]
    assert spans == [(0, 2, "SRC"), (3, 5, "SRC"),  # bare tags continue like I-
                     (5, 6, "DEST"), (6, 7, "SRC"),  # a different type ends the entity
                     (7, 8, "LOC"), (8, 10, "LOC"),  # S- is one unit, E- closes
                     (10, 11, "LOC")]  # after E-, an I- starts a new entity


class _Encoding:
    """The parts of a tokenizers.Encoding decode_entities reads: one token per word."""

    def __init__(self, words: list[str]):
        self.offsets, position = [], 0
        for word in words:
            self.offsets.append((position, position + len(word)))
            position += len(word) + 1
        self.special_tokens_mask = [0] * len(words)
        self.word_ids = list(range(len(words)))


def test_the_int8_guard_and_ner_read_the_same_entities():
    labels = {0: "O", 1: "SRC", 2: "B-DEST", 3: "I-DEST", 4: "S-DATE"}
    words = "bus from Bangalore Central to Mumbai city on Friday".split()
    tag_ids = np.array([[0, 0, 1, 1, 0, 2, 3, 0, 4]])
    probabilities = np.eye(5)[tag_ids[0]]
    text = " ".join(words)
    entities = decode_entities(text, _Encoding(words), probabilities, labels, "simple")
    assert [(e["label"], e["text"]) for e in entities] == [("SRC", "Bangalore Central"), ("DEST", "Mumbai city"),
                                                           ("DATE", "Friday")]
    guard = entity_spans([tag_ids], [np.ones_like(tag_ids, dtype=bool)], labels)
    assert sorted((start, end, label) for _, start, end, label in guard) == [(2, 4, "SRC"), (5, 7, "DEST"),
                                                                           (8, 9, "DATE")]


def test_an_artifact_written_before_verdicts_existed_still_loads(artifact):
    # Manifests from before the redesign have `passed` but no `verdict` / `unverified_reason`.
    data = manifest(artifact)
    for entry in data["files"].values():
        for key in ("verdict", "unverified_reason"):
            entry["verification"].pop(key)
    (artifact / "onnxport.json").write_text(json.dumps(data))
    old = onnxport.Artifact(artifact)
    assert old.verdict("model.onnx") == "passed" and old.verified("model.opt.onnx")
    assert onnxport.load(artifact).model_file == "model.opt.onnx"  # auto still prefers the verified fused file
    info = onnxport.inspect(artifact)["artifact"]["files"]
    assert info["model.onnx"]["verdict"] == "passed" and info["model.onnx"]["verified"] is True
    data["files"]["model.opt.onnx"]["verification"]["passed"] = False
    (artifact / "onnxport.json").write_text(json.dumps(data))
    assert onnxport.Artifact(artifact).verdict("model.opt.onnx") == "failed"
    assert onnxport.load(artifact).model_file == "model.onnx"
