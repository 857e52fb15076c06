"""Sparse (SPLADE) embeddings: a sentence-transformers SparseEncoder folder exports as task
sparse-embedding with the SPLADE pooling inside the graph, and `SparseEmbedder.embed` gives
what `SparseEncoder.encode` gives: the same non-zero vocabulary ids, weights within 1e-4, for
max and sum pooling, relu and log1p_relu, prompts and max_active_dims; `decode` lists the
same terms as `SparseEncoder.decode`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import onnxport
from conftest import save_tiny_model, tiny_bert_config
from onnxport.checks.quality import top_term_overlap
from onnxport.core.spec import Task
from onnxport.errors import InputError
from onnxport.tools.cli import main

TEXTS = [
    "Paris is the capital of France.",
    "hi",
    "AC sleeper bus from Bangalore to Mumbai tomorrow",
    "The overnight sleeper bus leaves Bangalore at 9:45 pm and reaches Mumbai the next afternoon, "
    "stopping twice on the way; tickets cost between 1,200 and 2,400 rupees depending on the berth.",  # cut at 64
    "naïve café, 東京",
]


@pytest.fixture(scope="module")
def mlm_folder(tmp_path_factory, wordpiece_tokenizer) -> Path:
    """A tiny random BERT masked LM whose decoder bias is -4: most logits are negative, so the
    SPLADE vectors are mostly zeros, as a trained SPLADE model's are."""
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(6)
    model = BertForMaskedLM(tiny_bert_config(initializer_range=0.2)).eval()
    with torch.no_grad():
        model.cls.predictions.bias.fill_(-4.0)
    return save_tiny_model(tmp_path_factory.mktemp("sparse-mlm"), model, wordpiece_tokenizer)


def sparse_encoder_folder(out: Path, mlm_folder: Path, *, pooling: str = "max", activation: str = "relu",
                          v6_transformer: bool = False, prompts: dict | None = None) -> Path:
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, SpladePooling

    first = Transformer(str(mlm_folder), transformer_task="fill-mask") if v6_transformer \
        else MLMTransformer(str(mlm_folder))
    model = SparseEncoder(modules=[first, SpladePooling(pooling, activation_function=activation)], device="cpu",
                          prompts=prompts)
    model.save(str(out))
    return out


@pytest.fixture(scope="module")
def splade(tmp_path_factory, mlm_folder):
    """(SparseEncoder folder, its artifact): max pooling, relu, with a query prompt."""
    tmp = tmp_path_factory.mktemp("splade")
    folder = sparse_encoder_folder(tmp / "folder", mlm_folder, prompts={"query": "query: ", "document": ""})
    return folder, onnxport.export(folder, out=tmp / "artifact").path


def reference_pairs(folder: Path, texts: list[str], **options) -> list[tuple[np.ndarray, np.ndarray]]:
    from sentence_transformers import SparseEncoder

    dense = SparseEncoder(str(folder), device="cpu").encode(texts, **options).to_dense().numpy()
    return [(np.flatnonzero(row), row[np.flatnonzero(row)]) for row in dense]


def assert_same_vectors(got, expected) -> None:
    assert len(got) == len(expected)
    for (indices, values), (want_indices, want_values) in zip(got, expected):
        np.testing.assert_array_equal(indices, want_indices)
        np.testing.assert_allclose(values, want_values, atol=1e-4, rtol=0)


def test_exports_as_sparse_embedding_and_verifies_against_sparse_encoder(splade):
    folder, artifact = splade
    art = onnxport.Artifact(artifact)
    assert art.task is Task.SPARSE_EMBEDDING
    assert (art.spec.splade_pooling, art.spec.splade_activation) == ("max", "relu")
    assert [(o.name, o.dims) for o in art.outputs] == [("sparse_embedding", ("batch", 30522))]
    checks = art.files["model.onnx"]["verification"]["checks"]
    assert any(c["name"] == "sentence-transformers SparseEncoder encode" and c["passed"] for c in checks)
    assert all(c["passed"] for c in checks)


def test_embed_equals_sparse_encoder_encode(splade):
    folder, artifact = splade
    embedder = onnxport.load(artifact, model="fp32")
    got = embedder.embed(TEXTS, batch_size=2)
    assert_same_vectors(got, reference_pairs(folder, TEXTS))
    assert 0 < np.mean([len(i) for i, _ in got]) < 0.01 * embedder.dimensions  # sparse, not all zeros
    assert_same_vectors(embedder.embed(TEXTS, prompt_name="query"), reference_pairs(folder, TEXTS, prompt_name="query"))
    assert_same_vectors(embedder.embed(TEXTS, max_active_dims=5), reference_pairs(folder, TEXTS, max_active_dims=5))
    assert all(len(indices) <= 5 for indices, _ in embedder.embed(TEXTS, max_active_dims=5))


