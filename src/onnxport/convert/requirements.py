"""Fail early, with the install command, when the export extra is missing.

The runtime install has no torch; every torch-side entry point calls `require_export`
first so users see `pip install "onnxport[export]"` instead of a ModuleNotFoundError
from deep inside.
"""

from __future__ import annotations

import importlib.util

from ..errors import MissingDependency

EXPORT_EXTRA = 'pip install "onnxport[export]"'


def require_export(what: str) -> None:
    """Raise MissingDependency naming the install command when torch or transformers is missing."""
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependency(f"{what} needs {' and '.join(missing)}, which this install lacks "
                                f"(`pip install onnxport` is the runtime only); run: {EXPORT_EXTRA}")
