"""The public surface is pinned both ways, each verb shows its real signature, and the
runtime side never imports torch."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import onnxport

PUBLIC = ["Artifact", "Embedder", "FillMask", "ParityReport", "Pooling", "QuestionAnswerer", "Reranker",
          "SequenceClassifier", "SparseEmbedder", "Task", "TokenClassifier", "errors", "export", "inspect", "load",
          "optimize", "quantize", "verify"]


def test_public_names_are_pinned_both_ways():
    assert sorted(onnxport.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(onnxport, name) is not None
    # Nothing public by accident: every other top-level name is private, a dunder, or a
    # subpackage / import the facade needs.
    allowed_extra = {"annotations", "Path", "TYPE_CHECKING", "Any", "Callable", "Sequence", "Exporter",
                     "core", "checks", "convert", "graph", "runtime", "tools", "serve", "scale"}
    extra = {n for n in dir(onnxport) if not n.startswith("_")} - set(PUBLIC) - allowed_extra
    assert not extra, f"public by accident: {sorted(extra)}"


def test_lazy_classes_are_the_real_ones():
    from onnxport.checks.report import ParityReport
    from onnxport.runtime.pipelines import (Embedder, FillMask, QuestionAnswerer, Reranker, SequenceClassifier,
                                            SparseEmbedder, TokenClassifier)

    assert onnxport.ParityReport is ParityReport
    assert (onnxport.Embedder, onnxport.TokenClassifier, onnxport.SequenceClassifier, onnxport.Reranker,
            onnxport.QuestionAnswerer, onnxport.FillMask, onnxport.SparseEmbedder) == (
        Embedder, TokenClassifier, SequenceClassifier, Reranker, QuestionAnswerer, FillMask, SparseEmbedder)
    with pytest.raises(AttributeError):
        onnxport.NoSuchThing  # noqa: B018


def _implementation(verb: str):
    from onnxport.convert import exporter, references
    from onnxport.graph import inspection, quantizer

    return {"export": exporter.export, "verify": references.verify, "inspect": inspection.inspect,
            "optimize": references.optimize, "quantize": quantizer.quantize}[verb]


def _shape(function) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("verb", ["export", "verify", "inspect", "optimize", "quantize"])
def test_each_verb_has_its_implementations_real_signature(verb):
    facade = getattr(onnxport, verb)
    assert _shape(facade) == _shape(_implementation(verb))
    assert "**" not in str(inspect.signature(facade))
    assert facade.__doc__ and len(facade.__doc__.split()) > 10


def test_load_signature_adds_only_the_backend_choice():
    from onnxport.runtime.pipelines import load as runtime_load

    facade = {name: p.default for name, p in inspect.signature(onnxport.load).parameters.items()}
    runtime = {name: p.default for name, p in inspect.signature(runtime_load).parameters.items()}
    shared = set(facade) & set(runtime)
    assert {name: facade[name] for name in shared} == {name: runtime[name] for name in shared}
    assert set(facade) - set(runtime) == {"allow_pickle"}
    assert facade["backend"] == "onnx" and facade["model"] == "auto"


def test_help_shows_the_keywords_of_export():
    text = inspect.signature(onnxport.export).parameters
    for keyword in ("out", "task", "pooling", "normalize", "opset", "target_ort", "int32", "static_shape",
                    "allow_pickle", "trust_remote_code", "hierarchy"):
        assert keyword in text


def test_error_tree():
    errors = onnxport.errors
    for cls in (errors.InputError, errors.ModelLoadError, errors.ExportError, errors.ParityError,
                errors.ArtifactError, errors.MissingDependency):
        assert issubclass(cls, errors.OnnxportError)
    assert issubclass(errors.MissingDependency, ImportError)
    assert errors.ParityError.exit_code == 1
    assert errors.ExportError.exit_code == 2 and errors.MissingDependency.exit_code == 2


def test_importing_onnxport_loads_nothing_heavy():
    code = ("import sys, onnxport\n"
            "print(','.join(sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'numpy', 'onnx') "
            "if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


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
