"""The public surface is pinned, and the runtime side never imports torch."""

from __future__ import annotations

import subprocess
import sys

import onnxport


def test_public_names_are_pinned():
    assert sorted(onnxport.__all__) == sorted(
        ["Artifact", "ExportSpec", "Pooling", "Task", "errors", "export", "inspect", "verify"]
    )
    for name in onnxport.__all__:
        assert hasattr(onnxport, name)


def test_error_tree():
    errors = onnxport.errors
    for cls in (errors.InputError, errors.ModelLoadError, errors.ExportError, errors.ParityError,
                errors.ArtifactError):
        assert issubclass(cls, errors.OnnxportError)
    assert errors.ParityError.exit_code == 1
    assert errors.ExportError.exit_code == 2


def test_importing_onnxport_and_reading_an_artifact_does_not_import_torch(minilm_artifact):
    code = f"""
import sys
import onnxport
from onnxport.runtime import OnnxModel, TextEncoder
art = onnxport.Artifact({str(minilm_artifact)!r})
out = OnnxModel(art.model_path()).run(TextEncoder.for_artifact(art).encode(["hello world"]))
assert out["sentence_embedding"].shape == (1, 384)
info = onnxport.inspect({str(minilm_artifact)!r})
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
print(",".join(heavy))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
