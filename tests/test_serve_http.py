"""`onnxport serve` over real HTTP: the CLI started as a subprocess on a loopback port, then
driven by the official `openai` client and plain httpx.

Every answer is compared with an independent reference: the Python API on the same
artifact (`onnxport.load(...).embed / classify / extract / tokenize`), the artifact's own
tokenizer.json read with `tokenizers`, or numpy by hand. Errors are checked for their
status and their wire shape (OpenAI's under /v1/, text-embeddings-inference's elsewhere),
and /metrics by parsing its Prometheus text. Two servers start in this module: one with
three models, an API key and tight limits for most tests, and a throwaway one that is
sent SIGTERM under load.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
prometheus_parser = pytest.importorskip("prometheus_client.parser")

import onnxport  # noqa: E402
from onnxport.serve.limits import CPU_RUN_TOKENS  # noqa: E402
from onnxport.core.version import __version__  # noqa: E402

KEY = "test-key-3f9c"
AUTH = {"Authorization": f"Bearer {KEY}"}
# The main server's limits (given as flags; /info must report them back).
LIMITS = {"max_batch_tokens": 8192, "max_batch_requests": 16, "max_client_batch_size": 16,
          "max_queue": 512, "payload_limit": 64_000, "run_tokens": None}
MIN_COS = 0.99999

TEXTS = [
    "A man is eating food.",
    "How do I export a transformer model to ONNX?",
    "AC sleeper bus from Bangalore to Mumbai tomorrow",
    "Les modèles de langue sont entraînés sur de grands corpus.",
    "東京は日本の首都です。",
    "email me at someone@example.com or call +1 (555) 010-9999!!!",
    "ok",
    "The meeting was moved to 3 p.m. on 2024-03-15 (room B-12). " * 12,  # past 256 tokens: truncated
]
LONG_TEXT = "word " * 400  # 402 tokens with [CLS]/[SEP]: over minilm's 256 and the tiny models' 64
NER_TEXTS = [
    "Bus from Bangalore to Mumbai on next Friday please",
    "John Smith flew from Paris to 東京 with Air France.",
    "Book two tickets on the 9:45 pm Volvo to Chennai for next Friday.",
    "Non-AC seater from Pune to Goa on Saturday night",
    "Angela Merkel met Emmanuel Macron in Berlin.",
    "naïve café in Zürich, Straße 12",
    "nothing here",
    "The quick brown fox jumps over the lazy dog. " * 8,  # past 64 tokens: run in windows
]
_WORDS = ("model export graph tensor batch token sequence runtime latency throughput accuracy bus ticket "
          "city river mountain music history science market weather travel quantum protein language vector "
          "cosine similarity kernel memory cache thread schedule harbour lantern violin glacier orchard").split()


# ---------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def start_server(artifacts: list[str], log: Path, *flags: str, timeout: float = 120) -> Server:
    """`python -m onnxport.tools.cli serve ...` on a free loopback port, once /ready answers 200."""
    port = free_port()
    command = [sys.executable, "-m", "onnxport.tools.cli", "serve", *artifacts, "--host", "127.0.0.1",
               "--port", str(port), *flags]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with code {process.returncode} before it was ready:\n"
                        f"{server.log_text()}")
        try:
            if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.stop(10)
    pytest.fail(f"the server was not ready after {timeout:.0f}s:\n{server.log_text()}")


def cosines(got, expected) -> np.ndarray:
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    return (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))


def assert_same_vectors(got, expected, min_cos: float = MIN_COS) -> None:
    similarity = cosines(got, expected)
    assert similarity.min() >= min_cos, f"cosine similarities {np.round(similarity, 6).tolist()}"


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def assert_problem(response, status: int, *, code: str | None = None, mentions=()) -> str:
    """The error's status and wire shape (OpenAI's under /v1/, TEI's elsewhere); its message."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if response.request.url.path.startswith("/v1/"):
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert error["type"] == ("authentication_error" if status == 401 else "invalid_request_error"), body
        if code is not None:
            assert error["code"] == code, body
        message = error["message"]
    else:
        assert set(body) == {"error", "error_type"}, body
        assert isinstance(body["error_type"], str) and body["error_type"], body
        message = body["error"]
    assert isinstance(message, str) and message
    for part in mentions:
        assert part in message, f"{part!r} not in {message!r}"
    return message


def metric_samples(url: str) -> dict[tuple[str, frozenset], float]:
    """GET /metrics (no key needed) parsed: {(sample name, labels): value}."""
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in prometheus_parser.text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def varied_texts(rng: random.Random, count: int, tag: str) -> list[str]:
    """Distinct texts of mixed lengths (2 to ~120 tokens), each marked with `tag`."""
    return [f"{tag}-{i}: " + " ".join(rng.choice(_WORDS) for _ in range(rng.choice([1, 3, 8, 20, 45, 90])))
            for i in range(count)]


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def minilm_name(minilm_artifact) -> str:
    """Served under its folder's name (no NAME= given)."""
    return Path(minilm_artifact).resolve().name


