"""all-MiniLM-L6-v2 against a pinned golden vector.

tests/golden/minilm_golden.json was computed once with sentence-transformers (its
"made_with" block says which versions, and when) and is never recomputed by the tests:
it pins what the model must give even if sentence-transformers, transformers, torch or
onnxport change. Both backends of `onnxport.load` are checked against it.

Tolerances: abs 1e-5 on each of the first 8 values, on each vector's L2 norm and on each
pairwise cosine (float32 ONNX and PyTorch kernels differ from the golden by ~1e-7 here).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

import onnxport

pytestmark = pytest.mark.slow

GOLDEN_FILE = Path(__file__).parent / "golden" / "minilm_golden.json"
GOLDEN = json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))
TEXTS = GOLDEN["texts"]
VALUE_ATOL = 1e-5
NORM_ATOL = 1e-5
COSINE_ATOL = 1e-5


def test_golden_file_is_complete_and_says_how_it_was_made():
    assert len(TEXTS) == 3 and len(set(TEXTS)) == 3
    assert GOLDEN["dimension"] == 384
    assert [len(row) for row in GOLDEN["first8"]] == [8, 8, 8]
    assert len(GOLDEN["norm"]) == 3
    assert set(GOLDEN["cosines"]) == {"0,1", "0,2", "1,2"}
    made_with = GOLDEN["made_with"]
    assert made_with["sentence_transformers"] and made_with["date"]
    assert "normalize_embeddings=False" in GOLDEN["note"]


def check_against_golden(vectors: np.ndarray) -> None:
    assert vectors.shape == (len(TEXTS), GOLDEN["dimension"])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[:, :8], np.array(GOLDEN["first8"]), rtol=0, atol=VALUE_ATOL)
    v = vectors.astype(np.float64)
    norms = np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(norms, GOLDEN["norm"], rtol=0, atol=NORM_ATOL)
    for i, j in itertools.combinations(range(len(TEXTS)), 2):
        cosine = float(v[i] @ v[j] / (norms[i] * norms[j]))
        assert cosine == pytest.approx(GOLDEN["cosines"][f"{i},{j}"], abs=COSINE_ATOL), (i, j)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_embed_equals_the_golden(minilm_artifact, backend):
    pipeline = onnxport.load(minilm_artifact, backend=backend)
    # One padded batch of all three texts ...
    check_against_golden(pipeline.embed(TEXTS))
    # ... and each text alone (no padding): the same vectors.
    check_against_golden(np.concatenate([pipeline.embed([text]) for text in TEXTS]))
