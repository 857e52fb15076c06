"""Every error onnxport raises on purpose, in one tree.

    OnnxportError            base class; the message always says what to do next
    ├── InputError           a bad argument or input text from the caller
    ├── ModelLoadError       the source model cannot be found or loaded
    ├── ExportError          the model cannot be exported as asked
    ├── ParityError          an exported file does not match its reference
    ├── ArtifactError        an artifact directory or ONNX file is missing or unreadable
    └── MissingDependency    an optional extra this needs is not installed (also an ImportError)

The CLI turns any OnnxportError into a one-line message and exit code 2
(ParityError: exit code 1, since the export itself worked but is wrong).
"""

from __future__ import annotations


class OnnxportError(Exception):
    """Base class of every error onnxport raises on purpose."""

    exit_code = 2


class InputError(OnnxportError, ValueError):
    """A bad argument or input text from the caller."""


class ModelLoadError(OnnxportError):
    """The source model cannot be found or loaded."""


class ExportError(OnnxportError):
    """The model cannot be exported as asked."""


class ParityError(OnnxportError):
    """An exported file does not match its reference within tolerance."""

    exit_code = 1


class ArtifactError(OnnxportError):
    """An artifact directory or ONNX file is missing, incomplete or unreadable."""


class MissingDependency(OnnxportError, ImportError):
    """An optional extra is not installed; the message names the `pip install` that adds it."""
