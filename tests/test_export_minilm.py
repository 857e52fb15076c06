"""all-MiniLM-L6-v2, the built-in default: the ONNX sentence embedding equals
SentenceTransformer.encode for varied texts, and the CLI main job works."""

from __future__ import annotations

import numpy as np
import pytest

import onnxport
from onnxport.runtime.session import OnnxModel
from onnxport.runtime.tokenization import TextEncoder
from onnxport.core.sample_texts import builtin_texts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def st_model(minilm_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")


def _onnx_embed(artifact_path, texts, batch_size):
    artifact = onnxport.Artifact(artifact_path)
    encoder = TextEncoder.for_artifact(artifact)
    model = OnnxModel(artifact.model_path())
    return np.concatenate([model.run(encoder.encode(texts[i:i + batch_size]))["sentence_embedding"]
                           for i in range(0, len(texts), batch_size)])


def test_manifest_reads_pooling_and_normalize_from_sentence_transformers_config(minilm_artifact):
    artifact = onnxport.Artifact(minilm_artifact)
    assert artifact.task is onnxport.Task.SENTENCE_EMBEDDING
    assert artifact.spec.pooling is onnxport.Pooling.MEAN
    assert artifact.spec.normalize is True
    assert artifact.manifest["tokenizer"]["max_length"] == 256  # sentence_bert_config.json
    assert [i.name for i in artifact.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [(o.name, o.dims) for o in artifact.outputs] == [
        ("sentence_embedding", ("batch", 384)),
        ("token_embeddings", ("batch", "sequence", 384)),
    ]
    assert artifact.verified()


@pytest.mark.parametrize("batch_size", [32, 7])
def test_sentence_embedding_equals_sentence_transformers(minilm_artifact, st_model, batch_size):
    texts = builtin_texts(240)
    # Padding-heavy batches: interleave the longest and the shortest texts.
    texts = [t for pair in zip(texts[::2], reversed(texts[1::2])) for t in pair]
    expected = st_model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    got = _onnx_embed(minilm_artifact, texts, batch_size)
    cosines = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
    assert len(texts) >= 200
    assert cosines.min() >= 0.99999, texts[int(cosines.argmin())]
    assert np.abs(got - expected).max() <= 1e-4
    # Normalized inside the graph.
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_long_texts_are_truncated_to_max_length(minilm_artifact, st_model):
    long_text = "token " * 2000
    artifact = onnxport.Artifact(minilm_artifact)
    encoded = TextEncoder.for_artifact(artifact).encode([long_text])
    assert encoded["input_ids"].shape == (1, 256)
    got = _onnx_embed(minilm_artifact, [long_text], 1)
    expected = st_model.encode([long_text], normalize_embeddings=True)
    assert float((got * expected).sum()) >= 0.99999


def test_cli_exports_the_default_model(minilm_cli_export):
    out, output = minilm_cli_export  # `onnxport export -o OUT`, run once for the whole suite
    # The summary names every input and output with its dims.
    for expected in ("input_ids", "attention_mask", "token_type_ids", "sentence_embedding", "[batch, 384]",
                     "checks passed", "task sentence-embedding, pooling mean, normalize True"):
        assert expected in output
    artifact = onnxport.Artifact(out)
    assert artifact.verified()
    assert {p.name for p in out.iterdir()} >= {"model.onnx", "tokenizer.json", "config.json", "onnxport.json"}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "staging directory left behind"
