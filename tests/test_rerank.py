"""Rerankers (cross-encoders): a sentence-transformers CrossEncoder folder, or any sequence
classifier with one label, exports as task text-ranking, and `Reranker.rerank` / `score`
equal `CrossEncoder.rank` / `predict` (same scores within 1e-4, same order), including pairs
the tokenizer must cut."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import save_tiny_model, tiny_bert_config

QUERY = "what is the capital of france"
DOCUMENTS = [
    "Paris is the capital and most populous city of France.",
    "Berlin is the capital of Germany.",
    "The quick brown fox jumps over the lazy dog.",
    "France is a country in western Europe whose capital city, Paris, sits on the river Seine and has been "
    "the seat of government for centuries, long enough that this sentence must be cut to fit the model.",
    "capital",
    "Lyon is a city in France.",
    "I like bread.",
]
MAX_LENGTH = 32  # small, so the long document's pair is truncated longest_first


@pytest.fixture(scope="module")
def one_label_folder(tmp_path_factory, wordpiece_tokenizer) -> Path:
    """A tiny random BERT with one output (a reranker head), saved as a plain HF folder."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(21)
    # Wider random weights than BERT's 0.02: scores that differ between documents (about 0.17
    # apart, not 1e-5), so a ranking means something and int8 noise cannot reorder ties.
    model = BertForSequenceClassification(tiny_bert_config(num_labels=1, initializer_range=0.2)).eval()
    return save_tiny_model(tmp_path_factory.mktemp("one-label"), model, wordpiece_tokenizer)


def _cross_encoder_folder(tmp_path: Path, hf_folder: Path, **options) -> Path:
    from sentence_transformers import CrossEncoder

    folder = tmp_path / "cross-encoder"
    CrossEncoder(str(hf_folder), max_length=MAX_LENGTH, device="cpu", **options).save(str(folder))
    return folder


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory, one_label_folder):
    """(CrossEncoder folder saved by sentence-transformers, its artifact)."""
    import onnxport

    tmp = tmp_path_factory.mktemp("ce")
    folder = _cross_encoder_folder(tmp, one_label_folder)
    artifact = onnxport.export(folder, out=tmp / "artifact")
    return folder, artifact


def test_cross_encoder_folder_exports_as_text_ranking_and_verifies_pairs(cross_encoder):
    folder, artifact = cross_encoder
    assert json.loads((folder / "config_sentence_transformers.json").read_text())["model_type"] == "CrossEncoder"
    assert artifact.task.value == "text-ranking"
    assert artifact.manifest["ranking"] == {"activation": "sigmoid"}
    report = artifact.manifest["files"]["model.onnx"]["verification"]
    assert report["verdict"] == "passed"
    assert any("truncated pairs" in check["name"] for check in report["checks"])


def test_rerank_equals_cross_encoder_rank(cross_encoder):
    import onnxport
    from sentence_transformers import CrossEncoder

    folder, artifact = cross_encoder
    reference = CrossEncoder(str(folder), device="cpu")
    assert reference.max_length == MAX_LENGTH
    expected = reference.rank(QUERY, DOCUMENTS, return_documents=True)
    got = onnxport.load(artifact.path).rerank(QUERY, DOCUMENTS)
    assert [r["index"] for r in got] == [r["corpus_id"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected], atol=1e-4, rtol=0)
    assert [r["document"] for r in got] == [r["text"] for r in expected]
    assert all(0 < r["score"] < 1 for r in got)  # sigmoid, as CrossEncoder applies to one label

    top = onnxport.load(artifact.path).rerank(QUERY, DOCUMENTS, top_k=2, return_documents=False)
    assert top == [{"index": r["index"], "score": r["score"]} for r in got[:2]]


