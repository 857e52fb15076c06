"""`create_app`: the ASGI app (FastAPI) serving one or more artifacts.

Models load when the app is created (a bad artifact fails before anything listens); the
lifespan starts one inference thread per model, warms each up in the background (/ready
turns 200 when done) and, on shutdown, lets queued work finish before the threads end.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Sequence

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..core.version import __version__
from ..errors import InputError
from . import api_openai, api_status, api_tasks
from .guards import Guard, route_label
from .limits import Limits, parse_size
from .metrics import ServeMetrics
from .models import load_models
from .problems import Problem, problem_response, validation_message
from .state import ServerState

log = logging.getLogger("onnxport.serve")


def create_app(artifacts: Sequence[str | Path] | str | Path, *, model: str = "auto", api_key: str | None = None,
               threads: int | None = None, providers: Sequence[str] | None = None,
               max_batch_tokens: int = 16384, max_batch_requests: int = 64, max_client_batch_size: int = 256,
               max_queue: int = 1024, payload_limit: str | int = "2MB", run_tokens: int | None = None) -> FastAPI:
    """The server app for `artifacts` (paths, or NAME=PATH; requests pick one by `model`,
    default the first). `api_key` defaults to $ONNXPORT_API_KEY; None/empty = no key."""
    if isinstance(artifacts, (str, Path)):
        artifacts = [artifacts]
    limits = Limits(max_batch_tokens=max_batch_tokens, max_batch_requests=max_batch_requests,
                    max_client_batch_size=max_client_batch_size, max_queue=max_queue,
                    payload_limit=parse_size(payload_limit), run_tokens=run_tokens)
    if api_key is None:
        api_key = os.environ.get("ONNXPORT_API_KEY") or None
    metrics = ServeMetrics()
    models = load_models(artifacts, model=model, threads=threads, providers=providers, limits=limits,
                         metrics=metrics)
    state = ServerState(models=models, limits=limits, metrics=metrics, api_key=api_key)

    @asynccontextmanager
    async def lifespan(app):
        for served in models.values():
            served.batcher.start()
        warming = asyncio.create_task(_warm_up(state))
        yield
        warming.cancel()
        # uvicorn has finished in-flight requests by now; end the threads once their queues are empty
        await asyncio.gather(*(asyncio.to_thread(served.batcher.stop) for served in models.values()))

    app = FastAPI(title="onnxport", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.onnxport = state
    for module in (api_openai, api_tasks, api_status):
        app.include_router(module.router)
    _add_error_handlers(app, state)
    app.add_middleware(Guard, state=state)
    return app


async def _warm_up(state: ServerState) -> None:
    for served in state.models.values():
        await asyncio.to_thread(served.warm_up)
    state.ready = True
    log.info("onnxport: ready (%s)", ", ".join(state.models))


def _add_error_handlers(app: FastAPI, state: ServerState) -> None:
    def answer(request, problem: Problem):
        state.metrics.failures.labels(route_label(request.url.path), problem.reason).inc()
        return problem_response(request.url.path, problem)

    @app.exception_handler(Problem)
    async def on_problem(request, problem: Problem):
        return answer(request, problem)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request, error: RequestValidationError):
        errors = error.errors()
        reason = "invalid_json" if any(e.get("type") == "json_invalid" for e in errors) else "invalid_body"
        return answer(request, Problem(422, validation_message(errors), reason=reason))

    @app.exception_handler(InputError)
    async def on_input_error(request, error: InputError):
        return answer(request, Problem(422, str(error), reason="invalid_input"))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request, error: StarletteHTTPException):
        message = {404: f"no route {request.url.path}; see GET /info for this server's routes",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code,
                                                                                   str(error.detail))
        return answer(request, Problem(error.status_code, message, reason=f"http_{error.status_code}"))

    @app.exception_handler(Exception)
    async def on_bug(request, error: Exception):
        log.exception("onnxport: unexpected error on %s", request.url.path)
        return answer(request, Problem(500, f"internal error ({type(error).__name__}); the server log has "
                                            "the details; please report it", reason="internal"))
