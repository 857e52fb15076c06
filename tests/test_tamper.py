"""Tamper-evident artifacts: a model file that changed after it was verified loses its verdict.

The reference is the manifest's own record (sha256 and size written with the file) and,
independently, hashlib over the bytes on disk; each test changes an artifact the way a
user or a broken copy would and checks what every command then says.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.core.artifact import MANIFEST
from onnxport.errors import ArtifactError
from onnxport.tools.cli import main


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_int8_artifact(tmp_path_factory, tiny_bert_folder) -> Path:
    """A tiny feature-extraction artifact with a verified model.onnx and a model.int8.onnx."""
    out = tmp_path_factory.mktemp("tamper") / "tiny"
    onnxport.export(tiny_bert_folder, out=out, hierarchy=False)
    onnxport.quantize(out, guard=False, targets={"mean_cosine": 0.0, "min_cosine": -1.0})
    assert onnxport.Artifact(out).verified("model.int8.onnx")
    return out


@pytest.fixture
def minilm_copy(tmp_path, minilm_artifact) -> Path:
    folder = tmp_path / "minilm"
    shutil.copytree(minilm_artifact, folder)
    return folder


@pytest.fixture
def int8_copy(tmp_path, tiny_int8_artifact) -> Path:
    folder = tmp_path / "tiny"
    shutil.copytree(tiny_int8_artifact, folder, copy_function=shutil.copy2)
    return folder


def flip_weight_byte(path: Path) -> None:
    """Change one byte inside the largest weight tensor: same size, still a valid ONNX file."""
    import onnx

    model = onnx.load(str(path))
    raw = max((t.raw_data for t in model.graph.initializer), key=len)
    data = bytearray(path.read_bytes())
    offset = bytes(data).find(raw[:256])
    assert offset > 0 and len(raw) > 512
    data[offset + 300] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    return stat


def test_copied_artifact_is_still_verified(tmp_path, minilm_artifact):
    """A plain copy (new mtimes, same bytes) keeps its verdict: the hash decides, not the mtime."""
    folder = tmp_path / "copy"
    shutil.copytree(minilm_artifact, folder, copy_function=shutil.copy)  # mtimes not preserved
    art = onnxport.Artifact(folder)
    assert art.integrity("model.onnx") == "intact"
    assert art.verified("model.onnx")
    assert onnxport.inspect(folder)["artifact"]["files"]["model.onnx"]["verdict"] == "passed"


def test_replaced_model_is_refused_everywhere(minilm_copy, tiny_int8_artifact):
    """model.onnx swapped for another model: inspect says so, every runner refuses clearly."""
    shutil.copy(tiny_int8_artifact / "model.onnx", minilm_copy / "model.onnx")
    before = snapshot(minilm_copy)

    info = onnxport.inspect(minilm_copy)["artifact"]["files"]["model.onnx"]
    assert info["integrity"] == "modified" and info["verdict"] == "modified since verified"
    assert info["verified"] is None
    result = run_cli("inspect", minilm_copy)
    assert result.exit_code == 0 and "modified since verified" in result.output
    assert "verified\n" not in result.output.replace("not verified", "")

    with pytest.raises(ArtifactError, match="does not fit this sentence-embedding artifact"), \
            pytest.warns(UserWarning, match="modified since it was verified"):
        onnxport.load(minilm_copy, model="fp32")
    with pytest.raises(ArtifactError, match="modified since it was verified"):
        onnxport.load(minilm_copy)  # auto: nothing verified is left to pick
    for command in (["verify", minilm_copy], ["optimize", minilm_copy], ["embed", minilm_copy, "hello"]):
        result = run_cli(*command)
        assert result.exit_code == 2, (command, result.output)
        assert "error:" in result.output and "Traceback" not in result.output
        assert "replaced after export" in result.output or "modified since" in result.output, result.output
    assert snapshot(minilm_copy) == before  # optimize wrote no model.opt.onnx, nothing recorded
    assert "model.opt.onnx" not in json.loads((minilm_copy / MANIFEST).read_text())["files"]


def test_flipped_byte_in_int8_loses_its_verdict_and_verify_rejudges(int8_copy):
    art = onnxport.Artifact(int8_copy)
    recorded = art.files["model.int8.onnx"]["sha256"]
    assert onnxport.load(int8_copy).model_file == "model.int8.onnx"
    flip_weight_byte(int8_copy / "model.int8.onnx")
    assert hashlib.sha256((int8_copy / "model.int8.onnx").read_bytes()).hexdigest() != recorded

    art = onnxport.Artifact(int8_copy)
    assert art.verdict("model.int8.onnx") == "modified since verified"
    assert onnxport.load(int8_copy).model_file == "model.onnx"  # auto never picks the changed file
    with pytest.warns(UserWarning, match="modified since it was verified"):
        onnxport.load(int8_copy, model="int8")
    result = run_cli("inspect", int8_copy)
    assert "model.int8.onnx (int8): modified since verified" in result.output

    # verify judges the file as it is now and fingerprints these bytes with the new verdict.
    report = onnxport.verify(int8_copy, model_file="model.int8.onnx")
    assert report.recorded == "verdict"
    art = onnxport.Artifact(int8_copy)
    assert art.files["model.int8.onnx"]["sha256"] == hashlib.sha256(
        (int8_copy / "model.int8.onnx").read_bytes()).hexdigest()
    assert art.verdict("model.int8.onnx") == report.verdict
    assert art.integrity("model.int8.onnx", deep=True) == "intact"


def test_same_size_and_restored_mtime_is_caught_by_deep_inspect(int8_copy):
    """The cheap check trusts size + mtime; `inspect --deep` hashes and still finds the change."""
    path = int8_copy / "model.int8.onnx"
    stat = flip_weight_byte(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert onnxport.inspect(int8_copy)["artifact"]["files"]["model.int8.onnx"]["integrity"] == "intact"
    deep = onnxport.inspect(int8_copy, deep=True)["artifact"]["files"]["model.int8.onnx"]
    assert deep["integrity"] == "modified"
    assert deep["verdict"] == "modified since verified"
    result = run_cli("inspect", int8_copy, "--deep", "--json")
    assert json.loads(result.output)["artifact"]["files"]["model.int8.onnx"]["integrity"] == "modified"


def test_deleted_tokenizer_is_a_clear_error(int8_copy):
    (int8_copy / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match="tokenizer.json"):
        onnxport.load(int8_copy)
    result = run_cli("embed", int8_copy, "hello")
    assert result.exit_code == 2 and "tokenizer.json" in result.output and "Traceback" not in result.output


def test_verify_with_own_options_keeps_the_export_verdict(int8_copy, tmp_path):
    art = onnxport.Artifact(int8_copy)
    export_report = art.files["model.onnx"]["verification"]
    texts = tmp_path / "texts.txt"
    texts.write_text("a short text\nanother one, a little longer than the first\n")

    result = run_cli("verify", int8_copy, "--texts", texts, "--atol", "0.001")
    assert result.exit_code == 0, result.output
    assert "pass --record to make it the verdict" in result.output
    art = onnxport.Artifact(int8_copy)
    assert art.files["model.onnx"]["verification"] == export_report
    extra = art.files["model.onnx"]["extra_verifications"]
    assert len(extra) == 1 and extra[0]["texts"] == 2 and extra[0]["checks"][0]["limits"]["max_abs_diff"] == 0.001

    result = run_cli("verify", int8_copy, "--texts", texts, "--record")
    assert result.exit_code == 0, result.output
    assert onnxport.Artifact(int8_copy).files["model.onnx"]["verification"]["texts"] == 2


def test_read_only_artifact_loads_embeds_inspects_and_verifies(int8_copy, monkeypatch):
    """Nothing but `verify` wants to write, and it says it could not instead of failing."""
    import errno

    from onnxport.core import artifact as artifact_module

    before = snapshot(int8_copy)
    mode = int8_copy.stat().st_mode
    os.chmod(int8_copy, 0o555)
    for path in int8_copy.iterdir():
        os.chmod(path, 0o444)

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(int8_copy / MANIFEST))

    monkeypatch.setattr(artifact_module, "write_manifest", refuse)  # as root, chmod alone does not stop writes
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            vectors = onnxport.load(int8_copy).embed(["read only", "still works"])
        assert vectors.shape[0] == 2 and np.isfinite(vectors).all()
        assert run_cli("embed", int8_copy, "read only").exit_code == 0
        assert run_cli("inspect", int8_copy).exit_code == 0
        report = onnxport.verify(int8_copy)
        assert report.passed and report.recorded == "read-only"
        result = run_cli("verify", int8_copy)
        assert result.exit_code == 0 and "read-only" in result.output
    finally:
        for path in int8_copy.iterdir():
            os.chmod(path, 0o644)
        os.chmod(int8_copy, mode)
    assert snapshot(int8_copy) == before