def test_score_equals_cross_encoder_predict_on_many_pairs(cross_encoder):
    import onnxport
    from sentence_transformers import CrossEncoder

    folder, artifact = cross_encoder
    pairs = [(DOCUMENTS[i], DOCUMENTS[j]) for i in range(len(DOCUMENTS)) for j in range(len(DOCUMENTS))]
    expected = CrossEncoder(str(folder), device="cpu").predict(pairs, batch_size=8)
    got = onnxport.load(artifact.path).score(pairs, batch_size=5)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_a_plain_one_label_classifier_is_a_reranker_too(tmp_path, one_label_folder):
    import onnxport
    from sentence_transformers import CrossEncoder

    artifact = onnxport.export(one_label_folder, out=tmp_path / "artifact")
    assert artifact.task.value == "text-ranking"
    expected = CrossEncoder(str(one_label_folder), device="cpu", max_length=64).predict(
        [(QUERY, document) for document in DOCUMENTS])
    got = onnxport.load(artifact.path).score([(QUERY, document) for document in DOCUMENTS])
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_identity_activation_gives_raw_scores(tmp_path, one_label_folder):
    import onnxport
    import torch
    from sentence_transformers import CrossEncoder

    folder = _cross_encoder_folder(tmp_path, one_label_folder, activation_fn=torch.nn.Identity())
    artifact = onnxport.export(folder, out=tmp_path / "artifact")
    assert artifact.manifest["ranking"] == {"activation": "identity"}
    pairs = [(QUERY, document) for document in DOCUMENTS]
    expected = CrossEncoder(str(folder), device="cpu").predict(pairs)
    np.testing.assert_allclose(onnxport.load(artifact.path).score(pairs), expected, atol=1e-4, rtol=0)


def test_optimized_and_int8_rerankers_are_verified_on_pairs(tmp_path, cross_encoder):
    import shutil

    import onnxport

    _, artifact = cross_encoder
    copy = shutil.copytree(artifact.path, tmp_path / "copy")
    name, _, optimized = onnxport.optimize(copy)
    assert optimized.passed and any("truncated pairs" in check.name for check in optimized.checks)
    assert onnxport.inspect(copy)["artifact"]["task"] == "text-ranking"
    entry = onnxport.quantize(copy)
    report = entry["verification"]
    checks = {check["name"]: check for check in report["checks"]}
    assert {"rank agreement", "top-1 agreement"} <= set(checks)
    assert report["verdict"] == "passed"
    # The int8 file's ranking, through the pipeline, keeps the fp32 file's best document.
    fp32 = onnxport.load(copy, model="fp32").rerank(QUERY, DOCUMENTS)
    int8 = onnxport.load(copy, model="int8").rerank(QUERY, DOCUMENTS)
    assert int8[0]["index"] == fp32[0]["index"]


@pytest.mark.parametrize("call,message", [
    (lambda r: r.rerank("", DOCUMENTS), "query must be a non-empty str"),
    (lambda r: r.rerank(QUERY, "one document"), "one str"),
    (lambda r: r.rerank(QUERY, [None]), "not str"),
    (lambda r: r.rerank(QUERY, DOCUMENTS, top_k=0), "top_k"),
    (lambda r: r.score([(QUERY, None)]), "no second text"),
])
def test_bad_rerank_input(cross_encoder, call, message):
    import onnxport
    from onnxport.errors import InputError

    with pytest.raises(InputError, match=message):
        call(onnxport.load(cross_encoder[1].path))


def test_rerank_on_an_embedding_artifact_says_which_artifact_it_needs(minilm_artifact):
    import onnxport
    from onnxport.errors import NotForThisTask

    with pytest.raises(NotForThisTask, match="text-ranking"):
        onnxport.load(minilm_artifact).rerank(QUERY, DOCUMENTS)


def test_bench_measures_a_reranker_on_pairs_against_pytorch(cross_encoder):
    from onnxport.core.sample_texts import length_mix_texts
    from onnxport.tools import bench

    settings = bench.Settings(batch_sizes=(4,), repeats=1, warmup=0, latency_samples=2, cold_start=False, threads=1)
    report = bench.measure(cross_encoder[1].path, texts=length_mix_texts(24, seed=1), settings=settings)
    by_name = {c["name"]: c for c in report["contenders"]}
    assert by_name["pytorch"]["quality"]["is_reference"]
    fp32 = by_name["onnx fp32"]
    assert fp32["throughput"][0]["texts_per_s"] > 0
    # The same fp32 graph as PyTorch, judged on (query, document) groups: the same order.
    assert bench.quality_text(fp32["quality"]) == "rank ρ 1.0000, top-1 100.0%"


