"""Pipelines: embeddings equal sentence-transformers, entities come out as known spans,
labels as the PyTorch model gives them, and the torch backend equals the ONNX one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import onnxport
from onnxport.errors import ArtifactError, InputError
from onnxport.core.sample_texts import builtin_texts

from conftest import save_tiny_model, tiny_bert_config

LABELS = ["O", "B-SRC", "I-SRC", "B-DEST", "I-DEST", "B-DATE", "I-DATE"]
NER_TEXT = "Bus from Bangalore to 東京 Mumbai  Pune on next Friday ✈ please"


@pytest.fixture(scope="module")
def embedder(minilm_artifact):
    return onnxport.load(minilm_artifact)


def test_embed_equals_sentence_transformers(embedder, minilm_path):
    from sentence_transformers import SentenceTransformer

    texts = builtin_texts(120)
    expected = SentenceTransformer(str(minilm_path), device="cpu").encode(texts, convert_to_numpy=True)
    got = embedder.embed(texts, batch_size=16)
    cosines = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    assert got.dtype == np.float32 and got.shape == (120, 384)
    assert cosines.min() >= 0.99999


def test_batching_does_not_change_results_or_order(embedder):
    texts = builtin_texts(40)
    one_by_one = np.concatenate([embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(embedder.embed(texts, batch_size=7), one_by_one, atol=1e-5)


def test_edge_inputs(embedder):
    assert embedder.embed([]).shape == (0, 384)
    empty = embedder.embed([""])
    assert empty.shape == (1, 384) and abs(np.linalg.norm(empty) - 1) < 1e-5
    with pytest.raises(InputError, match="#1"):
        embedder.embed(["fine", 3])
    with pytest.raises(InputError, match="list of texts"):
        embedder.embed("not a list")
    strict = onnxport.load(embedder.artifact, truncate=False)
    with pytest.raises(InputError, match="#1.*256 tokens"):
        strict.embed(["short", "word " * 400])


def test_token_embeddings_drop_padding(embedder):
    texts = ["hello world", "a somewhat longer sentence than the first"]
    tokens = embedder.token_embeddings(texts)
    lengths = [len(e.ids) for e in embedder.encoder.tokenize(texts)]
    assert [t.shape for t in tokens] == [(lengths[0], 384), (lengths[1], 384)]
    alone = embedder.token_embeddings([texts[0]])[0]
    np.testing.assert_allclose(tokens[0], alone, atol=1e-5)


def test_auto_model_choice_and_missing_files(embedder, minilm_artifact):
    assert embedder.model_file == "model.onnx"  # no int8/opt file yet
    with pytest.raises(ArtifactError, match="onnxport quantize"):
        onnxport.load(minilm_artifact, model="int8")
    with pytest.raises(InputError, match="backend"):
        onnxport.load(minilm_artifact, backend="tensorflow")


def test_missing_gpu_provider_falls_back_with_one_warning(minilm_artifact):
    with pytest.warns(RuntimeWarning, match="CUDAExecutionProvider.*onnxruntime-gpu") as caught:
        pipeline = onnxport.load(minilm_artifact, providers=["cuda"])
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    assert pipeline.runner.session.get_providers() == ["CPUExecutionProvider"]


def test_torch_backend_equals_onnx(embedder, minilm_artifact):
    texts = builtin_texts(24)
    torch_vectors = onnxport.load(minilm_artifact, backend="torch").embed(texts)
    np.testing.assert_allclose(torch_vectors, embedder.embed(texts), atol=1e-4)


# ---------------------------------------------------------------- NER with known logits

def _label_of_tokens(tokenizer, text):
    """Token id -> label index for the test text: the label a person would give each piece."""
    wanted = {"bangalore": "SRC", "東": "DEST", "京": "DEST", "mumbai": "DEST", "pune": "DEST",
              "next": "DATE", "friday": "DATE"}
    encoding = tokenizer(text, return_offsets_mapping=True)
    mapping = {}
    previous_kind = None
    for token_id, (start, end) in zip(encoding["input_ids"], encoding["offset_mapping"]):
        piece = text[start:end].lower()
        word = next((w for w in wanted if w in piece or piece in w and piece), None) if end > start else None
        kind = wanted.get(word) if word else None
        continuation = tokenizer.convert_ids_to_tokens(token_id).startswith("##")
        if kind is None:
            mapping[token_id] = 0
        elif continuation or (kind == "DEST" and piece == "京") or (kind == "DATE" and piece == "friday"):
            mapping[token_id] = LABELS.index(f"I-{kind}")
        else:
            mapping[token_id] = LABELS.index(f"B-{kind}")
        previous_kind = kind
    del previous_kind
    return mapping


@pytest.fixture(scope="module")
def ner_artifact(tmp_path_factory, wordpiece_tokenizer):
    """A token classifier whose label depends only on the token id: no attention layers,
    position/type embeddings zeroed, word embeddings one-hot on the wanted label."""
    from transformers import BertForTokenClassification

    config = tiny_bert_config(hidden_size=8, num_hidden_layers=0, num_attention_heads=1, num_labels=len(LABELS),
                              id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    model = BertForTokenClassification(config).eval()
    mapping = _label_of_tokens(wordpiece_tokenizer, NER_TEXT)
    with torch.no_grad():
        embeddings = model.bert.embeddings
        embeddings.position_embeddings.weight.zero_()
        embeddings.token_type_embeddings.weight.zero_()
        embeddings.LayerNorm.weight.fill_(1.0)
        embeddings.LayerNorm.bias.zero_()
        embeddings.word_embeddings.weight.zero_()
        embeddings.word_embeddings.weight[:, 0] = 1.0  # every token: "O" by default
        for token_id, label in mapping.items():
            embeddings.word_embeddings.weight[token_id] = 0.0
            embeddings.word_embeddings.weight[token_id, label] = 1.0
        model.classifier.weight.copy_(torch.eye(len(LABELS), 8) * 5)
        model.classifier.bias.zero_()
    folder = save_tiny_model(tmp_path_factory.mktemp("ner-known"), model, wordpiece_tokenizer)
    out = tmp_path_factory.mktemp("ner-artifact") / "artifact"
    onnxport.export(folder, out=out)
    return out


def test_extract_finds_the_known_spans(ner_artifact):
    ner = onnxport.load(ner_artifact)
    entities = ner.extract(NER_TEXT)
    spans = [(e["label"], e["text"]) for e in entities]
    assert spans == [("SRC", "Bangalore"), ("DEST", "東京"), ("DEST", "Mumbai"), ("DEST", "Pune"),
                     ("DATE", "next Friday")]
    for entity in entities:
        assert NER_TEXT[entity["start"]:entity["end"]] == entity["text"]
        assert 0.0 < entity["score"] <= 1.0
    for aggregation in ("first", "max", "average"):
        assert [(e["label"], e["text"]) for e in ner.extract(NER_TEXT, aggregation=aggregation)] == spans
    assert ner.extract_dict(NER_TEXT) == {"SRC": "Bangalore", "DEST": ["東京", "Mumbai", "Pune"],
                                          "DATE": "next Friday"}
    assert ner.extract([NER_TEXT, "nothing here"])[1] == []


def test_extract_bad_aggregation(ner_artifact):
    with pytest.raises(InputError, match="aggregation"):
        onnxport.load(ner_artifact).extract("x", aggregation="best")


# ---------------------------------------------------------------- sequence classification

@pytest.fixture(scope="module")
def classifier(tmp_path_factory, wordpiece_tokenizer, tiny_sequence_classifier_folder):
    from transformers import BertForSequenceClassification

    folder = tiny_sequence_classifier_folder
    model = BertForSequenceClassification.from_pretrained(folder).eval()
    out = tmp_path_factory.mktemp("cls-artifact") / "artifact"
    onnxport.export(folder, out=out)
    return model, wordpiece_tokenizer, out


def test_classify_matches_pytorch_softmax(classifier):
    model, tokenizer, out = classifier
    texts = builtin_texts(30)
    results = onnxport.load(out).classify(texts, top_k=2)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        probabilities = torch.softmax(model(**batch).logits, dim=-1).numpy()
    for row, result in enumerate(results):
        best = np.argsort(-probabilities[row])[:2]
        assert [r["label"] for r in result] == [model.config.id2label[int(i)] for i in best]
        np.testing.assert_allclose([r["score"] for r in result], probabilities[row, best], atol=1e-5)


def test_classify_torch_backend_equals_onnx(classifier):
    _, _, out = classifier
    texts = builtin_texts(12)
    onnx_result = onnxport.load(out).classify(texts, top_k=3)
    torch_result = onnxport.load(out, backend="torch").classify(texts, top_k=3)
    for a, b in zip(onnx_result, torch_result):
        assert [x["label"] for x in a] == [x["label"] for x in b]
        np.testing.assert_allclose([x["score"] for x in a], [x["score"] for x in b], atol=1e-4)
