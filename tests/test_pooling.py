"""Pooling functions against hand-computed values (padding must never count)."""

from __future__ import annotations

import math

import pytest
import torch

from onnxport import Pooling
from onnxport.convert.wrapper import POOLERS, l2_normalize

# batch of 2, sequence 3, hidden 2; the second text has one padding position.
TOKENS = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                       [[1.0, -1.0], [3.0, 5.0], [100.0, 100.0]]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


@pytest.mark.parametrize(
    ("pooling", "expected"),
    [
        (Pooling.MEAN, [[3.0, 4.0], [2.0, 2.0]]),
        (Pooling.MAX, [[5.0, 6.0], [3.0, 5.0]]),
        (Pooling.CLS, [[1.0, 2.0], [1.0, -1.0]]),
        (Pooling.LAST_TOKEN, [[5.0, 6.0], [3.0, 5.0]]),
        (Pooling.MEAN_SQRT_LEN, [[9.0 / math.sqrt(3), 12.0 / math.sqrt(3)], [4.0 / math.sqrt(2), 4.0 / math.sqrt(2)]]),
        # position weights 1, 2, 3: (1*1 + 3*2 + 5*3) / 6, ...; the padded text weighs 1, 2
        (Pooling.WEIGHTED_MEAN, [[22.0 / 6, 28.0 / 6], [7.0 / 3, 3.0]]),
    ],
)
def test_poolers_ignore_padding(pooling, expected):
    torch.testing.assert_close(POOLERS[pooling](TOKENS, MASK), torch.tensor(expected))


def test_last_token_with_left_padding():
    mask = torch.tensor([[0, 1, 1]])
    torch.testing.assert_close(POOLERS[Pooling.LAST_TOKEN](TOKENS[:1], mask), torch.tensor([[5.0, 6.0]]))


def test_weighted_mean_counts_positions_from_the_first_real_token():
    # Left padding: the two real tokens weigh 1 and 2, as sentence-transformers' weightedmean.
    mask = torch.tensor([[0, 1, 1]])
    torch.testing.assert_close(POOLERS[Pooling.WEIGHTED_MEAN](TOKENS[:1], mask),
                               torch.tensor([[13.0 / 3, 16.0 / 3]]))


def test_l2_normalize_matches_unit_length_and_zero_vectors():
    vectors = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(l2_normalize(vectors), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
