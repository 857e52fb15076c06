"""OpenAI's embeddings API (POST /v1/embeddings, GET /v1/models), so the official `openai`
client works by changing only its base_url. That client asks for base64 by default."""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from ..runtime.vectors import shorten
from .inputs import base64_vector, check_dimensions, request_items
from .schemas import EmbeddingsRequest

router = APIRouter(prefix="/v1")
_STARTED = int(time.time())


@router.post("/embeddings")
async def embeddings(body: EmbeddingsRequest, request: Request):
    state = request.app.state.onnxport
    served = state.model(body.model, "/v1/embeddings")
    items, _ = request_items(body.input, field="input", limits=state.limits)
    check_dimensions(body.dimensions, served.pipeline.dimensions)
    encodings = served.tokenize(items, truncate=True, field="input")
    vectors = shorten(np.stack(await served.infer(encodings, request)), body.dimensions)
    encode = base64_vector if body.encoding_format == "base64" else (lambda vector: vector.tolist())
    tokens = sum(len(e.ids) for e in encodings)
    return JSONResponse({
        "object": "list",
        "data": [{"object": "embedding", "embedding": encode(vector), "index": index}
                 for index, vector in enumerate(vectors)],
        "model": served.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


@router.get("/models")
async def models(request: Request):
    state = request.app.state.onnxport
    return JSONResponse({"object": "list", "data": [
        {"id": name, "object": "model", "created": _STARTED, "owned_by": "onnxport"} for name in state.models]})
