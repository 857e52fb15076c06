"""Unit tests of the HTTP server's building blocks (onnxport.serve and core.cpus), with fake
pipelines and requests: no model export, no server process, every wait bounded."""

from __future__ import annotations

import asyncio
import base64
import importlib
import os
import random
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydantic
import pytest

from onnxport.core import cpus
from onnxport.errors import InputError, MissingDependency
from onnxport.serve import batcher as batcher_module
from onnxport.serve.batcher import Batcher, QueueFull, choose_batch
from onnxport.runtime.vectors import shorten
from onnxport.serve.inputs import base64_vector, check_dimensions, request_items
from onnxport.serve.limits import Limits, parse_size
from onnxport.serve.metrics import ServeMetrics
from onnxport.serve.models import ServedModel, TokenIdsInput, parse_artifact_args
from onnxport.serve.problems import Problem, problem_body, problem_response, validation_message
from onnxport.serve.schemas import EmbeddingsRequest, EmbedRequest

TIMEOUT = 5.0


def run(coroutine, timeout: float = TIMEOUT):
    """Run a test coroutine on a fresh event loop, never longer than `timeout`."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def until(predicate, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the inference thread")
        await asyncio.sleep(0.002)


# --- fakes ------------------------------------------------------------------------------


@dataclass(eq=False)
class Enc:
    """Stands in for a tokenizers.Encoding: the batcher only reads `.ids`."""

    owner: str
    value: int
    length: int

    @property
    def ids(self) -> list[int]:
        return [1] * self.length


def encodings(owner: str, lengths, start: int = 0) -> list[Enc]:
    return [Enc(owner, start + i, n) for i, n in enumerate(lengths)]


class FakePipeline:
    """Records each batch; the first call can block on `gate`; an encoding with value -1 fails."""

    def __init__(self, batch_rows: int | None = None, gate: threading.Event | None = None):
        self.batch_rows = batch_rows
        self.gate = gate
        self.calls: list[list[Enc]] = []
        self.entered = threading.Event()

    def infer(self, batch):
        self.calls.append(list(batch))
        self.entered.set()
        if self.gate is not None and len(self.calls) == 1:
            assert self.gate.wait(TIMEOUT)
        if any(e.value == -1 for e in batch):
            raise RuntimeError("model run failed")
        return [e.value * 10 for e in batch]

    def inferred(self) -> list[Enc]:
        return [e for call in self.calls for e in call]


def dropped(metrics: ServeMetrics, model: str = "m") -> float:
    return metrics.registry.get_sample_value("onnxport_dropped_items_total", {"model": model}) or 0.0


def item(tokens: int, ticket) -> batcher_module._Item:
    return batcher_module._Item(None, tokens, ticket, 0)


# --- choose_batch -----------------------------------------------------------------------


def test_choose_batch_hand_computed_cases():
    t = object()
    # closest to the oldest (10) first: 9, 12 fit (12 × 3 = 36), 30 × 4 = 120 > 60 does not
    assert choose_batch([item(n, t) for n in (10, 30, 12, 9, 50)], max_tokens=60, max_requests=8) == [0, 3, 2]
    # with room for 30 × 4 = 120 the 30 joins too, 50 × 5 = 250 still does not
    assert choose_batch([item(n, t) for n in (10, 30, 12, 9, 50)], max_tokens=120, max_requests=8) == [0, 3, 2, 1]
    # 11 and 9 tie at distance 1: arrival order wins (11); then 11 × 3 = 33 > 30 leaves 9 out
    assert choose_batch([item(n, t) for n in (10, 50, 11, 9)], max_tokens=30, max_requests=8) == [0, 2]


def test_choose_batch_oldest_always_in_even_over_budget():
    t = object()
    assert choose_batch([item(500, t), item(1, t), item(1, t)], max_tokens=100, max_requests=8) == [0]
    assert choose_batch([item(7, t)], max_tokens=1, max_requests=1) == [0]
    assert choose_batch([], max_tokens=100, max_requests=8) == []


def test_choose_batch_max_requests_and_max_rows():
    a, b, c = object(), object(), object()
    pending = [item(20, a), item(21, b), item(19, c), item(40, a), item(22, b)]
    # by distance to 20: 21(b), 19(c, a third request: refused), 22(b), 40(a)
    assert choose_batch(pending, max_tokens=1000, max_requests=2) == [0, 1, 4, 3]
    assert choose_batch(pending, max_tokens=1000, max_requests=1) == [0, 3]  # only the oldest's request
    assert choose_batch(pending, max_tokens=1000, max_requests=2, max_rows=2) == [0, 1]
    assert choose_batch(pending, max_tokens=1000, max_requests=3, max_rows=1) == [0]


@pytest.mark.parametrize("seed", range(20))
def test_choose_batch_invariants_and_maximality(seed):
    rng = random.Random(seed)
    tickets = [object() for _ in range(rng.randint(1, 5))]
    pending = [item(rng.randint(1, 60), rng.choice(tickets)) for _ in range(rng.randint(1, 25))]
    max_tokens, max_requests = rng.randint(20, 200), rng.randint(1, 4)
    max_rows = rng.choice([None, 1, 2, 3, 8])
    chosen = choose_batch(pending, max_tokens=max_tokens, max_requests=max_requests, max_rows=max_rows)

    assert chosen[0] == 0 and len(set(chosen)) == len(chosen)
    batch = [pending[i] for i in chosen]
    longest = max(x.tokens for x in batch)
    owners = {id(x.ticket) for x in batch}
    if len(batch) > 1:
        assert longest * len(batch) <= max_tokens
    assert len(owners) <= max_requests
    assert max_rows is None or len(batch) <= max_rows
    # greedy never leaves out an item that would still have fitted the final batch
    for index in set(range(len(pending))) - set(chosen):
        extra = pending[index]
        fits = (max(longest, extra.tokens) * (len(batch) + 1) <= max_tokens
                and len(owners | {id(extra.ticket)}) <= max_requests
                and (max_rows is None or len(batch) < max_rows))
        assert not fits, (index, chosen)


# --- Batcher ----------------------------------------------------------------------------


def test_batcher_concurrent_tickets_get_their_own_rows():
    pipeline = FakePipeline()
    metrics = ServeMetrics()
    batcher = Batcher("m", pipeline, max_tokens=64, max_requests=3, max_queue=1000, metrics=metrics)
    rng = random.Random(3)
    requests = {f"r{k}": encodings(f"r{k}", [rng.randint(1, 30) for _ in range(rng.randint(1, 5))], 100 * k)
                for k in range(10)}

    async def client(name):
        await asyncio.sleep(rng.random() * 0.01)
        ticket = batcher.submit(requests[name])
        return name, await ticket.future

    async def main():
        batcher.start()
        try:
            return dict(await asyncio.gather(*(client(name) for name in requests)))
        finally:
            batcher.stop(TIMEOUT)

    results = run(main())
    for name, encs in requests.items():
        assert results[name] == [e.value * 10 for e in encs]  # own rows, own order
    for call in pipeline.calls:
        if len(call) > 1:
            assert max(e.length for e in call) * len(call) <= 64
        assert len({e.owner for e in call}) <= 3
    everything = [e for encs in requests.values() for e in encs]
    assert sorted(map(id, pipeline.inferred())) == sorted(map(id, everything))  # each exactly once
    assert metrics.registry.get_sample_value("onnxport_batch_size_count", {"model": "m"}) == len(pipeline.calls)
    assert metrics.registry.get_sample_value("onnxport_queue_size", {"model": "m"}) == 0


def test_batcher_merges_requests_queued_behind_a_running_batch():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)
    batcher = Batcher("m", pipeline, max_tokens=1000, max_requests=8, max_queue=100)

    async def main():
        batcher.start()
        try:
            first = batcher.submit(encodings("a", [5], 5))
            await until(pipeline.entered.is_set)
            others = [batcher.submit(encodings(o, [4, 6], 10 * k)) for k, o in enumerate("bcd", 1)]
            assert batcher.waiting == 6
            gate.set()
            return [await t.future for t in (first, *others)]
        finally:
            gate.set()
            batcher.stop(TIMEOUT)

    results = run(main())
    assert results == [[50], [100, 110], [200, 210], [300, 310]]
    assert len(pipeline.calls) == 2
    assert [e.owner for e in pipeline.calls[0]] == ["a"]
    assert sorted(e.owner for e in pipeline.calls[1]) == ["b", "b", "c", "c", "d", "d"]


def test_batcher_drops_cancelled_tickets_before_inference():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)
    metrics = ServeMetrics()
    batcher = Batcher("m", pipeline, max_tokens=1000, max_requests=8, max_queue=100, metrics=metrics)

    async def main():
        batcher.start()
        try:
            first = batcher.submit(encodings("a", [3]))
            await until(pipeline.entered.is_set)
            gone = batcher.submit(encodings("gone", [3, 4, 5]))
            kept = batcher.submit(encodings("kept", [3], 7))
            gone.cancelled = True
            gate.set()
            return await first.future, await kept.future, gone
        finally:
            gate.set()
            batcher.stop(TIMEOUT)

    first, kept, gone = run(main())
    assert (first, kept) == ([0], [70])
    assert "gone" not in {e.owner for e in pipeline.inferred()}
    assert dropped(metrics) == 3
    assert not gone.future.done()  # the batcher never answers an abandoned request


def test_batcher_queue_full_refuses_the_whole_request():
    pipeline = FakePipeline()
    batcher = Batcher("m", pipeline, max_tokens=1000, max_requests=8, max_queue=3)

    async def main():
        # the thread is not started yet, so the queue only fills
        first = batcher.submit(encodings("a", [2, 2]))
        with pytest.raises(QueueFull) as refused:
            batcher.submit(encodings("b", [2, 2], 10))
        assert batcher.waiting == 2  # nothing of the refused request is queued
        last = batcher.submit(encodings("c", [2], 20))  # 3 ≤ max_queue still fits
        batcher.start()
        try:
            return refused.value, await first.future, await last.future
        finally:
            batcher.stop(TIMEOUT)

    problem, first, last = run(main())
    assert isinstance(problem, Problem)
    assert (problem.status, problem.reason, problem.headers) == (429, "queue_full", {"Retry-After": "1"})
    assert "limit 3" in problem.message
    assert (first, last) == ([0, 10], [200])
    assert "b" not in {e.owner for e in pipeline.inferred()}
    response = problem_response("/embed", problem)
    assert response.status_code == 429 and response.headers["retry-after"] == "1"


def test_batcher_failed_run_fails_its_tickets_and_thread_lives_on():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)
    batcher = Batcher("m", pipeline, max_tokens=1000, max_requests=8, max_queue=100)

    async def main():
        batcher.start()
        try:
            first = batcher.submit(encodings("a", [3]))
            await until(pipeline.entered.is_set)
            bad = batcher.submit([Enc("bad", -1, 3)])
            bystander = batcher.submit(encodings("by", [3], 5))  # merged into the failing run
            gate.set()
            assert await first.future == [0]
            outcomes = await asyncio.gather(bad.future, bystander.future, return_exceptions=True)
            later = batcher.submit(encodings("later", [4], 9))
            return outcomes, await later.future
        finally:
            gate.set()
            batcher.stop(TIMEOUT)

    outcomes, later = run(main())
    assert all(isinstance(o, RuntimeError) and str(o) == "model run failed" for o in outcomes)
    assert sorted(e.owner for e in pipeline.calls[1]) == ["bad", "by"]
    assert later == [90]


def test_batcher_stop_drains_the_queue_then_refuses():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)
    batcher = Batcher("m", pipeline, max_tokens=1000, max_requests=8, max_queue=100)

    async def main():
        batcher.start()
        first = batcher.submit(encodings("a", [3]))
        await until(pipeline.entered.is_set)
        queued = batcher.submit(encodings("b", [3, 3], 1))
        timer = threading.Timer(0.1, gate.set)  # the running batch ends after stop() began
        timer.start()
        try:
            batcher.stop(TIMEOUT)
        finally:
            gate.set()
            timer.cancel()
        alive = batcher._thread.is_alive()
        with pytest.raises(Problem) as refused:
            batcher.submit(encodings("c", [3]))
        return alive, refused.value, await first.future, await queued.future

    alive, problem, first, queued = run(main())
    assert not alive
    assert (problem.status, problem.reason) == (503, "shutting_down")
    assert (first, queued) == ([0], [10, 20])
    assert "c" not in {e.owner for e in pipeline.inferred()}


def test_batcher_respects_static_batch_rows():
    pipeline = FakePipeline(batch_rows=2)
    batcher = Batcher("m", pipeline, max_tokens=10_000, max_requests=8, max_queue=100)

    async def main():
        tickets = [batcher.submit(encodings(o, [3, 1, 4, 1, 5], 10 * k)) for k, o in enumerate("ab")]
        batcher.start()
        try:
            return [await t.future for t in tickets]
        finally:
            batcher.stop(TIMEOUT)

    results = run(main())
    assert results == [[0, 10, 20, 30, 40], [100, 110, 120, 130, 140]]
    assert pipeline.calls and all(len(call) <= 2 for call in pipeline.calls)
    assert len(pipeline.inferred()) == 10


def test_batcher_empty_request_is_answered_at_once():
    batcher = Batcher("m", FakePipeline(), max_tokens=10, max_requests=1, max_queue=1)

    async def main():
        ticket = batcher.submit([])
        return ticket.future.done(), await ticket.future

    assert run(main()) == (True, [])
    assert batcher.waiting == 0


# --- ServedModel.infer: client disconnects ----------------------------------------------


class FakeRequest:
    """An ASGI request whose next message is a disconnect after `after` seconds (None: never)."""

    def __init__(self, after: float | None):
        self.after = after

    async def receive(self):
        if self.after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.after)
        return {"type": "http.disconnect"}


def served_with(batcher: Batcher) -> tuple[ServedModel, list]:
    model = ServedModel.__new__(ServedModel)
    model.batcher = batcher
    tickets = []
    submit = batcher.submit
    batcher.submit = lambda encs: tickets.append(submit(encs)) or tickets[-1]
    return model, tickets


def test_served_model_infer_disconnect_is_499_and_drops_items():
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)
    metrics = ServeMetrics()
    batcher = Batcher("m", pipeline, max_tokens=1000, max_requests=8, max_queue=100, metrics=metrics)
    model, tickets = served_with(batcher)

    async def main():
        batcher.start()
        try:
            first = batcher.submit(encodings("a", [3]))
            await until(pipeline.entered.is_set)
            with pytest.raises(Problem) as gone:
                await model.infer(encodings("gone", [2, 2]), FakeRequest(after=0.02))
            gate.set()
            await first.future
            after = await model.infer(encodings("after", [2], 4), FakeRequest(after=None))
            return gone.value, after
        finally:
            gate.set()
            batcher.stop(TIMEOUT)

    problem, after = run(main())
    assert (problem.status, problem.reason) == (499, "client_disconnected")
    ticket = tickets[1]
    assert ticket.cancelled and ticket.future.cancelled()
    assert "gone" not in {e.owner for e in pipeline.inferred()}
    assert dropped(metrics) == 2
    assert after == [40]  # a client that stays gets its rows


def test_served_model_infer_without_request():
    batcher = Batcher("m", FakePipeline(), max_tokens=1000, max_requests=8, max_queue=100)
    model, _ = served_with(batcher)

    async def main():
        batcher.start()
        try:
            return await model.infer(encodings("a", [1, 2], 3))
        finally:
            batcher.stop(TIMEOUT)

    assert run(main()) == [30, 40]


# --- Limits and parse_size --------------------------------------------------------------


def test_limits_defaults():
    assert Limits().as_dict() == {"max_batch_tokens": 16384, "max_batch_requests": 64,
                                  "max_client_batch_size": 256, "max_queue": 1024, "payload_limit": 2_000_000,
                                  "run_tokens": None}


@pytest.mark.parametrize("field", ["max_batch_tokens", "max_batch_requests", "max_client_batch_size",
                                   "max_queue", "payload_limit"])
@pytest.mark.parametrize("value", [0, -3, 1.5, "8", True])
def test_limits_refuse_bad_values_naming_the_flag(field, value):
    with pytest.raises(InputError, match=field.replace("_", "-")):
        Limits(**{field: value})


@pytest.mark.parametrize("text, size", [("2MB", 2_000_000), ("2MiB", 2 * 1024**2), ("512KiB", 512 * 1024),
                                        ("1048576", 1_048_576), (1000, 1000), (" 3 gb ", 3_000_000_000),
                                        ("1.5kb", 1500), ("7b", 7)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["abc", "-1MB", "0", "0.1b", "2 TB", "", 0, -5])
def test_parse_size_refuses(text):
    with pytest.raises(InputError, match="payload"):
        parse_size(text, "payload-limit")


# --- parse_artifact_args ----------------------------------------------------------------


def test_parse_artifact_args_names():
    assert parse_artifact_args(["path/to/minilm"]) == [("minilm", Path("path/to/minilm"))]
    assert parse_artifact_args(["alias=path", "x/y"]) == [("alias", Path("path")), ("y", Path("x/y"))]
    assert parse_artifact_args(["dir/a=b"]) == [("a=b", Path("dir/a=b"))]  # '/' in the name: a path


def test_parse_artifact_args_existing_path_with_equals_sign(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "v1=final").mkdir()
    assert parse_artifact_args(["v1=final"]) == [("v1=final", Path("v1=final"))]
    assert parse_artifact_args(["v2=final"]) == [("v2", Path("final"))]  # no such directory: NAME=PATH


def test_parse_artifact_args_refuses_duplicates_and_nothing():
    with pytest.raises(InputError, match=r"both named 'minilm'.*minilm-a=a/minilm minilm-b=b/minilm"):
        parse_artifact_args(["a/minilm", "b/minilm"])
    with pytest.raises(InputError, match="both named 'x'"):
        parse_artifact_args(["x=one", "x=two"])
    with pytest.raises(InputError, match="at least one artifact"):
        parse_artifact_args([])


# --- ServedModel.tokenize with token ids ------------------------------------------------


def id_model(metrics=None) -> ServedModel:
    model = ServedModel.__new__(ServedModel)
    model.name, model.max_tokens, model.metrics = "tiny", 4, metrics
    model.pipeline = SimpleNamespace(encoder=SimpleNamespace(vocab_size=10))
    return model


def test_tokenize_token_ids_within_limits():
    metrics = ServeMetrics()
    out = id_model(metrics).tokenize([[0, 9], [1, 2, 3, 4, 5, 6]], truncate=True, field="input")
    assert [e.ids for e in out] == [[0, 9], [1, 2, 3, 4]]
    assert all(isinstance(e, TokenIdsInput) for e in out)
    assert out[1].attention_mask == [1, 1, 1, 1] and out[1].type_ids == [0, 0, 0, 0]
    assert metrics.registry.get_sample_value("onnxport_input_tokens_total", {"model": "tiny"}) == 6


@pytest.mark.parametrize("items, truncate, status, reason, words", [
    ([[1], [3, 10]], True, 422, "bad_token_id", ["input[1]", "token id 10", "vocabulary of 10"]),
    ([[-1]], True, 422, "bad_token_id", ["input[0]", "token id -1"]),
    ([[1], []], True, 400, "empty_input", ["input[1]", "empty"]),
    ([[1, 2, 3, 4, 5]], False, 422, "input_too_long", ["input[0]", "5 tokens", "4"]),
])
def test_tokenize_token_ids_refused(items, truncate, status, reason, words):
    with pytest.raises(Problem) as refused:
        id_model().tokenize(items, truncate=truncate, field="input")
    problem = refused.value
    assert (problem.status, problem.reason, problem.param) == (status, reason, "input")
    for word in words:
        assert word in problem.message


def test_token_ids_input_masks():
    encoding = TokenIdsInput([5, 6, 7])
    assert (encoding.ids, encoding.attention_mask, encoding.type_ids) == ([5, 6, 7], [1, 1, 1], [0, 0, 0])


# --- request_items, check_dimensions, shorten, base64_vector -----------------------------


def test_request_items_shapes():
    limits = Limits(max_client_batch_size=3)
    assert request_items("a text", field="inputs", limits=limits) == (["a text"], True)
    assert request_items(["a", "b"], field="inputs", limits=limits) == (["a", "b"], False)
    assert request_items([1, 2], field="input", limits=limits) == ([[1, 2]], True)
    assert request_items([[1, 2], [3]], field="input", limits=limits) == ([[1, 2], [3]], False)


@pytest.mark.parametrize("value, status, words", [
    ([], 400, ["inputs is an empty list"]),
    (["a", "b", "c", "d"], 413, ["4 items", "limit of 3"]),
    (["a", "  "], 400, ["inputs[1]", "empty text"]),
    ("\n", 400, ["inputs[0]"]),
])
def test_request_items_refused(value, status, words):
    with pytest.raises(Problem) as refused:
        request_items(value, field="inputs", limits=Limits(max_client_batch_size=3))
    assert refused.value.status == status and refused.value.param == "inputs"
    for word in words:
        assert word in refused.value.message


def test_check_dimensions():
    for ok in (None, 1, 8):
        check_dimensions(ok, 8)
    for bad in (0, 9, -1):
        with pytest.raises(Problem) as refused:
            check_dimensions(bad, 8)
        assert (refused.value.status, refused.value.param) == (400, "dimensions")


def test_shorten_renormalizes_the_prefix():
    vectors = np.array([[3.0, 4.0, 12.0], [0.0, 2.0, 5.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    assert shorten(vectors, None) is vectors
    np.testing.assert_allclose(shorten(vectors, 2), [[0.6, 0.8], [0.0, 1.0], [0.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(shorten(vectors, 1), [[1.0], [0.0], [0.0]], atol=1e-7)


def test_base64_vector():
    assert base64_vector(np.array([1.0])) == "AACAPw=="  # float32 1.0 is 00 00 80 3f
    values = np.array([0.5, -1.25, 3.1415927, 1e-8], dtype=np.float64)
    decoded = np.frombuffer(base64.b64decode(base64_vector(values)), dtype="<f4")
    np.testing.assert_array_equal(decoded, values.astype(np.float32))


# --- problem_body ------------------------------------------------------------------------


def test_problem_body_shapes():
    problem = Problem(422, "input[1] holds token id 99", reason="bad_token_id", param="input")
    assert problem_body("/v1/embeddings", problem) == {"error": {
        "message": "input[1] holds token id 99", "type": "invalid_request_error", "param": "input",
        "code": "bad_token_id"}}
    assert problem_body("/embed", problem) == {"error": "input[1] holds token id 99", "error_type": "Validation"}


@pytest.mark.parametrize("status, openai, tei", [(429, "rate_limit_error", "Overloaded"),
                                                 (503, "server_error", "Unhealthy"),
                                                 (499, "invalid_request_error", "Cancelled"),
                                                 (413, "invalid_request_error", "Validation")])
def test_problem_body_types(status, openai, tei):
    problem = Problem(status, "m", reason="r")
    assert problem_body("/v1/embeddings", problem)["error"]["type"] == openai
    assert problem_body("/v1/embeddings", problem)["error"]["code"] == "r"
    assert problem_body("/embed", problem)["error_type"] == tei


# --- validation_message on real pydantic errors -----------------------------------------


def message_for(schema, body) -> str:
    with pytest.raises(pydantic.ValidationError) as refused:
        schema.model_validate(body)
    message = validation_message(refused.value.errors())
    assert "\n" not in message
    return message


@pytest.mark.parametrize("body, where", [({"input": [1, "a"]}, "input[1] is 'a'"),
                                         ({"input": [1.0]}, "input[0] is 1.0"),
                                         ({"input": [True]}, "input[0] is True"),
                                         ({"input": [[1, 2], [3, "x"]]}, "input[1][1] is 'x'"),
                                         ({"input": 5}, "got int")])
def test_validation_message_union_field(body, where):
    message = message_for(EmbeddingsRequest, body)
    assert message.startswith("input must be a string, a list of strings, a list of token ids")
    assert message.endswith(where)


@pytest.mark.parametrize("body, where", [({"input": [1, "a", 2]}, "input[1] is 'a'"),
                                         ({"input": ["a", 1, "b"]}, "input[1] is 1")])
def test_validation_message_names_the_bad_item_not_the_last(body, where):
    assert message_for(EmbeddingsRequest, body).endswith(where)


def test_validation_message_other_fields():
    assert message_for(EmbeddingsRequest, {}) == "input: Field required"
    assert message_for(EmbedRequest, {"inputs": ["a", 3]}) == \
        "inputs must be a string or a list of strings; inputs[1] is 3"
    assert message_for(EmbedRequest, {"inputs": "a", "normalize": "yes"}).startswith("normalize: ")
    assert message_for(EmbedRequest, {"inputs": "a", "dimensions": "3"}).startswith("dimensions: ")
    both = message_for(EmbedRequest, {"inputs": 1, "truncate": 1})
    assert "inputs must be" in both and "truncate: " in both and "; " in both


# --- core.cpus -------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("files, limit", [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu.max": "garbage", "cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 0.5),
    ({}, None),
])
def test_cgroup_cpu_limit(tmp_path, files, limit):
    for name, text in files.items():
        write(tmp_path / name, text)
    assert cpus.cgroup_cpu_limit(tmp_path) == limit


def test_available_cpus(monkeypatch):
    affinity = len(os.sched_getaffinity(0))
    assert 1 <= cpus.available_cpus() <= affinity
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda root=None: 0.5)
    assert cpus.available_cpus() == 1
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda root=None: 1.2)
    assert cpus.available_cpus() == min(2, affinity)
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda root=None: None)
    assert cpus.available_cpus() == affinity


# --- the serve extra missing ------------------------------------------------------------


def test_require_serve_extra_names_the_install(monkeypatch):
    from onnxport.serve import require_serve_extra

    require_serve_extra()  # installed here
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now raises ImportError
    with pytest.raises(MissingDependency) as missing:
        require_serve_extra()
    assert 'pip install "onnxport[serve]"' in str(missing.value) and "prometheus_client" in str(missing.value)
    assert isinstance(missing.value, ImportError)


def test_create_app_without_fastapi_says_what_to_install(monkeypatch):
    import onnxport

    monkeypatch.setattr(onnxport, "serve", sys.modules["onnxport.serve"])  # restored afterwards
    for name in [m for m in sys.modules if m == "onnxport.serve" or m.startswith("onnxport.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)
    fresh = importlib.import_module("onnxport.serve")  # the package as an install without the extra sees it
    with pytest.raises(MissingDependency) as missing:
        fresh.create_app("some/artifact")
    assert 'pip install "onnxport[serve]"' in str(missing.value) and "fastapi" in str(missing.value)


def test_name_without_path_is_refused():
    with pytest.raises(InputError, match="names no artifact"):
        parse_artifact_args(["alias="])


def test_client_batch_larger_than_queue_is_refused():
    with pytest.raises(InputError, match="max-client-batch-size 300 is larger than max-queue 200"):
        Limits(max_client_batch_size=300, max_queue=200)


def test_model_runs_cut_a_batch_by_padded_tokens():
    ticket = SimpleNamespace(cancelled=False)
    gone = SimpleNamespace(cancelled=True)
    lengths = [30, 5, 12, 6, 40, 7]
    items = [batcher_module._Item(None, n, ticket, i) for i, n in enumerate(lengths)]
    items.append(batcher_module._Item(None, 8, gone, 0))
    runs = batcher_module.model_runs(items, 24)
    # sorted 5, 6, 7 | 12 (12×2 = 24 would fit, 30×2 would not) ... by hand:
    # [5, 6, 7]: 7×3 = 21 ≤ 24; adding 12 → 12×4 = 48 > 24 → cut; [12]: 30×2 = 60 > 24 → cut; [30]; [40] alone
    assert [[item.tokens for item in run] for run in runs] == [[5, 6, 7], [12], [30], [40]]
    assert batcher_module.model_runs([], 24) == []


def test_run_tokens_default_depends_on_the_device():
    from onnxport.serve.limits import CPU_RUN_TOKENS

    assert Limits().model_run_tokens(on_gpu=False) == CPU_RUN_TOKENS
    assert Limits().model_run_tokens(on_gpu=True) == 16384
    assert Limits(max_batch_tokens=512).model_run_tokens(on_gpu=False) == min(CPU_RUN_TOKENS, 512)
    assert Limits(run_tokens=64).model_run_tokens(on_gpu=True) == 64
    with pytest.raises(InputError, match="run-tokens"):
        Limits(run_tokens=0)


def test_model_runs_keep_padding_small():
    ticket = SimpleNamespace(cancelled=False)
    items = [batcher_module._Item(None, n, ticket, i) for i, n in enumerate([10, 10, 100, 104, 12])]
    # [10, 10, 12]: 36 padded, 32 real; 100 would pad 400 - 132 = 268 > max(32, 80) → cut;
    # [100, 104]: 208 padded, 204 real → together
    runs = batcher_module.model_runs(items, 10_000)
    assert [[item.tokens for item in run] for run in runs] == [[10, 10, 12], [100, 104]]
