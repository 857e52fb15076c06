"""onnxport: export transformer encoders to verified, fast ONNX artifacts, and run them.

The public surface is small and lazy: importing onnxport does not import torch, so the
runtime install (numpy, onnxruntime, tokenizers) serves artifacts on its own.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "ExportSpec",
    "Pooling",
    "Task",
    "errors",
    "export",
    "inspect",
    "load",
    "verify",
]

from . import errors
from .artifact import Artifact
from .spec import ExportSpec, Pooling, Task


def export(model=None, **options):
    """Export a model to an artifact directory; see onnxport.exporter.export."""
    from .exporter import export as _export

    return _export(model, **options)


def verify(artifact, **options):
    """Check an artifact's model file against its reference; see onnxport.verification.verify."""
    from .verification import verify as _verify

    return _verify(artifact, **options)


def inspect(path, **options):
    """Describe an ONNX file or artifact without running it; see onnxport.graph.inspect."""
    from .graph import inspect as _inspect

    return _inspect(path, **options)


def load(artifact, **options):
    """Open an artifact as its task's pipeline (Embedder, TokenClassifier, SequenceClassifier);
    see onnxport.pipelines.load."""
    from .pipelines import load as _load

    return _load(artifact, **options)
