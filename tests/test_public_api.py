"""The public surface is pinned, and the runtime side never imports torch."""

from __future__ import annotations

import subprocess
import sys

import onnxport


def test_public_names_are_pinned():
    assert sorted(onnxport.__all__) == sorted(
        ["Artifact", "ExportSpec", "Pooling", "Task", "errors", "export", "inspect", "load", "verify"]
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
vectors = onnxport.load({str(minilm_artifact)!r}).embed(["hello world", ""])
assert vectors.shape == (2, 384)
info = onnxport.inspect({str(minilm_artifact)!r})
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules)
print(",".join(heavy))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
