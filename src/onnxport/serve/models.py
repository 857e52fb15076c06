"""The models one server holds: each artifact loaded once as its runtime pipeline (the same
`onnxport.load` users call, so the server is never a second inference path), with its
batcher, the routes its task can serve, and what /info says about it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..core.spec import Task
from ..errors import InputError
from ..runtime.pipelines import Pipeline, load
from .batcher import Batcher
from .limits import Limits
from .problems import Problem

EMBEDDING_ROUTES = ("/v1/embeddings", "/embed", "/tokenize")
ROUTES_BY_TASK = {
    Task.SENTENCE_EMBEDDING: EMBEDDING_ROUTES,
    Task.FEATURE_EXTRACTION: EMBEDDING_ROUTES,
    Task.TOKEN_CLASSIFICATION: ("/ner", "/tokenize"),
    Task.SEQUENCE_CLASSIFICATION: ("/classify", "/tokenize"),
    Task.TEXT_RANKING: ("/rerank", "/tokenize"),
}


@dataclass(frozen=True)
class TokenIdsInput:
    """Token ids a client sent instead of text (OpenAI's `input` allows it): used as given,
    special tokens included, like the ids /tokenize returns."""

    ids: list[int]
    attention_mask: list[int] = field(init=False)
    type_ids: list[int] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "attention_mask", [1] * len(self.ids))
        object.__setattr__(self, "type_ids", [0] * len(self.ids))


def parse_artifact_args(values: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """[(name, path)] from 'PATH' (named after its folder) or 'NAME=PATH'; names must differ."""
    if not values:
        raise InputError("give at least one artifact directory to serve")
    named: list[tuple[str, Path]] = []
    for value in values:
        text = str(value)
        name, sep, path = text.partition("=")
        if not sep or not name or "/" in name or Path(text).exists():
            name, path = Path(text).resolve().name, text
        elif not path:
            raise InputError(f"'{text}' names no artifact; write NAME=PATH, e.g. {name}=out/{name}")
        named.append((name, Path(path)))
    seen: dict[str, Path] = {}
    for name, path in named:
        if name in seen:
            raise InputError(f"two artifacts are both named '{name}' ({seen[name]} and {path}); "
                             f"name them, e.g. {name}-a={seen[name]} {name}-b={path}")
        seen[name] = path
    return named


class ServedModel:
    """One artifact in the server: pipeline, batcher and the routes its task serves."""

    def __init__(self, name: str, pipeline: Pipeline, limits: Limits, metrics=None):
        self.name = name
        self.pipeline = pipeline
        self.metrics = metrics
        self.task = pipeline.artifact.task
        if self.task not in ROUTES_BY_TASK:
            raise InputError(f"model '{name}' is a {self.task.value} artifact, which the server does not serve yet "
                             f"(it serves {', '.join(sorted(t.value for t in ROUTES_BY_TASK))}); run it with the "
                             "Python API or its CLI verb (onnxport qa / onnxport fill-mask)")
        self.routes = ROUTES_BY_TASK[self.task]
        self.max_tokens = pipeline.encoder.max_length
        if limits.max_batch_tokens < self.max_tokens:
            raise InputError(f"--max-batch-tokens {limits.max_batch_tokens} is smaller than model '{name}'s "
                             f"{self.max_tokens} tokens per input, so a long input could never be run; "
                             f"raise it to at least {self.max_tokens}")
        self.run_tokens = limits.model_run_tokens(on_gpu=bool(getattr(pipeline.runner, "on_cuda", False)))
        self.batcher = Batcher(name, pipeline, max_tokens=limits.max_batch_tokens,
                               max_requests=limits.max_batch_requests, max_queue=limits.max_queue,
                               run_tokens=self.run_tokens, metrics=metrics)

    def require(self, route: str) -> None:
        if route not in self.routes:
            raise Problem(400, f"model '{self.name}' is a {self.task.value} model, which does not serve {route}; "
                               f"it serves {', '.join(self.routes)}", reason="wrong_route")

    def info(self) -> dict:
        artifact = self.pipeline.artifact
        facts = {"name": self.name, "task": self.task.value, "routes": list(self.routes),
                 "max_input_tokens": self.max_tokens, "model_file": self.pipeline.model_file,
                 "verdict": artifact.verdict(self.pipeline.model_file), "path": str(artifact.path.resolve()),
                 "source": (artifact.manifest.get("source") or {}).get("path"), "run_tokens": self.run_tokens}
        session = getattr(self.pipeline.runner, "session", None)
        if session is not None:
            facts["providers"] = session.get_providers()
        if self.routes is EMBEDDING_ROUTES:
            facts["dimensions"] = self.pipeline.dimensions
            facts["normalized"] = bool(artifact.spec.normalize)
        labels = getattr(self.pipeline, "labels", None)
        if labels:
            facts["labels"] = [labels[key] for key in sorted(labels)]
        return facts

    def warm_up(self) -> None:
        """One real model run, so the first request does not pay for onnxruntime's first-run setup."""
        self.pipeline.infer(self.pipeline.tokenize(["warm up"]))

    # --- turning a request's items into rows -------------------------------------------

    def tokenize(self, items: list, *, truncate: bool, field: str) -> list:
        """Encodings for texts (or token-id lists, or (first, second) pairs): over-long items
        are cut, or a 422 naming the item when truncate is false."""
        started = time.perf_counter()
        if items and isinstance(items[0], list):
            encodings = self._from_ids(items, truncate=truncate, field=field)
        else:
            encodings = self.pipeline.tokenize_items(items, truncate=True)
            if not truncate:
                for index, encoding in enumerate(encodings):
                    if encoding.overflowing:
                        raise Problem(422, f"{field}[{index}] is longer than model '{self.name}'s "
                                           f"{self.max_tokens} tokens; shorten it, or send truncate=true to "
                                           "cut it", reason="input_too_long", param=field)
        if self.metrics is not None:
            self.metrics.observe_tokenize(self.name, started, sum(len(e.ids) for e in encodings))
        return encodings

    def tokenize_windows(self, texts: list[str], *, stride: int | str | None = "auto", truncate: bool = True,
                         field: str = "inputs") -> list[list]:
        """Per text, its window encodings (token classification): a long text is run in
        overlapping windows, each its own item in the batcher, so nothing is cut. stride None:
        one window per text, cut (or a 422 when truncate is false), as `tokenize`."""
        if stride is None:
            return [[encoding] for encoding in self.tokenize(texts, truncate=truncate, field=field)]
        started = time.perf_counter()
        try:
            windows = self.pipeline.windows(texts, stride=stride)
        except InputError as error:
            raise Problem(422, str(error), reason="bad_stride", param="stride") from None
        if self.metrics is not None:
            self.metrics.observe_tokenize(self.name, started, sum(len(e.ids) for w in windows for e in w))
        return windows

    def _from_ids(self, items: list[list[int]], *, truncate: bool, field: str) -> list:
        vocabulary = self.pipeline.encoder.vocab_size
        encodings = []
        for index, ids in enumerate(items):
            if not ids:
                raise Problem(400, f"{field}[{index}] is an empty list of token ids; send at least one id",
                              reason="empty_input", param=field)
            bad = next((i for i in ids if not 0 <= i < vocabulary), None)
            if bad is not None:
                raise Problem(422, f"{field}[{index}] holds token id {bad}, outside model '{self.name}'s "
                                   f"vocabulary of {vocabulary}; send ids from POST /tokenize",
                              reason="bad_token_id", param=field)
            if len(ids) > self.max_tokens:
                if not truncate:
                    raise Problem(422, f"{field}[{index}] has {len(ids)} tokens, over model '{self.name}'s "
                                       f"{self.max_tokens}", reason="input_too_long", param=field)
                ids = ids[: self.max_tokens]
            encodings.append(TokenIdsInput(list(ids)))
        return encodings

    async def infer(self, encodings: list, request=None) -> list:
        """Rows for `encodings` through the batcher; if the client disconnects meanwhile,
        its items are dropped before inference and Problem 499 is raised."""
        ticket = self.batcher.submit(encodings)
        if request is None:
            return await ticket.future
        watcher = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({ticket.future, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if ticket.future in done:
            return ticket.future.result()
        ticket.cancelled = True
        ticket.future.cancel()
        raise Problem(499, "the client disconnected before its results were ready", reason="client_disconnected")


async def _disconnected(request) -> None:
    """Returns when the client has gone away. The body is read by then, so the next ASGI
    message can only be the disconnect."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def load_models(artifacts: Sequence[str | Path], *, model: str = "auto", threads: int | None = None,
                providers: Sequence[str] | None = None, limits: Limits, metrics=None) -> dict[str, ServedModel]:
    """Load every artifact once (errors raise before the server listens), in the given order."""
    served: dict[str, ServedModel] = {}
    for name, path in parse_artifact_args(artifacts):
        pipeline = load(path, model=model, threads=threads, providers=providers)
        served[name] = ServedModel(name, pipeline, limits, metrics)
    return served
