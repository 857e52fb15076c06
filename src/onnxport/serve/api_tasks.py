"""text-embeddings-inference's routes, so its clients work unchanged (/embed, /rerank,
/tokenize), and the task routes it lacks (/classify, /ner with character offsets)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from ..runtime.entities import flat_windows, per_text
from ..runtime.vectors import normalized, shorten
from .inputs import check_dimensions, request_items
from .problems import Problem
from .schemas import ClassifyRequest, EmbedRequest, NerRequest, RerankRequest, TokenizeRequest

router = APIRouter()


@router.post("/embed")
async def embed(body: EmbedRequest, request: Request):
    state = request.app.state.onnxport
    served = state.model(body.model, "/embed")
    texts, _ = request_items(body.inputs, field="inputs", limits=state.limits)
    check_dimensions(body.dimensions, served.pipeline.dimensions)
    encodings = served.tokenize(texts, truncate=body.truncate, field="inputs")
    vectors = np.stack(await served.infer(encodings, request))
    if body.normalize and body.dimensions is None:
        vectors = normalized(vectors)
    return JSONResponse(shorten(vectors, body.dimensions).tolist())


@router.post("/classify")
async def classify(body: ClassifyRequest, request: Request):
    state = request.app.state.onnxport
    served = state.model(body.model, "/classify")
    texts, single = request_items(body.inputs, field="inputs", limits=state.limits)
    if body.top_k is not None and body.top_k < 1:
        raise Problem(422, f"top_k must be at least 1, not {body.top_k}", reason="bad_top_k", param="top_k")
    encodings = served.tokenize(texts, truncate=body.truncate, field="inputs")
    pipeline = served.pipeline
    results = [pipeline.ranked(logits if body.raw_scores else pipeline.scores(logits), body.top_k)
               for logits in await served.infer(encodings, request)]
    return JSONResponse(results[0] if single else results)


@router.post("/rerank")
async def rerank(body: RerankRequest, request: Request):
    state = request.app.state.onnxport
    served = state.model(body.model, "/rerank")
    if not body.query.strip():
        raise Problem(400, "query is an empty text; send the text to rank the texts for", reason="empty_input",
                      param="query")
    texts, _ = request_items(body.texts, field="texts", limits=state.limits)
    # Each (query, text) pair runs through the model together, merged with other requests' pairs.
    encodings = served.tokenize([(body.query, text) for text in texts], truncate=body.truncate, field="texts")
    logits = np.array(await served.infer(encodings, request), dtype=np.float64)
    scores = logits if body.raw_scores else served.pipeline.scores(logits)
    order = np.argsort(-scores, kind="stable")
    return JSONResponse([{"index": int(i), "score": float(scores[i]), **({"text": texts[i]} if body.return_text else {})}
                         for i in order])


@router.post("/ner")
async def ner(body: NerRequest, request: Request):
    state = request.app.state.onnxport
    served = state.model(body.model, "/ner")
    texts, single = request_items(body.inputs, field="inputs", limits=state.limits)
    # Long texts run in overlapping windows, so `truncate` matters only with stride null (one window).
    windows = served.tokenize_windows(texts, stride=body.stride, truncate=body.truncate, field="inputs")
    rows = await served.infer(flat_windows(windows), request)
    results = [served.pipeline.entities(text, text_windows, text_rows, body.aggregation)
               for text, text_windows, text_rows in zip(texts, windows, per_text(rows, windows))]
    return JSONResponse(results[0] if single else results)


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request):
    state = request.app.state.onnxport
    served = state.model(body.model, "/tokenize")
    texts, _ = request_items(body.inputs, field="inputs", limits=state.limits)
    encodings = served.pipeline.encoder.tokenize(texts, add_special_tokens=body.add_special_tokens)
    return JSONResponse([
        [{"id": token_id, "text": token, "special": bool(special),
          "start": None if special else start, "stop": None if special else stop}
         for token_id, token, special, (start, stop) in zip(e.ids, e.tokens, e.special_tokens_mask, e.offsets)]
        for e in encodings])