@pytest.fixture(scope="module")
def minilm(minilm_artifact):
    return onnxport.load(minilm_artifact, threads=1)


@pytest.fixture(scope="module")
def ner(tiny_ner_artifact):
    return onnxport.load(tiny_ner_artifact, threads=1)


@pytest.fixture(scope="module")
def cls(tiny_cls_artifact):
    return onnxport.load(tiny_cls_artifact, threads=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory, minilm_artifact, tiny_ner_artifact, tiny_cls_artifact):
    """minilm (first: the default), ner=, cls=; an API key and the LIMITS."""
    log = tmp_path_factory.mktemp("serve-main") / "server.log"
    flags = ["--api-key", KEY, "--threads", "1", "--payload-limit", "64KB"]
    for name in ("max_batch_tokens", "max_batch_requests", "max_client_batch_size", "max_queue"):
        flags += [f"--{name.replace('_', '-')}", str(LIMITS[name])]
    running = start_server([str(minilm_artifact), f"ner={tiny_ner_artifact}", f"cls={tiny_cls_artifact}"], log, *flags)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)


# ---------------------------------------------------------------------------- OpenAI /v1/embeddings

def test_openai_client_embeddings_equal_embed(client, minilm, minilm_name):
    """Default (base64 on the wire) and float: same vectors, order, model name and token usage."""
    expected = minilm.embed(TEXTS)
    tokens = sum(len(e.ids) for e in minilm.tokenize(TEXTS))
    assert tokens > 8 * 3 and max(len(e.ids) for e in minilm.tokenize(TEXTS)) == 256  # one text truncated
    for options in ({}, {"encoding_format": "float"}):  # {}: the client asks for base64, decodes it
        response = client.embeddings.create(model=minilm_name, input=TEXTS, **options)
        assert response.model == minilm_name
        assert [item.index for item in response.data] == list(range(len(TEXTS)))
        got = np.array([item.embedding for item in response.data])
        assert got.shape == (len(TEXTS), 384)
        assert_same_vectors(got, expected)
        assert response.usage.prompt_tokens == tokens
        assert response.usage.total_tokens == tokens

    single = client.embeddings.create(model=minilm_name, input="The Eiffel Tower is 330 metres tall.")
    assert len(single.data) == 1
    assert_same_vectors([single.data[0].embedding], minilm.embed(["The Eiffel Tower is 330 metres tall."]))


def test_openai_client_dimensions(client, minilm, minilm_name):
    expected = unit(minilm.embed(TEXTS)[:, :128])  # Matryoshka: the first 128 values, renormalized
    for options in ({}, {"encoding_format": "float"}):
        response = client.embeddings.create(model=minilm_name, input=TEXTS, dimensions=128, **options)
        got = np.array([item.embedding for item in response.data])
        assert got.shape == (len(TEXTS), 128)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(got, expected, atol=2e-5)


