"""Routes for operators: /health (the process answers), /ready (models loaded and warmed
up, not shutting down), /info (models, files in use and their verdicts, limits),
/metrics (Prometheus). /health, /ready and /metrics need no API key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from ..core.version import __version__

router = APIRouter()
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})


@router.get("/health")
async def health():
    return JSONResponse({"status": "ok"})


@router.get("/ready")
async def ready(request: Request):
    state = request.app.state.onnxport
    if state.draining:
        return JSONResponse({"status": "shutting down"}, status_code=503)
    if not state.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready", "models": list(state.models)})


@router.get("/info")
async def info(request: Request):
    state = request.app.state.onnxport
    return JSONResponse({"version": __version__, "default_model": state.default.name,
                         "models": [served.info() for served in state.models.values()],
                         "limits": state.limits.as_dict()})


@router.get("/metrics")
async def metrics(request: Request):
    state = request.app.state.onnxport
    return Response(state.metrics.exposition(), media_type=state.metrics.content_type)
