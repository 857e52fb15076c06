"""Question answering: a Hugging Face *ForQuestionAnswering folder exports as task
question-answering (start and end logits), and `QuestionAnswerer.answer` gives the answers
transformers' question-answering pipeline gives: the same answer text, character offsets and
score, including a context three times longer than the model's window (read in overlapping
windows), top_k > 1 and "no answer".

transformers removed that pipeline in 5.3, so the reference runs in a side virtualenv with
transformers 5.2 (and this environment's torch), built once per module from the package
index; a pip that cannot reach it fails the test with pip's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnxport
from conftest import export_once, random_model_folder
from onnxport.checks.quality import QUALITY_DEFAULTS, quality_checks
from onnxport.core.spec import Task
from onnxport.errors import InputError
from onnxport.tools.cli import main

pytestmark = [pytest.mark.side_venv]

REFERENCE_SCRIPT = Path(__file__).parent / "references" / "qa_pipeline.py"
REFERENCE_TRANSFORMERS = "transformers==5.2.0"

SHORT_CONTEXT = ("onnxport exports transformer encoders to verified ONNX files. It runs them on a CPU, "
                 "behind an HTTP server, or on a Ray cluster.")
PARAGRAPHS = [
    "The overnight sleeper bus leaves Bangalore at 9:45 pm and reaches Mumbai the next afternoon.",
    "Tickets cost between 1,200 and 2,400 rupees, depending on the berth and the operator.",
    "Passengers may carry two bags; larger luggage travels in the hold under the coach.",
    "The Eiffel Tower, finished in 1889, stands on the Champ de Mars beside the Seine in Paris.",
    "ONNX files describe a graph of operators that onnxruntime executes on CPUs and GPUs alike.",
    "Rain is expected on Thursday, so the river cruise was moved to Saturday morning.",
]
# about 3x the 64-token window of the tiny model's tokenizer
LONG_CONTEXT = " ".join(PARAGRAPHS * 2)


@pytest.fixture(scope="module")
def qa_folder(tmp_path_factory, wordpiece_tokenizer) -> Path:
    """A tiny random BertForQuestionAnswering (window of 64 tokens)."""
    from transformers import BertForQuestionAnswering

    # Wider random weights than BERT's 0.02: span scores that differ (not near-ties), so the
    # best answer is a clear choice for both runtimes.
    return random_model_folder(tmp_path_factory.mktemp("tiny-qa"), BertForQuestionAnswering, wordpiece_tokenizer,
                               seed=3, initializer_range=0.2)


@pytest.fixture(scope="module")
def qa_artifact(tmp_path_factory, qa_folder) -> Path:
    return export_once(tmp_path_factory, qa_folder, "qa-artifact")


@pytest.fixture(scope="module")
def reference_python(tmp_path_factory) -> Path:
    """The python of a venv that sees this environment's packages (torch) but has its own
    transformers 5.2 (with its tokenizers and huggingface-hub pins)."""
    home = tmp_path_factory.mktemp("qa-reference") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(home)], check=True)
    python = home / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                REFERENCE_TRANSFORMERS], capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:
        pytest.fail(f"pip install {REFERENCE_TRANSFORMERS} into the reference venv failed:\n"
                    f"{(installed.stdout + installed.stderr)[-3000:]}")
    return python


def reference_answers(python: Path, folder: Path, cases: list[dict]) -> list:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([str(python), str(REFERENCE_SCRIPT)], input=json.dumps({"model": str(folder), "cases": cases}),
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def assert_same_answers(got, expected) -> None:
    got = got if isinstance(got, list) else [got]
    expected = expected if isinstance(expected, list) else [expected]
    assert [(a["answer"], a["start"], a["end"]) for a in got] == \
        [(a["answer"], a["start"], a["end"]) for a in expected]
    assert np.allclose([a["score"] for a in got], [a["score"] for a in expected], rtol=1e-3, atol=1e-6)


def test_exports_as_question_answering_with_both_logits(qa_artifact):
    art = onnxport.Artifact(qa_artifact)
    assert art.task is Task.QUESTION_ANSWERING
    assert [o.name for o in art.outputs] == ["start_logits", "end_logits"]
    assert all(o.dims == ("batch", "sequence") for o in art.outputs)
    checks = art.files["model.onnx"]["verification"]["checks"]
    names = {check["name"] for check in checks}
    assert any("truncated pairs" in name for name in names), names  # pairs cut longest_first were compared
    assert all(check["passed"] for check in checks)


def test_answers_equal_the_transformers_pipeline(qa_artifact, qa_folder, reference_python):
    answerer = onnxport.load(qa_artifact)
    question = "When does the bus leave Bangalore?"
    cases = [
        {"question": "What does onnxport export?", "context": SHORT_CONTEXT, "max_answer_len": 30},
        {"question": question, "context": LONG_CONTEXT, "max_answer_len": 30},
        {"question": question, "context": LONG_CONTEXT, "max_answer_len": 30, "top_k": 4},
        {"question": question, "context": LONG_CONTEXT, "max_answer_len": 10, "doc_stride": 8, "top_k": 2},
        {"question": "Where is the tower?", "context": LONG_CONTEXT, "max_answer_len": 30,
         "handle_impossible_answer": True, "top_k": 3},
    ]
    from tokenizers import Tokenizer

    whole = Tokenizer.from_file(str(qa_artifact / "tokenizer.json"))
    whole.no_truncation()
    assert len(whole.encode(LONG_CONTEXT).ids) > 3 * answerer.encoder.max_length  # really several windows
    expected = reference_answers(reference_python, qa_folder, cases)
    for case, reference in zip(cases, expected):
        got = answerer.answer(case["question"], case["context"], top_k=case.get("top_k", 1),
                              max_answer_length=case["max_answer_len"], doc_stride=case.get("doc_stride"),
                              handle_impossible_answer=case.get("handle_impossible_answer", False))
        assert_same_answers(got, reference)
        for answer in got if isinstance(got, list) else [got]:
            assert case["context"][answer["start"]:answer["end"]] == answer["answer"]
    # lists of questions and contexts: one result per pair, the same as one by one
    batch = answerer.answer([cases[0]["question"], question], [SHORT_CONTEXT, LONG_CONTEXT])
    assert_same_answers(batch[0], expected[0])
    assert_same_answers(batch[1], expected[1])


def test_bad_questions_and_contexts_are_refused(qa_artifact):
    answerer = onnxport.load(qa_artifact)
    with pytest.raises(InputError, match="context is empty"):
        answerer.answer("What is it?", "   ")
    with pytest.raises(InputError, match="question is empty"):
        answerer.answer("", SHORT_CONTEXT)
    with pytest.raises(InputError, match="one context per question"):
        answerer.answer(["a?", "b?"], [SHORT_CONTEXT])
    with pytest.raises(InputError, match="doc_stride"):
        answerer.answer("What?", SHORT_CONTEXT, doc_stride=64)
    with pytest.raises(InputError, match="leaves no room for the context"):
        answerer.answer(" ".join(["why"] * 50), LONG_CONTEXT)
    with pytest.raises(onnxport.errors.NotForThisTask, match="question-answering"):
        answerer.embed(["text"])


def test_cli_qa_prints_the_api_answers_and_refuses_a_missing_context(qa_artifact, tmp_path):
    from click.testing import CliRunner

    context_file = tmp_path / "context.txt"
    context_file.write_text(LONG_CONTEXT, encoding="utf-8")
    question = "When does the bus leave Bangalore?"
    result = CliRunner().invoke(main, ["qa", str(qa_artifact), "-q", question, "--context-file", str(context_file),
                                       "--top-k", "2", "--model", "fp32"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    expected = onnxport.load(qa_artifact, model="fp32").answer(question, LONG_CONTEXT, top_k=2)
    assert [(line["rank"], line["answer"], line["start"], line["end"]) for line in lines] == \
        [(rank, a["answer"], a["start"], a["end"]) for rank, a in enumerate(expected, 1)]

    out = tmp_path / "answers.jsonl"
    for args, message in ((["-q", question, "-o", str(out)], "exactly one of them"),
                          (["-q", question, "--context-file", str(tmp_path / "missing.txt"), "-o", str(out)],
                           "is not a file"),
                          (["-q", question, "--context", "  ", "-o", str(out)], "context is empty")):
        result = CliRunner().invoke(main, ["qa", str(qa_artifact), *args])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert not out.exists()


def test_answer_quality_metrics_are_exact_match_and_span_f1():
    """Hand-built logits: the best span of row 0 is tokens 2..3 in both; row 1's is 4..5
    against 4..4 (F1 2*1/(2+1)); row 2's is 1..1 against 5..5 (no overlap)."""
    def logits(spans):
        start, end = np.zeros((3, 8), np.float32), np.zeros((3, 8), np.float32)
        for row, (first, last) in enumerate(spans):
            start[row, first] = end[row, last] = 5.0
        return {"start_logits": start, "end_logits": end}

    masks = [np.ones((3, 8), dtype=bool)]
    checks = quality_checks(Task.QUESTION_ANSWERING, "start_logits", [logits([(2, 3), (4, 5), (1, 1)])],
                            [logits([(2, 3), (4, 4), (5, 5)])], masks, ["a", "b", "c"], QUALITY_DEFAULTS, None)
    measured = {k: v for check in checks for k, v in check.measured.items()}
    assert measured["exact_match"] == pytest.approx(1 / 3)
    assert measured["answer_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert not any(check.passed for check in checks)


def test_int8_guard_judges_answers_and_its_figure_can_be_recomputed(qa_artifact, tmp_path):
    """quantize's recorded exact match equals one recomputed here by brute force over the
    same (question, context) pairs, straight from onnxruntime. Dynamic int8 scales each run's
    activations together, so the pairs run in the guard's batches: 16 at a time, shortest first."""
    import shutil

    import onnxruntime as ort
    from tokenizers import Tokenizer

    from onnxport.checks.quality import quality_inputs
    from onnxport.core.sample_texts import builtin_texts

    art_dir = shutil.copytree(qa_artifact, tmp_path / "artifact")
    onnxport.quantize(art_dir)
    report = onnxport.Artifact(art_dir).files["model.int8.onnx"]["verification"]
    assert {check["name"] for check in report["checks"]} == {"answer exact match", "answer token F1"}
    recorded = next(c for c in report["checks"] if c["name"] == "answer exact match")["measured"]["exact_match"]

    tokenizer = Tokenizer.from_file(str(art_dir / "tokenizer.json"))
    tokenizer.no_padding()  # pad per batch below, as the pipelines do
    tokenizer.enable_truncation(64, strategy="longest_first")
    pairs, _ = quality_inputs(Task.QUESTION_ANSWERING, builtin_texts(96))  # the texts quantize judges on

    encodings = tokenizer.encode_batch(pairs)
    order = sorted(range(len(pairs)), key=lambda i: len(encodings[i].ids))

    def best_spans(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        spans = []
        for first in range(0, len(order), 16):
            batch = [encodings[i] for i in order[first:first + 16]]
            width = max(len(e.ids) for e in batch)
            feed = {name: np.array([getattr(e, field) + [0] * (width - len(e.ids)) for e in batch], dtype=np.int64)
                    for name, field in (("input_ids", "ids"), ("attention_mask", "attention_mask"),
                                        ("token_type_ids", "type_ids"))}
            start, end = session.run(None, feed)
            for row, encoding in enumerate(batch):
                context = [i for i, s in enumerate(encoding.sequence_ids) if s == 1]
                spans.append(max((float(start[row, s]) + float(end[row, e]), s, e) for s in context for e in context
                                 if s <= e < s + 30)[1:])
        return spans

    fp32, int8 = best_spans(art_dir / "model.onnx"), best_spans(art_dir / "model.int8.onnx")
    assert recorded == pytest.approx(np.mean([a == b for a, b in zip(fp32, int8)]), abs=1e-9)


def test_fused_file_gives_the_same_answers(qa_artifact, tmp_path):
    """optimize fuses the encoder (Attention, SkipLayerNormalization) and the fused file,
    verified against PyTorch, answers as the plain one does."""
    import shutil

    art_dir = shutil.copytree(qa_artifact, tmp_path / "artifact")
    name, fused, report = onnxport.optimize(art_dir)
    assert report.verdict == "passed" and fused.get("Attention", 0) == 2
    question = "When does the bus leave Bangalore?"
    plain = onnxport.load(art_dir, model="fp32").answer(question, LONG_CONTEXT, top_k=3)
    assert_same_answers(onnxport.load(art_dir, model="opt").answer(question, LONG_CONTEXT, top_k=3), plain)
