"""Token-budget batching: runs of at most `batch_size` rows and `max_batch_tokens` padded tokens.

References: hand-worked cuts of small length lists; fp32 embeddings and labels equal to those
of plain fixed-size batches (padding never changes a result; verification proves it); the
number of model runs counted on the session itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.core.sample_texts import builtin_texts
from onnxport.errors import InputError
from onnxport.runtime.batching import length_batches
from onnxport.tools.cli import main


def test_cuts_by_rows_and_by_padded_tokens():
    lengths = [5, 100, 3, 40, 60, 2, 300, 10]
    # sorted: 2(5) 3(2) 5(0) 10(7) 40(3) 60(4) 100(1) 300(6)
    assert length_batches(lengths, rows=3, tokens=None) == [[5, 2, 0], [7, 3, 4], [1, 6]]
    # budget 120: [2,3,5,10] is 4x10=40; adding 40 -> 5x40=200 > 120; [40] then 60 -> 2x60=120 ok;
    # 100 -> 3x100 > 120; [100]; [300] alone though over budget.
    assert length_batches(lengths, rows=8, tokens=120) == [[5, 2, 0, 7], [3, 4], [1], [6]]
    assert length_batches(lengths, rows=2, tokens=120) == [[5, 2], [0, 7], [3, 4], [1], [6]]
    assert length_batches([], rows=4) == []
    with pytest.raises(InputError, match="max_batch_tokens"):
        length_batches(lengths, rows=4, tokens=0)
    with pytest.raises(InputError, match="batch_size"):
        length_batches(lengths, rows=0)


@pytest.fixture(scope="module")
def embedding_artifact(tiny_embedding_artifact):
    return tiny_embedding_artifact  # read only: these tests load it and write elsewhere


def _count_runs(pipeline) -> list:
    shapes = []
    run = pipeline.runner.session.run

    def counted(names, feed, *args):
        shapes.append(feed["input_ids"].shape)
        return run(names, feed, *args)

    pipeline.runner.session.run = counted
    return shapes


def test_budget_changes_the_runs_not_the_vectors(embedding_artifact):
    texts = builtin_texts(60)  # 3 to 64 tokens here (the tiny model's window is 64)
    rows_only = onnxport.load(embedding_artifact, max_batch_tokens=None)
    budget = onnxport.load(embedding_artifact, max_batch_tokens=128)
    plain_runs, budget_runs = _count_runs(rows_only), _count_runs(budget)
    expected = rows_only.embed(texts, batch_size=16)
    got = budget.embed(texts, batch_size=16)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert len(plain_runs) == 4  # 60 texts, 16 rows per run
    assert all(rows * length <= 128 or rows == 1 for rows, length in budget_runs)
    assert all(rows <= 16 for rows, _ in budget_runs)
    assert sum(rows for rows, _ in budget_runs) == 60 and len(budget_runs) > len(plain_runs)


def test_budget_is_checked_and_reaches_the_cli(embedding_artifact, tmp_path):
    with pytest.raises(InputError, match="max_batch_tokens"):
        onnxport.load(embedding_artifact, max_batch_tokens=0)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(builtin_texts(10)) + "\n")
    out = tmp_path / "vectors.npy"
    result = CliRunner().invoke(main, ["embed", str(embedding_artifact), str(texts), "-o", str(out),
                                       "--max-batch-tokens", "64"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), onnxport.load(embedding_artifact).embed(builtin_texts(10)), atol=1e-6)
    refused = tmp_path / "refused.npy"
    bad = CliRunner().invoke(main, ["embed", str(embedding_artifact), str(texts), "-o", str(refused),
                                    "--max-batch-tokens", "0"])
    assert bad.exit_code == 2 and "--max-batch-tokens" in bad.output
    assert not refused.exists()
