"""`profile --stages`: one pipeline call's time split into tokenize, pad, feed, run, pool, other.

References: the call counts follow from the texts and the batch size (one tokenize per call,
one session run per batch of the length-sorted texts); the wrapped pipeline must return what
an untouched one returns; the stages must add up to the measured wall time.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.core.sample_texts import builtin_texts
from onnxport.tools.cli import main
from onnxport.tools.stages import STAGES, profile_stages


@pytest.fixture(scope="module")
def embedding_artifact(tiny_embedding_artifact):
    return tiny_embedding_artifact  # read only: these tests load it and write elsewhere


def short_texts(count: int) -> list[str]:
    """Texts of at most 12 tokens: batches of 8 stay under the 1024-token budget, so runs
    are counted by rows alone."""
    words = ["river", "quiet", "market", "seven", "orange", "signal", "window", "garden"]
    return [" ".join(words[(i + k) % len(words)] for k in range(1 + i % 8)) for i in range(count)]


def test_stages_count_every_call_and_add_up_to_the_wall_time(embedding_artifact):
    texts = short_texts(50)
    result = profile_stages(embedding_artifact, texts=texts, batch_size=8, repeat=2, warmup=1).to_dict()
    rows = {row["stage"]: row for row in result["stages"]}
    assert list(rows) == list(STAGES)
    batches = math.ceil(len(texts) / 8)
    assert rows["tokenize"]["calls"] == 2  # one per embed call
    assert rows["run"]["calls"] == rows["pad"]["calls"] == rows["feed"]["calls"] == 2 * batches
    assert rows["pool"]["calls"] == 2 * batches
    assert all(rows[s]["ms"] > 0 for s in ("tokenize", "pad", "feed", "run", "pool"))
    assert rows["other"]["ms"] >= 0
    assert sum(r["ms"] for r in rows.values()) == pytest.approx(result["wall_ms"], rel=1e-3, abs=0.01)
    assert result["texts_per_second"] == pytest.approx(2 * len(texts) / result["wall_ms"] * 1000, rel=0.01)
    assert rows["run"]["ms"] > rows["feed"]["ms"]  # the graph outweighs a dtype check


def test_timers_do_not_change_what_the_pipeline_returns(embedding_artifact, monkeypatch):
    from onnxport.runtime import pipelines

    texts = builtin_texts(20)
    expected = onnxport.load(embedding_artifact).embed(texts, batch_size=4)
    opened = []
    original_load = pipelines.load

    def keep(*args, **kwargs):
        opened.append(original_load(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr("onnxport.tools.stages.load", keep)
    profile_stages(embedding_artifact, texts=texts, batch_size=4, repeat=1, warmup=0)
    np.testing.assert_allclose(opened[0].embed(texts, batch_size=4), expected, atol=1e-6)


def test_stage_profile_covers_pairs_for_a_classifier(tmp_path, tiny_sequence_classifier_folder):
    out = tmp_path / "classifier"
    onnxport.export(tiny_sequence_classifier_folder, out=out)
    result = profile_stages(out, texts=short_texts(12), batch_size=4, repeat=1, warmup=0).to_dict()
    assert result["verb"] == "classify"
    assert {row["stage"]: row["calls"] for row in result["stages"]}["run"] == 3


def test_cli_profile_stages_json_and_table(embedding_artifact, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(short_texts(20)) + "\n")
    runner = CliRunner()
    result = runner.invoke(main, ["profile", str(embedding_artifact), "--stages", "--texts", str(texts),
                                  "--batch-size", "4", "--repeat", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["texts"] == 20 and data["batch_size"] == 4 and data["verb"] == "embed"
    assert {row["stage"]: row["calls"] for row in data["stages"]}["run"] == 5
    table = runner.invoke(main, ["profile", str(embedding_artifact), "--stages", "--texts", str(texts)])
    assert table.exit_code == 0, table.output
    assert "where embed() spends its time" in table.stdout and "texts/s" in table.stdout


def test_profile_stages_refuses_bad_numbers(embedding_artifact):
    result = CliRunner().invoke(main, ["profile", str(embedding_artifact), "--stages", "--batch-size", "0"])
    assert result.exit_code == 2 and "batch-size" in result.output
    with pytest.raises(onnxport.errors.InputError, match="at least 1"):
        profile_stages(embedding_artifact, repeat=0)
