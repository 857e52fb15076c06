"""Fill-mask: a Hugging Face *ForMaskedLM folder exports as task fill-mask (vocabulary logits
per token), and `FillMask.fill` names the tokens transformers' fill-mask pipeline names: the
same top-k token ids, token strings, filled-in sequences and scores, for one mask or several.
A text without a mask token is refused, in Python and on the CLI (exit 2, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import onnxport
from conftest import export_once, random_model_folder
from onnxport.checks.quality import QUALITY_DEFAULTS, quality_checks
from onnxport.core.spec import Task
from onnxport.errors import InputError
from onnxport.tools.cli import main

TEXTS = [
    "Paris is the [MASK] of France.",
    "The bus to [MASK] leaves at nine, doesn't it?",
    "I [MASK] the ticket and [MASK] on the bus.",  # two masks: one list per mask
    "[MASK]",
]


@pytest.fixture(scope="module")
def mlm_folder(tmp_path_factory, wordpiece_tokenizer) -> Path:
    from transformers import BertForMaskedLM

    # Wider random weights than BERT's 0.02, so the best tokens are clear choices.
    return random_model_folder(tmp_path_factory.mktemp("tiny-mlm"), BertForMaskedLM, wordpiece_tokenizer, seed=4,
                               initializer_range=0.2)


@pytest.fixture(scope="module")
def mlm_artifact(tmp_path_factory, mlm_folder) -> Path:
    return export_once(tmp_path_factory, mlm_folder, "mlm-artifact")


def _same(got, expected) -> None:
    if expected and isinstance(expected[0], list):
        assert len(got) == len(expected)
        for mine, theirs in zip(got, expected):
            _same(mine, theirs)
        return
    assert [(g["token"], g["token_str"], g["sequence"]) for g in got] == \
        [(e["token"], e["token_str"], e["sequence"]) for e in expected]
    assert np.allclose([g["score"] for g in got], [e["score"] for e in expected], rtol=1e-4, atol=1e-7)


def test_fill_equals_the_transformers_pipeline(mlm_artifact, mlm_folder):
    from transformers import pipeline

    art = onnxport.Artifact(mlm_artifact)
    assert art.task is Task.FILL_MASK
    assert art.outputs[0].name == "logits" and art.outputs[0].dims[:2] == ("batch", "sequence")
    reference = pipeline("fill-mask", model=str(mlm_folder), device="cpu")
    filler = onnxport.load(mlm_artifact, model="fp32")
    together = filler.fill(TEXTS, top_k=5)
    for text, batched in zip(TEXTS, together):
        expected = reference(text, top_k=5)
        _same(filler.fill(text, top_k=5), expected)
        _same(batched, expected)


def test_text_without_a_mask_is_refused(mlm_artifact, tmp_path):
    from click.testing import CliRunner

    filler = onnxport.load(mlm_artifact)
    with pytest.raises(InputError, match=r"has no mask token; write \[MASK\]"):
        filler.fill("There is nothing to fill here.")
    with pytest.raises(InputError, match=r"text #1 .* has no mask token"):
        filler.fill(["Paris is the [MASK] of France.", "nothing here"])
    with pytest.raises(InputError, match="past the first 64 tokens"):
        filler.fill("word " * 80 + "[MASK]")
    out = tmp_path / "fills.jsonl"
    result = CliRunner().invoke(main, ["fill-mask", str(mlm_artifact), "There is nothing to fill.", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "has no mask token" in result.output and not out.exists()


def test_cli_writes_one_list_per_mask(mlm_artifact, tmp_path):
    from click.testing import CliRunner

    out = tmp_path / "fills.jsonl"
    result = CliRunner().invoke(main, ["fill-mask", str(mlm_artifact), TEXTS[0], TEXTS[2], "--top-k", "3",
                                       "--model", "fp32", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = onnxport.load(mlm_artifact, model="fp32").fill([TEXTS[0], TEXTS[2]], top_k=3)
    assert [row["text"] for row in rows] == [TEXTS[0], TEXTS[2]]
    assert rows[0]["masks"] == [expected[0]]  # one mask: still a list of masks
    assert rows[1]["masks"] == expected[1]


def test_fill_mask_quality_is_top1_and_top5_agreement():
    """Hand-built logits over 8 tokens at two mask positions: the same best token at the first
    (and all five best), a different best at the second with 4 of 5 shared."""
    got = np.zeros((1, 3, 8), np.float32)
    expected = np.zeros((1, 3, 8), np.float32)
    got[0, 0] = expected[0, 0] = [8, 7, 6, 5, 4, 0, 0, 0]
    got[0, 2] = [7, 8, 6, 5, 0, 4, 0, 0]   # best 1; top-5 {1, 0, 2, 3, 5}
    expected[0, 2] = [8, 7, 6, 5, 4, 0, 0, 0]  # best 0; top-5 {0, 1, 2, 3, 4}
    masks = [np.array([[True, False, True]])]
    checks = quality_checks(Task.FILL_MASK, "logits", [{"logits": got}], [{"logits": expected}], masks, ["t"],
                            QUALITY_DEFAULTS, None)
    measured = {k: v for check in checks for k, v in check.measured.items()}
    assert measured == pytest.approx({"top1_agreement": 0.5, "top5_agreement": (1 + 4 / 5) / 2})


def test_fused_file_fills_the_same(mlm_artifact, tmp_path):
    import shutil

    art_dir = shutil.copytree(mlm_artifact, tmp_path / "artifact")
    _, fused, report = onnxport.optimize(art_dir)
    assert report.verdict == "passed" and fused.get("Attention", 0) == 2
    fp32 = onnxport.load(art_dir, model="fp32").fill(TEXTS, top_k=5)
    for got, expected in zip(onnxport.load(art_dir, model="opt").fill(TEXTS, top_k=5), fp32):
        _same(got, expected)
