"""Every error onnxport raises on purpose, in one tree.

    OnnxportError            base class; the message always says what to do next
    ├── InputError           a bad argument or input text from the caller (also a ValueError)
    │   └── NotForThisTask   a pipeline verb the artifact's task lacks, e.g. embed() on a
    │                        classifier (also an AttributeError, so hasattr() stays False)
    ├── ModelLoadError       the source model cannot be found or loaded
    ├── ExportError          the model cannot be exported as asked
    ├── ParityError          an exported file does not match its reference
    ├── ArtifactError        an artifact directory or ONNX file is missing, damaged or unreadable
    └── MissingDependency    an optional extra this needs is not installed (also an ImportError)

The CLI turns any OnnxportError into one `error: ...` line and its `exit_code`: 2
(ParityError: 1, since the export itself worked but is wrong). OSError from the user's
environment (permissions, a read-only or full disk, a missing directory) also exits 2;
anything else is a bug and exits 3. docs/errors.md lists every code with examples.
"""

from __future__ import annotations


class OnnxportError(Exception):
    """Base class of every error onnxport raises on purpose."""

    exit_code = 2


class InputError(OnnxportError, ValueError):
    """A bad argument or input text from the caller."""


class NotForThisTask(InputError, AttributeError):
    """A pipeline verb the artifact's task does not have (`embed` on a token classifier)."""


class ModelLoadError(OnnxportError):
    """The source model cannot be found or loaded."""


class ExportError(OnnxportError):
    """The model cannot be exported as asked."""


class ParityError(OnnxportError):
    """An exported file does not match its reference within tolerance."""

    exit_code = 1


class ArtifactError(OnnxportError):
    """An artifact directory or ONNX file is missing, incomplete or unreadable."""

    @classmethod
    def damaged(cls, path: object, reason: str) -> "ArtifactError":
        """The one message for a model file that is cut short or not ONNX at all."""
        return cls(f"{path} is damaged or not an ONNX file ({reason}); re-export the artifact")


class MissingDependency(OnnxportError, ImportError):
    """An optional extra is not installed; the message names the `pip install` that adds it."""