def test_base64_on_the_wire_is_little_endian_float32(http, minilm):
    floats = http.post("/v1/embeddings", json={"input": TEXTS[:3], "encoding_format": "float"}).json()
    packed = http.post("/v1/embeddings", json={"input": TEXTS[:3], "encoding_format": "base64"}).json()
    for as_floats, as_base64 in zip(floats["data"], packed["data"]):
        assert isinstance(as_base64["embedding"], str)
        decoded = np.frombuffer(base64.b64decode(as_base64["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.float32(as_floats["embedding"]))
    assert_same_vectors([d["embedding"] for d in floats["data"]], minilm.embed(TEXTS[:3]))


def test_token_ids_from_tokenize_give_the_text_vector(http, minilm):
    texts = TEXTS[:4]
    tokenized = http.post("/tokenize", json={"inputs": texts})
    assert tokenized.status_code == 200, tokenized.text
    ids = [[token["id"] for token in tokens] for tokens in tokenized.json()]
    assert ids == [e.ids for e in minilm.tokenize(texts)]
    expected = minilm.embed(texts)

    response = http.post("/v1/embeddings", json={"input": ids, "encoding_format": "float"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_same_vectors([d["embedding"] for d in body["data"]], expected)
    assert body["usage"]["prompt_tokens"] == sum(map(len, ids))

    one = http.post("/v1/embeddings", json={"input": ids[1], "encoding_format": "float"}).json()  # one id list
    assert len(one["data"]) == 1
    assert_same_vectors([one["data"][0]["embedding"]], expected[1:2])


# ---------------------------------------------------------------------------- /embed (TEI)

def test_embed_route(http, minilm):
    expected = minilm.embed(TEXTS)
    response = http.post("/embed", json={"inputs": TEXTS})
    assert response.status_code == 200, response.text
    got = np.array(response.json())
    assert got.shape == (len(TEXTS), 384)
    assert_same_vectors(got, expected)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)

    single = http.post("/embed", json={"inputs": TEXTS[2]}).json()
    assert len(single) == 1 and len(single[0]) == 384
    assert_same_vectors(single, expected[2:3])

    shortened = np.array(http.post("/embed", json={"inputs": TEXTS, "dimensions": 64}).json())
    assert shortened.shape == (len(TEXTS), 64)
    np.testing.assert_allclose(shortened, unit(expected[:, :64]), atol=2e-5)


# ---------------------------------------------------------------------------- /classify, /ner, /tokenize

def test_classify_route(http, cls):
    texts = TEXTS + ["I loved it", "terrible service, never again"]
    response = http.post("/classify", json={"model": "cls", "inputs": texts, "top_k": 3})
    assert response.status_code == 200, response.text
    got = response.json()
    expected = cls.classify(texts, top_k=3)
    assert len(got) == len(expected)
    for answer, reference in zip(got, expected):
        assert [r["label"] for r in answer] == [r["label"] for r in reference]
        np.testing.assert_allclose([r["score"] for r in answer], [r["score"] for r in reference], atol=1e-6)
        assert sorted(r["label"] for r in answer) == ["negative", "neutral", "positive"]

    # no top_k: every label, like top_k=3 here
    assert [[r["label"] for r in a] for a in http.post("/classify", json={"model": "cls", "inputs": texts}).json()] \
        == [[r["label"] for r in e] for e in expected]

    top1 = http.post("/classify", json={"model": "cls", "inputs": texts, "top_k": 1}).json()
    for answer, reference in zip(top1, cls.classify(texts, top_k=1)):
        assert len(answer) == 1 and answer[0]["label"] == reference[0]["label"]
        assert answer[0]["score"] == pytest.approx(reference[0]["score"], abs=1e-6)

    single = http.post("/classify", json={"model": "cls", "inputs": texts[0], "top_k": 3}).json()
    assert [r["label"] for r in single] == [r["label"] for r in expected[0]]


def test_classify_raw_scores_are_logits(http, cls):
    texts = TEXTS[:5]
    raw = http.post("/classify", json={"model": "cls", "inputs": texts, "raw_scores": True}).json()
    scores = http.post("/classify", json={"model": "cls", "inputs": texts}).json()
    _, outputs = cls.run_model(cls.tokenize(texts))
    order = [cls.labels[k] for k in sorted(cls.labels)]
    for index, (raw_answer, answer) in enumerate(zip(raw, scores)):
        logits = {r["label"]: r["score"] for r in raw_answer}
        probabilities = {r["label"]: r["score"] for r in answer}
        assert set(logits) == set(order)
        np.testing.assert_allclose([logits[label] for label in order], outputs["logits"][index], atol=1e-5)
        vector = np.array([logits[label] for label in order])
        softmax = np.exp(vector - vector.max()) / np.exp(vector - vector.max()).sum()
        np.testing.assert_allclose(softmax, [probabilities[label] for label in order], atol=1e-6)
        assert abs(sum(logits.values()) - 1.0) > 1e-3  # not probabilities
        assert [r["label"] for r in raw_answer] == [r["label"] for r in answer]  # same ranking


@pytest.mark.parametrize("aggregation", ["simple", "first", "max", "average"])
def test_ner_route(http, ner, aggregation):
    response = http.post("/ner", json={"model": "ner", "inputs": NER_TEXTS, "aggregation": aggregation})
    assert response.status_code == 200, response.text
    got = response.json()
    expected = ner.extract(NER_TEXTS, aggregation=aggregation)
    assert sum(map(len, expected)) > 0, "the reference found no entity: the comparison would be vacuous"
    assert len(got) == len(expected)
    for text, entities, reference in zip(NER_TEXTS, got, expected):
        assert [{k: e[k] for k in ("label", "text", "start", "end")} for e in entities] \
            == [{k: e[k] for k in ("label", "text", "start", "end")} for e in reference]
        np.testing.assert_allclose([e["score"] for e in entities], [e["score"] for e in reference], atol=1e-6)
        for entity in entities:
            assert text[entity["start"]:entity["end"]] == entity["text"]

    single = http.post("/ner", json={"model": "ner", "inputs": NER_TEXTS[1], "aggregation": aggregation}).json()
    assert isinstance(single, list) and all(isinstance(e, dict) for e in single)
    assert [(e["label"], e["start"], e["end"]) for e in single] \
        == [(e["label"], e["start"], e["end"]) for e in ner.extract(NER_TEXTS[1], aggregation=aggregation)]


def test_ner_labels_a_long_text_in_windows_whatever_truncate_says(http, ner):
    text = " ".join(random.Random(3).choice(_WORDS) for _ in range(300))
    windows = ner.windows([text])[0]
    assert len(windows) >= 3, "the text must span several of the model's 64-token windows"
    first_window_end = max(end for (_, end), special in zip(windows[0].offsets, windows[0].special_tokens_mask)
                           if not special)
    expected = ner.extract([text, "ok"], aggregation="first")
    assert max(e["start"] for e in expected[0]) > first_window_end  # labelled past the first window
    for truncate in (True, False):
        response = http.post("/ner", json={"model": "ner", "inputs": [text, "ok"], "aggregation": "first",
                                           "truncate": truncate})
        assert response.status_code == 200, response.text
        for entities, reference in zip(response.json(), expected):
            assert [(e["label"], e["text"], e["start"], e["end"]) for e in entities] \
                == [(e["label"], e["text"], e["start"], e["end"]) for e in reference]
            np.testing.assert_allclose([e["score"] for e in entities], [e["score"] for e in reference], atol=1e-6)


def test_ner_stride_is_the_pipelines(http, ner):
    text = " ".join(random.Random(4).choice(_WORDS) for _ in range(200))
    for stride in (0, 7, None):
        response = http.post("/ner", json={"model": "ner", "inputs": text, "stride": stride})
        assert response.status_code == 200, response.text
        expected = ner.extract(text, stride=stride)
        assert [(e["label"], e["start"], e["end"]) for e in response.json()] == \
            [(e["label"], e["start"], e["end"]) for e in expected]
    # One window, cut: with truncate false that is refused, as on the other routes.
    refused = http.post("/ner", json={"model": "ner", "inputs": [LONG_TEXT], "stride": None, "truncate": False})
    assert_problem(refused, 422, mentions=["inputs[0]", "64"])
    assert_problem(http.post("/ner", json={"model": "ner", "inputs": "x", "stride": 500}), 422, mentions=["stride"])


@pytest.mark.parametrize("model", [None, "cls"])
def test_tokenize_route(http, minilm_artifact, tiny_cls_artifact, model):
    from tokenizers import Tokenizer

    artifact = minilm_artifact if model is None else tiny_cls_artifact
    tokenizer = Tokenizer.from_file(str(Path(artifact) / "tokenizer.json"))
    texts = ["Hello world", "naïve café, 東京!", "email me at someone@example.com"]
    for add_special_tokens in (True, False):
        body = {"inputs": texts, "add_special_tokens": add_special_tokens, **({"model": model} if model else {})}
        response = http.post("/tokenize", json=body)
        assert response.status_code == 200, response.text
        got = response.json()
        assert len(got) == len(texts)
        for text, tokens in zip(texts, got):
            reference = tokenizer.encode(text, add_special_tokens=add_special_tokens)
            assert [t["id"] for t in tokens] == reference.ids
            assert [t["text"] for t in tokens] == reference.tokens
            assert [t["special"] for t in tokens] == [bool(s) for s in reference.special_tokens_mask]
            assert any(t["special"] for t in tokens) == add_special_tokens
            for token, special, (start, stop) in zip(tokens, reference.special_tokens_mask, reference.offsets):
                if special:
                    assert token["start"] is None and token["stop"] is None
                else:
                    assert (token["start"], token["stop"]) == (start, stop)
                    assert text[start:stop]  # character offsets into the text
    one = http.post("/tokenize", json={"inputs": texts[1], **({"model": model} if model else {})}).json()
    assert [t["id"] for t in one[0]] == tokenizer.encode(texts[1]).ids


# ---------------------------------------------------------------------------- errors

def _items(count: int) -> list[str]:
    return [f"text number {i}" for i in range(count)]


# (route, JSON body, status, OpenAI code or None, words the message must contain)
BAD_REQUESTS = [
    ("/embed", {"inputs": []}, 400, None, ["inputs"]),
    ("/v1/embeddings", {"input": []}, 400, "empty_input", ["input"]),
    ("/embed", {"inputs": ["fine", ""]}, 400, None, ["inputs[1]"]),
    ("/embed", {"inputs": "   "}, 400, None, ["inputs[0]"]),
    ("/v1/embeddings", {"input": ["fine", "ok", ""]}, 400, "empty_input", ["input[2]"]),
    ("/classify", {"model": "cls", "inputs": ["", "x"]}, 400, None, ["inputs[0]"]),
    ("/ner", {"model": "ner", "inputs": ["x", ""]}, 400, None, ["inputs[1]"]),
    ("/tokenize", {"inputs": ["x", ""]}, 400, None, ["inputs[1]"]),
    ("/v1/embeddings", {"input": [[]]}, 400, "empty_input", ["input[0]"]),
    ("/embed", {"inputs": _items(17)}, 413, None, ["17", "16"]),
    ("/v1/embeddings", {"input": _items(17)}, 413, "too_many_items", ["17", "16"]),
    ("/classify", {"model": "cls", "inputs": _items(17)}, 413, None, ["16"]),
    ("/embed", {"inputs": ["short", LONG_TEXT], "truncate": False}, 422, None, ["inputs[1]", "256"]),
    ("/classify", {"model": "cls", "inputs": ["short", "x", LONG_TEXT], "truncate": False}, 422, None,
     ["inputs[2]", "64"]),
    ("/embed", {"inputs": ["a", 2]}, 422, None, ["inputs"]),
    ("/embed", {"inputs": [["a"]]}, 422, None, ["inputs"]),
    ("/embed", {"inputs": {"a": 1}}, 422, None, ["inputs"]),
    ("/embed", {"inputs": 7}, 422, None, ["inputs"]),
    ("/v1/embeddings", {"input": ["a", 2]}, 422, "invalid_body", ["input"]),
    ("/v1/embeddings", {"input": [1.5, 2]}, 422, "invalid_body", ["input"]),
    ("/v1/embeddings", {"input": None}, 422, "invalid_body", ["input"]),
    ("/v1/embeddings", {"input": [[101, 10**6, 102]]}, 422, "bad_token_id", ["input[0]"]),
    ("/v1/embeddings", {"input": [[101, 102], [101, -1, 102]]}, 422, "bad_token_id", ["input[1]"]),
    ("/embed", {}, 422, None, ["inputs"]),
    ("/classify", {"model": "cls", "inputs": "x", "top_k": 0}, 422, None, ["top_k"]),
    ("/ner", {"model": "ner", "inputs": "x", "aggregation": "best"}, 422, None, ["aggregation"]),
    ("/embed", {"inputs": "x", "truncate": "no"}, 422, None, ["truncate"]),
    ("/v1/embeddings", {"input": "x", "model": "nope"}, 404, "model_not_found", ["nope", "ner", "cls"]),
    ("/embed", {"inputs": "x", "model": "nope"}, 404, None, ["nope"]),
    ("/classify", {"inputs": "x", "model": "nope"}, 404, None, ["nope"]),
    ("/ner", {"inputs": "x"}, 400, None, ["/v1/embeddings", "/embed", "/tokenize"]),
    ("/classify", {"inputs": "x", "model": "ner"}, 400, None, ["/ner", "/tokenize"]),
    ("/embed", {"inputs": "x", "model": "cls"}, 400, None, ["/classify", "/tokenize"]),
    ("/v1/embeddings", {"input": "x", "model": "cls"}, 400, "wrong_route", ["/classify", "/tokenize"]),
    ("/v1/embeddings", {"input": "x", "dimensions": 0}, 400, "bad_dimensions", ["384"]),
    ("/v1/embeddings", {"input": "x", "dimensions": 385}, 400, "bad_dimensions", ["384"]),
    ("/v1/embeddings", {"input": "x", "dimensions": -3}, 400, "bad_dimensions", ["384"]),
    ("/embed", {"inputs": "x", "dimensions": 385}, 400, None, ["384"]),
]


@pytest.mark.parametrize("route, body, status, code, mentions", BAD_REQUESTS,
                         ids=[f"{r}-{s}-{i}" for i, (r, _, s, _, _) in enumerate(BAD_REQUESTS)])
def test_bad_request(http, route, body, status, code, mentions):
    assert_problem(http.post(route, json=body), status, code=code, mentions=mentions)


@pytest.mark.parametrize("route", ["/embed", "/v1/embeddings"])
@pytest.mark.parametrize("raw", ['{"inputs": ', "[1, 2]", '"a text"', "null", "42", ""])
def test_body_that_is_not_a_json_object(http, route, raw):
    message = assert_problem(http.post(route, content=raw.encode(), headers={"Content-Type": "application/json"}),
                             422, code="invalid_json" if raw == '{"inputs": ' else None)
    assert "JSON" in message


def test_truncate_default_cuts_long_inputs(http, minilm, cls):
    got = http.post("/embed", json={"inputs": ["short", LONG_TEXT]})
    assert got.status_code == 200, got.text
    assert_same_vectors(got.json(), minilm.embed(["short", LONG_TEXT]))
    usage = http.post("/v1/embeddings", json={"input": [LONG_TEXT]}).json()["usage"]
    assert usage["prompt_tokens"] == 256
    classified = http.post("/classify", json={"model": "cls", "inputs": [LONG_TEXT], "top_k": 3}).json()
    assert [r["label"] for r in classified[0]] == [r["label"] for r in cls.classify([LONG_TEXT], top_k=3)[0]]


def test_payload_limit(http, minilm):
    big = json.dumps({"inputs": ["word " * 20_000]}).encode()  # 100 kB > 64 kB
    assert len(big) > LIMITS["payload_limit"]
    for route in ("/embed", "/v1/embeddings"):
        body = big if route == "/embed" else big.replace(b'"inputs"', b'"input"')
        assert_problem(http.post(route, content=body, headers={"Content-Type": "application/json"}), 413,
                       code="payload_too_large", mentions=[str(LIMITS["payload_limit"])])

        def chunks(data=body):  # no Content-Length: the size must be counted while reading
            for start in range(0, len(data), 4096):
                yield data[start:start + 4096]

        response = http.post(route, content=chunks(), headers={"Content-Type": "application/json"})
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert_problem(response, 413, code="payload_too_large")

    # just under the limit is served, also chunked
    texts = ["lantern " * 470 + str(i) for i in range(16)]
    under = json.dumps({"inputs": texts}).encode()
    assert 60_000 < len(under) < LIMITS["payload_limit"]
    response = http.post("/embed", content=iter([under[:30_000], under[30_000:]]),
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert_same_vectors(response.json(), minilm.embed(texts))


def test_unknown_route_and_method(http):
    assert_problem(http.get("/nope"), 404, mentions=["/nope"])
    assert_problem(http.post("/v1/nope", json={}), 404, mentions=["/v1/nope"])
    assert_problem(http.get("/embed"), 405, mentions=["GET"])


def test_api_key(server):
    body = {"inputs": "x"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": KEY}, {"Authorization": f"Bearer {KEY}x"}):
        response = httpx.post(f"{server.url}/embed", json=body, headers=headers, timeout=30)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"
        assert_problem(httpx.get(f"{server.url}/info", headers=headers, timeout=30), 401)
    assert_problem(httpx.post(f"{server.url}/v1/embeddings", json={"input": "x"}, timeout=30), 401,
                   code="missing_api_key")
    assert_problem(httpx.post(f"{server.url}/v1/embeddings", json={"input": "x"}, timeout=30,
                              headers={"Authorization": "Bearer wrong"}), 401, code="invalid_api_key")
    assert httpx.get(f"{server.url}/health", timeout=30).json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/ready", timeout=30)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert httpx.get(f"{server.url}/metrics", timeout=30).status_code == 200
    assert httpx.post(f"{server.url}/embed", json=body, headers={"Authorization": f"bearer {KEY}"},
                      timeout=30).status_code == 200  # the scheme is case-insensitive


def test_openai_client_errors(server, minilm_name):
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as raised:
        wrong.embeddings.create(model=minilm_name, input=["x"])
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    right = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=30)
    with pytest.raises(openai.NotFoundError) as raised:
        right.embeddings.create(model="nope", input=["x"])
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as raised:
        right.embeddings.create(model="cls", input=["x"])
    assert "/classify" in raised.value.message


# ---------------------------------------------------------------------------- several models, /info

def test_models_and_default(server, http, client, minilm, minilm_name):
    assert [model.id for model in client.models.list()] == [minilm_name, "ner", "cls"]
    listed = http.get("/v1/models").json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == [minilm_name, "ner", "cls"]
    # no `model`: the first one given on the command line
    body = http.post("/v1/embeddings", json={"input": ["the default model"], "encoding_format": "float"}).json()
    assert body["model"] == minilm_name
    assert_same_vectors([body["data"][0]["embedding"]], minilm.embed(["the default model"]))
    assert httpx.get(f"{server.url}/ready", timeout=30).json()["models"] == [minilm_name, "ner", "cls"]


def test_info(http, minilm, ner, cls, minilm_name):
    info = http.get("/info").json()
    assert info["version"] == __version__
    assert info["default_model"] == minilm_name
    assert info["limits"] == LIMITS
    models = {model["name"]: model for model in info["models"]}
    assert list(models) == [minilm_name, "ner", "cls"]
    for name, pipeline in ((minilm_name, minilm), ("ner", ner), ("cls", cls)):
        model = models[name]
        assert model["task"] == pipeline.artifact.task.value
        assert model["max_input_tokens"] == pipeline.encoder.max_length
        assert model["model_file"] == pipeline.model_file == "model.onnx"
        assert model["verdict"] == pipeline.artifact.verdict(pipeline.model_file) == "passed"
        # no --run-tokens: a CPU session runs CPU_RUN_TOKENS padded tokens at most per model run
        assert model["run_tokens"] == min(CPU_RUN_TOKENS, LIMITS["max_batch_tokens"])
        assert model["providers"] == ["CPUExecutionProvider"]
    assert models[minilm_name]["task"] == "sentence-embedding"
    assert models[minilm_name]["dimensions"] == minilm.dimensions == 384
    assert models[minilm_name]["max_input_tokens"] == 256
    assert models[minilm_name]["normalized"] is True
    assert set(models[minilm_name]["routes"]) == {"/v1/embeddings", "/embed", "/tokenize"}
    assert models["ner"]["task"] == "token-classification" and set(models["ner"]["routes"]) == {"/ner", "/tokenize"}
    assert models["ner"]["labels"] == [ner.labels[k] for k in sorted(ner.labels)]
    assert models["cls"]["labels"] == ["negative", "neutral", "positive"]
    assert models["cls"]["max_input_tokens"] == 64
    assert "dimensions" not in models["cls"]


# ---------------------------------------------------------------------------- metrics

def test_metrics_count_requests_failures_and_batches(server, http, minilm, minilm_name):
    before = metric_samples(server.url)
    texts = TEXTS[:5]
    for _ in range(2):
        assert http.post("/embed", json={"inputs": texts}).status_code == 200
    assert http.post("/v1/embeddings", json={"input": texts[:2]}).status_code == 200
    assert http.post("/classify", json={"model": "cls", "inputs": texts}).status_code == 200
    assert http.post("/ner", json={"model": "ner", "inputs": texts}).status_code == 200
    assert http.post("/tokenize", json={"inputs": texts}).status_code == 200
    assert http.post("/embed", content=b'{"inputs": ["' + b"x" * 70_000 + b'"]}').status_code == 413
    assert http.post("/v1/embeddings", json={"input": "x", "model": "nope"}).status_code == 404
    assert http.post("/embed", content=b'{"inputs": ').status_code == 422
    assert http.post("/embed", json={"inputs": ["a", 2]}).status_code == 422
    assert http.post("/ner", json={"inputs": "x"}).status_code == 400
    assert http.get("/nope").status_code == 404
    assert httpx.post(f"{server.url}/embed", json={"inputs": "x"}, timeout=30).status_code == 401
    after = metric_samples(server.url)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    requests = "onnxport_requests_total"
    assert delta(requests, route="/embed", status="200") == 2
    for route in ("/v1/embeddings", "/classify", "/ner", "/tokenize"):
        assert delta(requests, route=route, status="200") == 1, route
    assert delta(requests, route="/embed", status="413") == 1
    assert delta(requests, route="/embed", status="422") == 2
    assert delta(requests, route="/embed", status="401") == 1
    assert delta(requests, route="/v1/embeddings", status="404") == 1
    assert delta(requests, route="other", status="404") == 1
    failures = "onnxport_request_failures_total"
    for route, reason in (("/embed", "payload_too_large"), ("/v1/embeddings", "model_not_found"),
                          ("/embed", "invalid_json"), ("/embed", "invalid_body"), ("/ner", "wrong_route"),
                          ("other", "http_404"), ("/embed", "missing_api_key")):
        assert delta(failures, route=route, reason=reason) == 1, (route, reason)
    assert delta(failures, route="/embed", reason="empty_input") == 0

    # every item ran exactly once; tokens counted as the artifact's tokenizer counts them
    assert delta("onnxport_batch_size_sum", model=minilm_name) == 2 * 5 + 2
    assert delta("onnxport_batch_size_count", model=minilm_name) >= 1
    assert delta("onnxport_batch_size_sum", model="cls") == 5
    assert delta("onnxport_batch_size_sum", model="ner") == 5
    tokens = 2 * sum(len(e.ids) for e in minilm.tokenize(texts)) + sum(len(e.ids) for e in minilm.tokenize(texts[:2]))
    assert delta("onnxport_input_tokens_total", model=minilm_name) == tokens
    for model in (minilm_name, "ner", "cls"):
        assert delta("onnxport_inference_seconds_count", model=model) >= 1
        assert delta("onnxport_inference_seconds_sum", model=model) > 0
        assert sample(after, "onnxport_inference_seconds_bucket", model=model, le="+Inf") \
            == sample(after, "onnxport_inference_seconds_count", model=model)
        assert (("onnxport_queue_size", frozenset({("model", model)})) in after)
        assert sample(after, "onnxport_queue_size", model=model) == 0


# ---------------------------------------------------------------------------- batching under concurrency

def test_concurrent_requests_get_their_own_vectors(server, minilm, minilm_name):
    rng = random.Random(7)
    requests = [varied_texts(rng, rng.randint(1, 6), f"r{r}") for r in range(32)]
    every_text = [text for texts in requests for text in texts]
    reference = minilm.embed(every_text)
    starts = np.cumsum([0] + [len(texts) for texts in requests])
    before = metric_samples(server.url)

    async def burst():
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=120, limits=limits) as client:
            return await asyncio.gather(*(client.post("/embed", json={"inputs": texts}) for texts in requests))

    responses = asyncio.run(burst())
    after = metric_samples(server.url)
    for index, (texts, response) in enumerate(zip(requests, responses)):
        assert response.status_code == 200, response.text
        got = np.array(response.json())
        expected = reference[starts[index]:starts[index + 1]]
        assert got.shape == expected.shape, index
        # each answer is its own texts' vectors, in its own order, and no other text's
        similarity = unit(got) @ unit(reference).T
        own = similarity[:, starts[index]:starts[index + 1]]
        assert np.diag(own).min() >= MIN_COS, (index, np.diag(own))
        others = similarity.copy()
        others[:, starts[index]:starts[index + 1]] = -1
        assert others.max() < MIN_COS, index  # so the check above could tell

    items = len(every_text)
    runs = sample(after, "onnxport_batch_size_count", model=minilm_name) \
        - sample(before, "onnxport_batch_size_count", model=minilm_name)
    ran = sample(after, "onnxport_batch_size_sum", model=minilm_name) \
        - sample(before, "onnxport_batch_size_sum", model=minilm_name)
    assert ran == items  # every item ran once
    assert ran / runs > 1
    # fewer model runs than requests: at least one run held items of two requests
    assert runs < len(requests), f"{runs} model runs for {len(requests)} requests"
    print(f"{len(requests)} concurrent requests, {items} items: {runs:.0f} model runs")


def test_no_request_ever_got_a_server_error(server):
    """Everything this module sent (bad requests included) was answered without a 5xx
    (/ready's 503 while the models warm up is by design, so it does not count)."""
    counted = {(dict(labels)["route"], dict(labels)["status"]): value
               for (name, labels), value in metric_samples(server.url).items() if name == "onnxport_requests_total"}
    assert counted
    assert not {key: value for key, value in counted.items() if key[1].startswith("5") and key[0] != "/ready"}, counted
    assert "Traceback" not in server.log_text()


# ---------------------------------------------------------------------------- graceful SIGTERM

def test_sigterm_finishes_requests_in_flight(tmp_path, minilm_artifact, minilm):
    """SIGTERM under load: every request that got an answer got the right 200, the others
    were never accepted (a connection error), /ready stops saying ready, and exit code 0."""
    server = start_server([str(minilm_artifact)], tmp_path / "server.log", "--threads", "1")  # no API key
    try:
        rng = random.Random(11)
        requests = [varied_texts(rng, 4, f"s{r}") for r in range(60)]
        outcomes: list = [None] * len(requests)
        answered = threading.Semaphore(0)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
        with httpx.Client(base_url=server.url, timeout=httpx.Timeout(60, connect=10), limits=limits) as client:

            def send(index):
                try:
                    outcomes[index] = client.post("/embed", json={"inputs": requests[index]})
                except httpx.TransportError as error:
                    outcomes[index] = error
                finally:
                    answered.release()

            threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(len(requests))]
            for thread in threads:
                thread.start()
            for _ in range(10):
                assert answered.acquire(timeout=60), "no answers within 60s"
            done_before = sum(outcome is not None for outcome in outcomes)
            server.process.send_signal(signal.SIGTERM)

            seen_ready = []  # /ready from new connections, right after the signal
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    seen_ready.append(httpx.get(f"{server.url}/ready", timeout=5))
                except httpx.TransportError as error:
                    seen_ready.append(error)
                    break
                if seen_ready[-1].status_code != 200:
                    break
                time.sleep(0.02)

            for thread in threads:
                thread.join(timeout=120)
            assert not any(thread.is_alive() for thread in threads), "requests still running after 120s"
        code = server.process.wait(timeout=60)
    finally:
        server.stop(10)
    log = server.log_text()

    assert code == 0, log
    assert "Traceback" not in log, log
    assert done_before < len(requests), "everything finished before SIGTERM: nothing was in flight"
    last = seen_ready[-1]
    assert isinstance(last, httpx.TransportError) or last.status_code == 503, seen_ready
    if not isinstance(last, Exception):
        assert last.json() == {"status": "shutting down"}

    ok, refused = 0, []
    for texts, outcome in zip(requests, outcomes):
        if isinstance(outcome, Exception):
            assert isinstance(outcome, (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                                        httpx.WriteError)), repr(outcome)
            refused.append(type(outcome).__name__)
            continue
        assert outcome.status_code == 200, outcome.text
        assert_same_vectors(outcome.json(), minilm.embed(texts))
        ok += 1
    assert ok + len(refused) == len(requests)
    assert ok > done_before, f"no request in flight at SIGTERM was finished ({ok} ok, refused: {refused})"
    ready = [r.status_code if isinstance(r, httpx.Response) else type(r).__name__ for r in seen_ready]
    print(f"SIGTERM after {done_before} answers: {ok} answered 200, {len(refused)} never accepted {refused}; "
          f"/ready after the signal: {ready}")