def test_decode_and_csr(splade):
    from sentence_transformers import SparseEncoder

    folder, artifact = splade
    embedder = onnxport.load(artifact, model="fp32")
    reference = SparseEncoder(str(folder), device="cpu")
    vector = embedder.embed(TEXTS[:1])[0]
    expected = reference.decode(reference.encode(TEXTS[0]), top_k=6)
    got = embedder.decode(vector, top_k=6)
    assert [token for token, _ in got] == [token for token, _ in expected]
    np.testing.assert_allclose([w for _, w in got], [w for _, w in expected], atol=1e-4)

    csr = embedder.embed_csr(TEXTS)
    pairs = embedder.embed(TEXTS)
    assert csr["shape"].tolist() == [len(TEXTS), embedder.dimensions]
    for row, (indices, values) in enumerate(pairs):
        span = slice(csr["indptr"][row], csr["indptr"][row + 1])
        np.testing.assert_array_equal(csr["indices"][span], indices)
        np.testing.assert_array_equal(csr["values"][span], values)


@pytest.mark.parametrize(("pooling", "activation", "v6_transformer"),
                         [("sum", "log1p_relu", False), ("max", "relu", True)])
def test_other_splade_variants_equal_sparse_encoder(tmp_path, mlm_folder, pooling, activation, v6_transformer):
    folder = sparse_encoder_folder(tmp_path / "folder", mlm_folder, pooling=pooling, activation=activation,
                                   v6_transformer=v6_transformer)
    artifact = onnxport.export(folder, out=tmp_path / "artifact", hierarchy=False)
    assert (artifact.spec.splade_pooling, artifact.spec.splade_activation) == (pooling, activation)
    assert_same_vectors(onnxport.load(artifact).embed(TEXTS), reference_pairs(folder, TEXTS))


def test_bad_requests_are_refused(splade, tmp_path):
    from click.testing import CliRunner

    folder, artifact = splade
    embedder = onnxport.load(artifact)
    with pytest.raises(InputError, match="no Matryoshka dimensions"):
        embedder.embed(TEXTS, dimensions=8)
    with pytest.raises(InputError, match="has no prompt named .passage."):
        embedder.embed(TEXTS, prompt_name="passage")
    with pytest.raises(onnxport.errors.ExportError, match="SparseEncoder"):
        onnxport.export(folder, out=tmp_path / "dense", task="sentence-embedding")
    out = tmp_path / "vectors.jsonl"
    result = CliRunner().invoke(main, ["embed", str(artifact), "a text", "--dimensions", "8", "-o", str(out)])
    assert result.exit_code == 2 and "no Matryoshka dimensions" in result.output and not out.exists()


def test_cli_embed_writes_indices_and_values(splade, tmp_path):
    from click.testing import CliRunner

    folder, artifact = splade
    out = tmp_path / "vectors.jsonl"
    result = CliRunner().invoke(main, ["embed", str(artifact), TEXTS[0], TEXTS[2], "--model", "fp32", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row, (indices, values) in zip(rows, reference_pairs(folder, [TEXTS[0], TEXTS[2]])):
        assert row["indices"] == indices.tolist()
        np.testing.assert_allclose(row["values"], values, atol=1e-4)


def test_top_term_overlap_by_hand():
    """Text 0: heaviest 10 terms 0..9 in both (1.0). Text 1: three terms against three, two
    shared (2/3). Text 2: empty in both (1.0)."""
    a = np.zeros((3, 20))
    b = np.zeros((3, 20))
    a[0, :10] = b[0, :10] = np.arange(10, 0, -1)
    a[1, [1, 2, 3]] = [3, 2, 1]
    b[1, [1, 2, 4]] = [3, 2, 1]
    assert top_term_overlap(a, b, k=10) == pytest.approx((1 + 2 / 3 + 1) / 3)


def test_fused_and_int8_files_are_judged_on_sparse_vectors(splade, tmp_path):
    """The fused file passes parity against PyTorch and gives the same vectors; the int8 file
    is judged by cosine, neighbours and the overlap of heaviest terms (`top_term_overlap`,
    checked by hand above), on the guard's texts and on held-out ones."""
    import shutil

    _, artifact = splade
    art_dir = shutil.copytree(artifact, tmp_path / "artifact")
    _, fused, report = onnxport.optimize(art_dir)
    assert report.verdict == "passed" and fused.get("Attention", 0) == 2
    fp32 = onnxport.load(art_dir, model="fp32").embed(TEXTS)
    assert_same_vectors(onnxport.load(art_dir, model="opt").embed(TEXTS), fp32)
    entry = onnxport.quantize(art_dir)
    checks = {c["name"]: c for c in entry["verification"]["checks"]}
    assert set(checks) == {"cosine to fp32", "top-10 neighbour overlap", "top-10 term overlap"}
    held_out = entry["held_out_quality"]
    assert 0 < held_out["top10_term_overlap"] <= 1
