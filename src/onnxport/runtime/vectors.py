"""Sentence vectors after the graph: L2 normalization and Matryoshka truncation."""

from __future__ import annotations

import numpy as np


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def shorten(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first `dimensions` values of each vector (Matryoshka style), renormalized, as
    OpenAI's `dimensions` and sentence-transformers' `truncate_dim` with normalized output."""
    return vectors if dimensions is None else normalized(vectors[:, :dimensions]).astype(vectors.dtype, copy=False)
