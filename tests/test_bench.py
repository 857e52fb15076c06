"""`onnxport bench`: report structure, numbers that come from measurement, the chart, a
missing PyTorch source, Ctrl-C, and bad input. Tiny models and a dozen texts keep it fast."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import re
import shutil
import struct
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.tools import bench
from onnxport.tools.cli import main
from onnxport.core.sample_texts import length_mix_texts

FAST = bench.Settings(batch_sizes=(1, 4), repeats=2, warmup=1, latency_samples=8, cold_start=False, threads=1)


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory, tiny_bert_folder):
    out = tmp_path_factory.mktemp("bench") / "artifact"
    onnxport.export(tiny_bert_folder, out=out, task="sentence-embedding", verify=False)
    return out


@pytest.fixture(scope="module")
def texts():
    return length_mix_texts(12, seed=3)


@pytest.fixture
def texts_file(tmp_path, texts):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(" ".join(t.split()) for t in texts) + "\n")
    return path


def md_table(markdown: str, heading: str) -> list[list[str]]:
    """Rows (cells) of the table under `## heading`."""
    section = markdown.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("x"))


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------- the whole command

def test_cli_report_structure_json_md_and_chart_agree(tiny_artifact, texts_file, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["bench", str(tiny_artifact), "--texts", str(texts_file), "--batch-sizes",
                                       "4,1", "--quick", "--threads", "1", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["chart.png", "report.json", "report.md"]  # no temp files left
    report = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()

    assert report["partial"] is False and report["reference"] == report["baseline"] == "pytorch"
    assert report["settings"]["batch_sizes"] == [1, 4] and report["settings"]["threads"] == 1
    assert report["settings"]["repeats"] == 2 and report["settings"]["rss_batch"] == 8  # --quick
    assert report["texts"]["count"] == 12 and report["texts"]["source"] == str(texts_file)
    by_name = {c["name"]: c for c in report["contenders"]}
    assert list(by_name) == ["pytorch", "onnx fp32"]
    for contender in by_name.values():
        assert contender["available"], contender["reason"]
        assert [row["batch_size"] for row in contender["throughput"]] == [1, 4]
        for row in contender["throughput"]:
            assert row["runs"] == 2 and len(row["seconds"]) == 2 and all(s > 0 for s in row["seconds"])
            assert row["texts_per_s"] == pytest.approx(12 / np.median(row["seconds"]))
            assert row["texts_per_s_min"] <= row["texts_per_s"] <= row["texts_per_s_max"]
            assert row["tokens_per_s"] / row["texts_per_s"] == pytest.approx(report["texts"]["tokens"] / 12)
            pytorch_row = next(r for r in by_name["pytorch"]["throughput"] if r["batch_size"] == row["batch_size"])
            assert row["speedup"] == pytest.approx(row["texts_per_s"] / pytorch_row["texts_per_s"])
        latency = contender["latency_ms"]
        assert latency["samples"] == 16 and 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
        cold = contender["cold_start"]
        assert "error" not in cold, cold
        assert cold["seconds"] > 0 and cold["process_seconds"] > cold["seconds"]
        assert 0 < cold["first_result_rss_mb"] <= cold["peak_rss_mb"] < 4000
        assert contender["size_bytes"] > 0
    # The onnx contender in the subprocess does not import torch, so it needs less memory than PyTorch.
    assert by_name["onnx fp32"]["cold_start"]["peak_rss_mb"] < by_name["pytorch"]["cold_start"]["peak_rss_mb"]
    assert by_name["onnx fp32"]["size_bytes"] == (tiny_artifact / "model.onnx").stat().st_size
    assert by_name["onnx fp32"]["verified"] is None  # exported with verify=False: "not verified"
    quality = by_name["onnx fp32"]["quality"]
    assert quality["passed"] and quality["metrics"]["mean_cosine"] > 0.9999 and quality["reference"] == "pytorch"

    # report.md shows the same numbers as report.json.
    assert "| speed-up vs pytorch |" in markdown
    rows = md_table(markdown, "Throughput")
    assert len(rows) == 2 * len(by_name)
    for name, batch, texts_per_s, spread, tokens_per_s, speedup, runs in rows:
        row = next(r for r in by_name[name]["throughput"] if r["batch_size"] == int(batch))
        assert number(texts_per_s) == pytest.approx(row["texts_per_s"], abs=0.051)
        assert number(tokens_per_s) == pytest.approx(row["tokens_per_s"], abs=0.51)
        assert number(speedup) == pytest.approx(row["speedup"], abs=0.0051)
        assert int(runs) == row["runs"]
    for name, p50, p95, p99, cold, rss, size, quality in md_table(markdown, "Latency at batch 1"):
        contender = by_name[name]
        assert number(p95) == pytest.approx(contender["latency_ms"]["p95"], abs=0.0051)
        assert number(cold) == pytest.approx(contender["cold_start"]["seconds"], abs=0.0051)
        assert number(size) == pytest.approx(contender["size_bytes"] / 1e6, abs=0.051)
        assert quality == ("reference" if name == "pytorch" else bench.quality_text(contender["quality"]))
    assert "## Not measured" not in markdown

    assert png_size(out / "chart.png") == bench.CHART_SIZE == (1200, 600)
    import matplotlib.image

    assert matplotlib.image.imread(out / "chart.png").shape[:2] == (600, 1200)
    assert "onnx fp32" in result.output and "speed-up" in result.output  # the terminal table


# ---------------------------------------------------------------- numbers are measured

class Sleepy:
    """A contender made slower on purpose: the fp32 runner, plus a sleep per text."""

    def __init__(self, runner, seconds_per_text: float) -> None:
        self.runner = runner
        self.seconds_per_text = seconds_per_text

    def run(self, texts, batch_size):
        time.sleep(self.seconds_per_text * len(texts))
        return self.runner.run(texts, batch_size)

    def outputs(self, texts):
        return self.runner.outputs(texts)


def test_a_contender_made_slower_shows_up_slower(tiny_artifact, texts, wordpiece_tokenizer):
    from onnxport import Artifact

    art = Artifact(tiny_artifact)
    fp32 = bench.onnx_contender(art, "fp32", threads=1)
    slow = dataclasses.replace(fp32, name="slow fp32", load=lambda: Sleepy(fp32.load(), 0.01), program=None)
    report = bench.measure(art, texts=texts, settings=FAST, extra_contenders=[slow],
                           against=["sentence-transformers"])
    by_name = {c["name"]: c for c in report["contenders"]}
    assert list(by_name) == ["pytorch", "onnx fp32", "sentence-transformers", "slow fp32"]
    # Each built-in contender ran in a worker process of its own, in this interpreter's environment.
    for name in ("pytorch", "onnx fp32", "sentence-transformers"):
        assert by_name[name]["runs_in"]["python"] == sys.executable, by_name[name]
    assert by_name["onnx fp32"]["runs_in"]["detail"] == "onnxruntime, model.onnx"
    assert by_name["sentence-transformers"]["runs_in"]["versions"]["sentence-transformers"] == \
        importlib.metadata.version("sentence-transformers")
    assert "runs_in" not in by_name["slow fp32"]  # an in-process runner
    assert by_name["sentence-transformers"]["available"], by_name["sentence-transformers"]["reason"]
    # SentenceTransformer(folder) mean-pools this plain BERT folder, as the artifact does.
    assert by_name["sentence-transformers"]["quality"]["metrics"]["mean_cosine"] > 0.9999
    assert all(row["texts_per_s"] > 0 for row in by_name["sentence-transformers"]["throughput"])
    for fast_row, slow_row in zip(by_name["onnx fp32"]["throughput"], by_name["slow fp32"]["throughput"]):
        # 10 ms per text caps it at 100 texts/s, whatever the machine.
        assert slow_row["texts_per_s"] < 100 < fast_row["texts_per_s"]
        assert slow_row["speedup"] < fast_row["speedup"]
        assert min(slow_row["seconds"]) >= 0.01 * len(texts)
    assert by_name["slow fp32"]["latency_ms"]["p50"] >= 10 > by_name["onnx fp32"]["latency_ms"]["p50"]
    # Same outputs, so the same quality, both measured against PyTorch.
    assert by_name["slow fp32"]["quality"]["metrics"] == by_name["onnx fp32"]["quality"]["metrics"]

    # The quality numbers match an independent computation: PyTorch and onnxruntime run directly.
    from onnxport.runtime.session import OnnxModel
    from onnxport.runtime.tokenization import TextEncoder
    from onnxport.convert.references import TorchReference

    arrays = [TextEncoder.for_artifact(art).encode([text]) for text in texts]
    torch_model, onnx_model = TorchReference(art), OnnxModel(tiny_artifact / "model.onnx")
    a = np.concatenate([torch_model.run(x)["sentence_embedding"] for x in arrays]).astype(np.float64)
    b = np.concatenate([onnx_model.run(x)["sentence_embedding"] for x in arrays]).astype(np.float64)
    cosines = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    metrics = by_name["onnx fp32"]["quality"]["metrics"]
    assert metrics["mean_cosine"] == pytest.approx(cosines.mean(), abs=1e-6)
    assert metrics["min_cosine"] == pytest.approx(cosines.min(), abs=1e-6)

    # Token counts come from the tokenizer (the Hugging Face one here, truncated the same way).
    expected_tokens = sum(len(wordpiece_tokenizer(t, truncation=True, max_length=64)["input_ids"]) for t in texts)
    assert report["texts"]["tokens"] == expected_tokens
    row = by_name["onnx fp32"]["throughput"][0]
    assert row["tokens_per_s"] == pytest.approx(expected_tokens / np.median(row["seconds"]))


@pytest.mark.parametrize("folder, quality", [
    ("tiny_token_classifier_folder", "tokens 100.0%, entity F1 1.000"),
    ("tiny_sequence_classifier_folder", "labels agree 100.0%"),
])
def test_classifier_quality_is_label_agreement(request, tmp_path, texts, folder, quality):
    out = tmp_path / "artifact"
    onnxport.export(request.getfixturevalue(folder), out=out, verify=False)
    settings = dataclasses.replace(FAST, batch_sizes=(4,), repeats=1, latency_samples=2)
    report = bench.measure(out, texts=texts, settings=settings, against=["sentence-transformers"])
    by_name = {c["name"]: c for c in report["contenders"]}
    fp32 = by_name["onnx fp32"]
    assert fp32["throughput"][0]["texts_per_s"] > 0
    # The same fp32 graph as PyTorch: every label agrees (checked against our own argmax below).
    assert bench.quality_text(fp32["quality"]) == quality
    assert "compares embedding artifacts" in by_name["sentence-transformers"]["reason"]

    from onnxport import Artifact
    from onnxport.runtime.session import OnnxModel
    from onnxport.runtime.tokenization import TextEncoder
    from onnxport.convert.references import TorchReference

    art = Artifact(out)
    arrays = TextEncoder.for_artifact(art).encode(texts)
    a = TorchReference(art).run(arrays)["logits"].argmax(-1)
    b = OnnxModel(out / "model.onnx").run(arrays)["logits"].argmax(-1)
    assert (a == b)[arrays["attention_mask"].astype(bool)].all() if a.ndim == 2 else (a == b).all()


# ---------------------------------------------------------------- bad input and interruption

def test_pytorch_source_gone_is_marked_unavailable_and_the_rest_runs(tmp_path, tiny_bert_folder, texts_file):
    source = shutil.copytree(tiny_bert_folder, tmp_path / "source")
    artifact = tmp_path / "artifact"
    onnxport.export(source, out=artifact, task="sentence-embedding", verify=False)
    shutil.rmtree(source)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["bench", str(artifact), "--texts", str(texts_file), "--quick", "--batch-sizes",
                                       "1,2", "--threads", "1", "--against", "sentence-transformers", "-o", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    by_name = {c["name"]: c for c in report["contenders"]}
    pytorch = by_name["pytorch"]
    assert not pytorch["available"] and "is gone" in pytorch["reason"] and str(source) in pytorch["reason"]
    assert all(row["texts_per_s"] is None for row in pytorch["throughput"]) and pytorch["cold_start"] is None
    assert not by_name["sentence-transformers"]["available"] and "gone" in by_name["sentence-transformers"]["reason"]
    fp32 = by_name["onnx fp32"]
    assert report["baseline"] == report["reference"] == "onnx fp32"
    assert all(row["texts_per_s"] > 0 and row["speedup"] == 1.0 for row in fp32["throughput"])
    assert fp32["cold_start"]["seconds"] > 0 and fp32["quality"]["is_reference"]
    markdown = (out / "report.md").read_text()
    assert "PyTorch is unavailable" in markdown and "relative to `onnx fp32`" in markdown
    assert "| speed-up vs onnx fp32 |" in markdown
    assert "**pytorch**: the source model" in markdown
    assert "PyTorch unavailable" in result.output
    assert png_size(out / "chart.png") == (1200, 600)


class InterruptedAfter:
    """Raises KeyboardInterrupt (what Ctrl-C does) on its nth timed pass."""

    def __init__(self, runner, calls: int) -> None:
        self.runner, self.calls = runner, calls

    def run(self, texts, batch_size):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt
        return self.runner.run(texts, batch_size)

    def outputs(self, texts):
        return self.runner.outputs(texts)


def test_ctrl_c_keeps_what_was_measured(tiny_artifact, texts, tmp_path):
    from onnxport import Artifact

    art = Artifact(tiny_artifact)
    fp32 = bench.onnx_contender(art, "fp32", threads=1)
    # 2 warm-up passes (one per batch size), then 2 timed passes: interrupted in the second repeat.
    breaker = dataclasses.replace(fp32, name="breaker", load=lambda: InterruptedAfter(fp32.load(), 4),
                                  program=None)
    report = bench.measure(art, texts=texts, settings=FAST, extra_contenders=[breaker])
    assert report["partial"] is True and report["interrupted_during"].startswith("throughput breaker")
    by_name = {c["name"]: c for c in report["contenders"]}
    assert [row["runs"] for row in by_name["onnx fp32"]["throughput"]] == [2, 2]
    assert [row["runs"] for row in by_name["breaker"]["throughput"]] == [1, 1]
    assert by_name["onnx fp32"]["latency_ms"] is None  # never reached
    assert by_name["onnx fp32"]["quality"]["metrics"]["mean_cosine"] > 0.9999
    written = bench.write_reports(report, tmp_path / "partial")
    assert "**Partial report**" in written["report.md"].read_text()
    assert json.loads(written["report.json"].read_text())["partial"] is True
    assert png_size(written["chart.png"]) == (1200, 600)


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "does not exist"),
    (["{artifact}", "--batch-sizes", "0,8"], "batch sizes must be 1 or more"),
    (["{artifact}", "--batch-sizes", "1,eight"], "whole numbers"),
    (["{artifact}", "--texts", "{missing}"], "does not exist"),
    (["{artifact}", "-o", "{file}"], "is a file"),
    (["{artifact}", "--against", "optimum"], "Invalid value for '--against'"),
    (["{artifact}", "--threads", "0"], "Invalid value for '--threads'"),
])
def test_bad_input_is_a_clear_error(tiny_artifact, tmp_path, args, message):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    values = {"missing": tmp_path / "nowhere", "artifact": tiny_artifact, "file": a_file}
    args = ["bench"] + [a.format(**values) for a in args] + (["-o", str(tmp_path / "out")] if "-o" not in args else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "report.json").exists()


def test_length_mix_texts_is_reproducible_and_mixed():
    texts = length_mix_texts(200, seed=7)
    assert texts == length_mix_texts(200, seed=7) and texts != length_mix_texts(200, seed=8)
    assert len(texts) == 200
    words = [len(t.split()) for t in texts]
    assert sum(w <= 8 for w in words) >= 50  # queries
    assert sum(w >= 350 for w in words) >= 25  # past a 512-token max length
    assert sorted(words) != words  # shuffled, not sorted by length