def test_one_label_exported_as_classifier_scores_with_sigmoid_like_transformers(tmp_path, one_label_folder):
    import onnxport
    from transformers import pipeline

    artifact = onnxport.export(one_label_folder, out=tmp_path / "artifact", task="sequence-classification")
    expected = pipeline("text-classification", model=str(one_label_folder), device="cpu")(DOCUMENTS)
    got = onnxport.load(artifact.path).classify(DOCUMENTS)
    # softmax over one label would say 1.0 for every text; the pipeline applies a sigmoid
    np.testing.assert_allclose([r[0]["score"] for r in got], [r["score"] for r in expected], atol=1e-4, rtol=0)
    assert len({round(r[0]["score"], 4) for r in got}) > 1


def _cli(*args, input=None):
    from click.testing import CliRunner

    from onnxport.tools.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_cli_rerank_writes_the_ranking_with_ids(tmp_path, cross_encoder):
    from sentence_transformers import CrossEncoder

    folder, artifact = cross_encoder
    documents = tmp_path / "docs.jsonl"
    documents.write_text("".join(json.dumps({"id": f"d{i}", "text": text}) + "\n" for i, text in enumerate(DOCUMENTS)))
    out = tmp_path / "ranked.jsonl"
    result = _cli("rerank", artifact.path, documents, "--query", QUERY, "--top-k", 3, "-o", out)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    expected = CrossEncoder(str(folder), device="cpu").rank(QUERY, DOCUMENTS, top_k=3)
    assert [line["id"] for line in lines] == [f"d{r['corpus_id']}" for r in expected]
    assert [line["rank"] for line in lines] == [1, 2, 3]
    assert [line["text"] for line in lines] == [DOCUMENTS[r["corpus_id"]] for r in expected]
    np.testing.assert_allclose([line["score"] for line in lines], [r["score"] for r in expected], atol=1e-4, rtol=0)


@pytest.mark.parametrize("args,message", [
    (["--query", " "], "--query is empty"),
    (["--query", QUERY, "-o", "{tmp}/out.npy"], "rerank writes .jsonl or .parquet"),
])
def test_cli_rerank_usage_errors_write_nothing(tmp_path, cross_encoder, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = _cli("rerank", cross_encoder[1].path, "a document", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert list(tmp_path.iterdir()) == []


def test_cli_rerank_on_an_embedding_artifact_exits_2_and_writes_nothing(tmp_path, minilm_artifact):
    out = tmp_path / "ranked.jsonl"
    result = _cli("rerank", minilm_artifact, "a document", "--query", QUERY, "-o", out)
    assert result.exit_code == 2, result.output
    assert "text-ranking" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_server_rerank_route_equals_cross_encoder(tmp_path, cross_encoder):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from sentence_transformers import CrossEncoder
    from test_serve_http import start_server

    folder, artifact = cross_encoder
    server = start_server([f"reranker={artifact.path}"], tmp_path / "server.log")
    try:
        response = httpx.post(f"{server.url}/rerank", json={"query": QUERY, "texts": DOCUMENTS, "return_text": True},
                              timeout=30)
        assert response.status_code == 200, response.text
        got = response.json()
        expected = CrossEncoder(str(folder), device="cpu").rank(QUERY, DOCUMENTS, return_documents=True)
        assert [r["index"] for r in got] == [r["corpus_id"] for r in expected]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in expected], atol=1e-4, rtol=0)
        assert [r["text"] for r in got] == [r["text"] for r in expected]

        raw = httpx.post(f"{server.url}/rerank", json={"query": QUERY, "texts": DOCUMENTS, "raw_scores": True},
                         timeout=30).json()
        logits = {r["index"]: r["score"] for r in raw}
        assert all(abs(1 / (1 + np.exp(-logits[r["index"]])) - r["score"]) < 1e-6 for r in got)
        assert "text" not in raw[0]

        for body, status in [({"query": " ", "texts": DOCUMENTS}, 400), ({"query": QUERY, "texts": []}, 400),
                             ({"query": QUERY, "texts": [["a", "b"]]}, 422)]:
            assert httpx.post(f"{server.url}/rerank", json=body, timeout=30).status_code == status, body
        assert httpx.post(f"{server.url}/classify", json={"inputs": ["a"]}, timeout=30).status_code == 400
        info = httpx.get(f"{server.url}/info", timeout=30).json()
        assert "/rerank" in json.dumps(info)
    finally:
        assert server.stop() == 0, server.log_text()
