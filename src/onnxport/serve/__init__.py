"""`onnxport serve`: an HTTP server for artifacts (install `onnxport[serve]`).

OpenAI's /v1/embeddings, text-embeddings-inference's /embed, /rerank and /tokenize, plus
/classify and /ner; several artifacts in one process; concurrent requests merged into model runs
bounded by tokens (`batcher`); limits, API key, Prometheus metrics, graceful SIGTERM.
A thin layer over the runtime pipelines: never a second inference path.
"""

from __future__ import annotations

from ..errors import MissingDependency

__all__ = ["create_app", "require_serve_extra"]

_EXTRA = ("fastapi", "uvicorn", "prometheus_client")


def require_serve_extra() -> None:
    """MissingDependency with the install command when the `serve` extra is not installed."""
    missing = []
    for module in _EXTRA:
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingDependency(f"the server needs {', '.join(missing)}, which this install lacks; "
                                'install them with: pip install "onnxport[serve]"')


try:
    from .app import create_app
except ImportError as error:  # only a missing extra is expected here; anything else is a bug
    if (error.name or "").split(".")[0] not in (*_EXTRA, "starlette", "pydantic"):
        raise

    def create_app(*args, **kwargs):  # type: ignore[no-redef]
        """Stands in for the app factory when the `serve` extra is missing: says what to install."""
        require_serve_extra()
        raise MissingDependency('install the server with: pip install "onnxport[serve]"')
