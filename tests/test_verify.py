"""`onnxport verify ARTIFACT [--model-file F] [--reference MODEL] [--texts FILE] [--atol X] [--json]`
and `onnxport.verify(...)`.

A correct export must pass; exports broken on purpose (a fixed sequence axis, a pooling
that averages the padding) must fail, on the checks where the defect shows and nowhere
else. Every verdict is cross-checked with an independent computation (onnxruntime and
PyTorch run directly here, numpy for the metrics).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.core.artifact import Artifact, write_manifest
from onnxport.tools.cli import main
from onnxport.errors import ArtifactError
from onnxport import Pooling

ATOL = 1e-4

# Texts whose token counts are all different (each is the previous one plus a word), so
# every batch of two or more of them is padded.
GROWING_TEXTS = [" ".join("the cat sat on a mat while my old dog slept by warm fire".split()[:n])
                 for n in range(1, 15)]


# ---------------------------------------------------------------- helpers


def run_cli(*args):
    # A wide console: rich must not wrap table cells or the error line.
    return CliRunner(env={"COLUMNS": "500"}).invoke(main, [str(a) for a in args])


def run_verify_json(*args) -> tuple[int, dict]:
    result = run_cli("verify", *args, "--json")
    assert result.exit_code in (0, 1), (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit) or result.exception is None, repr(result.exception)
    return result.exit_code, json.loads(result.stdout)


def assert_clean_user_error(result, *must_mention: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines[0]
    for text in must_mention:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def batch_size(check: dict) -> int | None:
    """b<N> in a check name, e.g. 'pytorch parity b7' -> 7."""
    match = re.search(r"\bb(\d+)$", check["name"])
    return int(match.group(1)) if match else None


def recorded(path: Path, model_file: str = "model.onnx"):
    return Artifact(path).manifest["files"][model_file]["verification"]


def ort_session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def hf_batch(tokenizer, texts, max_length=64) -> dict[str, np.ndarray]:
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np",
                        return_token_type_ids=True)
    return {k: encoded[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def feed_for(session, arrays):
    return {i.name: arrays[i.name] for i in session.get_inputs()}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_export(tiny_bert_folder, tmp_path_factory) -> Path:
    """A normal (dynamic axes) feature-extraction export of the tiny BERT, not yet verified."""
    out = tmp_path_factory.mktemp("tiny-dynamic") / "artifact"
    onnxport.export(tiny_bert_folder, out=out, verify=False)
    return out


@pytest.fixture
def tiny_artifact(tiny_export, tmp_path) -> Path:
    target = tmp_path / "artifact"
    shutil.copytree(tiny_export, target)
    return target


@pytest.fixture(scope="module")
def mask_ignoring_export(tiny_bert_folder, tmp_path_factory) -> Path:
    """A sentence-embedding export whose 'mean' pooling averaged every position, padding included."""
    import onnxport.convert.wrapper as wrap

    def unmasked_mean(tokens, mask):
        return tokens.mean(dim=1)

    out = tmp_path_factory.mktemp("tiny-mask-ignoring") / "artifact"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(wrap.POOLERS, Pooling.MEAN, unmasked_mean)
        onnxport.export(tiny_bert_folder, out=out, task="sentence-embedding", pooling="mean", verify=False)
    assert wrap.POOLERS[Pooling.MEAN] is wrap.mean_pool  # undone: the reference pools correctly again
    return out


@pytest.fixture
def mask_ignoring_artifact(mask_ignoring_export, tmp_path) -> Path:
    target = tmp_path / "broken-pooling"
    shutil.copytree(mask_ignoring_export, target)
    return target


# ---------------------------------------------------------------- a correct export passes


def test_correct_export_matches_pytorch_independently(tiny_artifact, tiny_bert_folder, wordpiece_tokenizer):
    """The reference for the next test: onnxruntime and PyTorch agree on a padded batch."""
    import torch
    from transformers import BertModel

    arrays = hf_batch(wordpiece_tokenizer, ["hi", "The quick brown fox jumps over the lazy dog."])
    session = ort_session(tiny_artifact / "model.onnx")
    hidden, pooled = session.run(["last_hidden_state", "pooler_output"], feed_for(session, arrays))
    model = BertModel.from_pretrained(tiny_bert_folder).eval()
    with torch.no_grad():
        expected = model(**{k: torch.as_tensor(v) for k, v in arrays.items()})
    np.testing.assert_allclose(hidden, expected.last_hidden_state.numpy(), atol=ATOL)
    np.testing.assert_allclose(pooled, expected.pooler_output.numpy(), atol=ATOL)


def test_correct_export_passes_and_is_recorded(tiny_artifact):
    assert recorded(tiny_artifact) is None  # exported with verify=False

    code, report = run_verify_json(tiny_artifact)
    assert code == 0
    assert report["passed"] is True
    assert report["mode"] == "atol"
    assert report["model_file"] == "model.onnx"
    assert report["checks"] and all(check["passed"] for check in report["checks"])
    for check in report["checks"]:
        assert check["measured"]["max_abs_diff"] <= ATOL
        assert check["limits"]["max_abs_diff"] == ATOL
    outputs = {check["output"] for check in report["checks"]}
    assert outputs == {"last_hidden_state", "pooler_output"}
    names = {check["name"] for check in report["checks"]}
    assert {"pytorch parity b1", "pytorch parity b16", "padding invariance b16"} <= names
    assert any(shape[0] > 1 for shape in report["shapes"])  # padded batches were part of it

    # The manifest holds the very same report.
    assert recorded(tiny_artifact) == report
    assert Artifact(tiny_artifact).verified()

    # The Python API agrees.
    api = onnxport.verify(tiny_artifact, record=False)
    assert api.passed is True
    assert [c.name for c in api.checks] == [c["name"] for c in report["checks"]]


# ---------------------------------------------------------------- broken: fixed sequence axis


@pytest.fixture
def fixed_axis_artifact(tiny_bert_folder, tiny_artifact, tmp_path) -> Path:
    static = tmp_path / "static"
    onnxport.export(tiny_bert_folder, out=static, static_shape=(2, 16), verify=False)
    shutil.copy(static / "model.onnx", tiny_artifact / "model.onnx")
    # The manifest still claims dynamic axes.
    assert Artifact(tiny_artifact).inputs[0].dims == ("batch", "sequence")
    assert Artifact(tiny_artifact).spec.static_shape is None
    return tiny_artifact


def test_fixed_axis_graph_fails(fixed_axis_artifact):
    result = run_cli("verify", fixed_axis_artifact)
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "runs at shape" in result.stdout and "FAIL" in result.stdout
    assert "FAILED" in result.stdout

    code, report = run_verify_json(fixed_axis_artifact)
    assert code == 1
    assert report["passed"] is False
    failing = [c for c in report["checks"] if not c["passed"]]
    assert failing and any(c["name"].startswith("runs at shape") for c in failing)

    # Independent oracle: a shape fails to run iff onnxruntime refuses it on the swapped graph.
    session = ort_session(fixed_axis_artifact / "model.onnx")
    for shape in report["shapes"]:
        arrays = {name: np.ones(shape, dtype=np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
        try:
            session.run(None, feed_for(session, arrays))
            refused = False
        except Exception:
            refused = True
        label = f"runs at shape {shape[0]}x{shape[1]}"
        matching = [c for c in report["checks"] if c["name"] == label]
        assert bool(matching) == refused, (shape, refused, [c["name"] for c in report["checks"]])
        for check in matching:
            assert check["passed"] is False and check["shape"] == shape
    assert any(shape != [2, 16] for shape in report["shapes"])
    assert recorded(fixed_axis_artifact)["passed"] is False


def test_fixed_axis_graph_fails_even_when_one_batch_fits_the_fixed_shape(fixed_axis_artifact, tmp_path,
                                                                          wordpiece_tokenizer):
    """The two shortest texts pad to exactly 2x16, so that batch runs; the others must still
    be reported as failing checks (exit 1), not crash the verifier."""
    base = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen".split()
    texts = [" ".join(base[:14]), " ".join(base[:13]), " ".join(base) + " fifteen", " ".join(base) + " and more"]
    lengths = [len(wordpiece_tokenizer(t)["input_ids"]) for t in texts]
    assert sorted(lengths)[1] == 16 and sorted(lengths)[2] > 16, lengths
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts) + "\n")

    result = run_cli("verify", fixed_axis_artifact, "--texts", path, "--json")
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    report = json.loads(result.stdout)
    assert [2, 16] in report["shapes"]
    assert any(c["name"].startswith("runs at shape") and not c["passed"] for c in report["checks"])


# ---------------------------------------------------------------- broken: pooling that ignores the mask


def test_mask_ignoring_graph_really_averages_padding(mask_ignoring_artifact, wordpiece_tokenizer):
    """The defect is in the graph: its embedding is the plain mean over all positions."""
    arrays = hf_batch(wordpiece_tokenizer, ["hi", "The quick brown fox jumps over the lazy dog."])
    session = ort_session(mask_ignoring_artifact / "model.onnx")
    embedding, tokens = session.run(["sentence_embedding", "token_embeddings"], feed_for(session, arrays))
    np.testing.assert_allclose(embedding, tokens.mean(axis=1), atol=1e-5)
    mask = arrays["attention_mask"][..., None].astype(np.float32)
    masked_mean = (tokens * mask).sum(1) / mask.sum(1)
    assert np.abs(embedding[0] - masked_mean[0]).max() > 100 * ATOL  # the padded row is wrong
    np.testing.assert_allclose(embedding[1], masked_mean[1], atol=1e-5)  # the unpadded row is right


def test_mask_ignoring_pooling_fails_on_padded_batches_only(mask_ignoring_artifact):
    result = run_cli("verify", mask_ignoring_artifact)
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert "FAIL" in result.stdout

    code, report = run_verify_json(mask_ignoring_artifact)
    assert code == 1 and report["passed"] is False
    failing = [c for c in report["checks"] if not c["passed"]]
    assert failing
    for check in failing:
        assert batch_size(check) is not None and batch_size(check) > 1, check["name"]
        assert check["output"] == "sentence_embedding", check
        assert check["measured"]["max_abs_diff"] > ATOL
    single = [c for c in report["checks"] if batch_size(c) == 1]
    assert single and all(c["passed"] for c in single)
    # token vectors are untouched by the pooling: they match everywhere.
    assert all(c["passed"] for c in report["checks"] if c["output"] == "token_embeddings")
    # The mixed short/long batches are heavily padded: parity and padding invariance fail there.
    failing_names = {c["name"] for c in failing}
    assert {"pytorch parity b7", "pytorch parity b16", "padding invariance b7", "padding invariance b16"} \
        <= failing_names
    assert recorded(mask_ignoring_artifact)["passed"] is False


def test_mask_ignoring_pooling_python_api(mask_ignoring_artifact):
    report = onnxport.verify(mask_ignoring_artifact, texts=GROWING_TEXTS)  # must not raise
    assert report.passed is False
    assert report.texts == len(GROWING_TEXTS)
    sentence = [c for c in report.checks if c.output == "sentence_embedding"]
    assert sentence
    for check in sentence:
        size = batch_size(check.to_dict())
        # Every multi-text batch of GROWING_TEXTS is padded, every single text is not.
        assert check.passed is (size == 1), (check.name, check.measured)
    assert all(c.passed for c in report.checks if c.output == "token_embeddings")
    assert recorded(mask_ignoring_artifact)["passed"] is False


# ---------------------------------------------------------------- --json equals the table


def test_json_numbers_equal_the_table(tiny_artifact):
    code, report = run_verify_json(tiny_artifact)
    assert code == 0
    assert recorded(tiny_artifact) == report

    result = run_cli("verify", tiny_artifact)
    assert result.exit_code == 0
    table_report = recorded(tiny_artifact)  # what the table run computed
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == len(report["checks"]) == len(table_report["checks"])
    for row, check, shown in zip(rows, report["checks"], table_report["checks"]):
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[0] == check["name"] == shown["name"]
        assert cells[1] == check["output"]
        for key in ("max_abs_diff", "mean_abs_diff", "min_cosine"):
            if key in check["measured"]:
                assert f"{key}={check['measured'][key]:.3g}" in cells[2], (key, check, row)
                assert f"{key}={shown['measured'][key]:.3g}" in cells[2]
        assert cells[4] == ("ok" if check["passed"] else "FAIL")
    assert "PASSED" in result.stdout and "FAIL" not in result.stdout


def test_json_numbers_equal_the_table_for_a_failing_report(mask_ignoring_artifact):
    code, report = run_verify_json(mask_ignoring_artifact)
    result = run_cli("verify", mask_ignoring_artifact)
    assert code == result.exit_code == 1
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == len(report["checks"])
    for row, check in zip(rows, report["checks"]):
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells[0] == check["name"] and cells[1] == check["output"]
        assert f"max_abs_diff={check['measured']['max_abs_diff']:.3g}" in cells[2]
        assert cells[4] == ("ok" if check["passed"] else "FAIL")
    failed = sum(not c["passed"] for c in report["checks"])
    assert f"FAILED: {failed} of {len(report['checks'])} checks" in result.stdout


# ---------------------------------------------------------------- --texts FILE


def _token_lengths(tokenizer, texts):
    return [len(tokenizer(t, truncation=True, max_length=64)["input_ids"]) for t in texts]


def test_texts_file_one_per_line(tiny_artifact, tmp_path, wordpiece_tokenizer):
    texts = ["Buses to Goa", "a", "A considerably longer sentence about trains, buses and ferries to Chennai.",
             "naïve café", "x y z", "What is the capital of France?", "42", "hello world", "final line"]
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    code, report = run_verify_json(tiny_artifact, "--texts", path)
    assert code == 0 and report["passed"] is True
    assert report["texts"] == len(texts)
    lengths = _token_lengths(wordpiece_tokenizer, texts)
    # The longest batch is as long as the longest of *these* texts, and the shortest
    # text alone is as short as the shortest of them (the built-in texts go to 64).
    assert max(shape[1] for shape in report["shapes"]) == max(lengths)
    assert min(shape[1] for shape in report["shapes"]) == min(lengths)
    assert recorded(tiny_artifact)["texts"] == len(texts)


def test_texts_file_jsonl(tiny_artifact, tmp_path, wordpiece_tokenizer):
    texts = ["first record", "the second record is a bit longer than the first",
             "third", "fourth: with punctuation!?", "fifth and last record"]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    code, report = run_verify_json(tiny_artifact, "--texts", path)
    assert code == 0 and report["passed"] is True
    assert report["texts"] == len(texts)
    lengths = _token_lengths(wordpiece_tokenizer, texts)
    assert max(shape[1] for shape in report["shapes"]) == max(lengths)
    assert min(shape[1] for shape in report["shapes"]) == min(lengths)


def test_atol_option_is_the_limit(tiny_artifact, tiny_bert_folder, wordpiece_tokenizer):
    """At --atol 1e-12 a float32 graph cannot match PyTorch: their kernels round differently.
    The independent oracle: onnxruntime and PyTorch run directly differ by more than 1e-12
    (and still by less than the default 1e-4)."""
    import torch
    from transformers import BertModel

    arrays = hf_batch(wordpiece_tokenizer, ["hi", "The quick brown fox jumps over the lazy dog."])
    session = ort_session(tiny_artifact / "model.onnx")
    (hidden,) = session.run(["last_hidden_state"], feed_for(session, arrays))
    model = BertModel.from_pretrained(tiny_bert_folder).eval()
    with torch.no_grad():
        expected = model(**{k: torch.as_tensor(v) for k, v in arrays.items()}).last_hidden_state.numpy()
    independent = float(np.abs(hidden.astype(np.float64) - expected.astype(np.float64)).max())
    assert 1e-12 < independent <= ATOL, independent

    code, report = run_verify_json(tiny_artifact, "--atol", "1e-12")
    assert code == 1
    assert report["verdict"] == "failed" and report["passed"] is False
    assert report["reference"].startswith("pytorch"), report["reference"]
    assert all(c["limits"]["max_abs_diff"] == 1e-12 for c in report["checks"])
    # Each check's own verdict follows its measured number and the limit.
    for check in report["checks"]:
        assert check["passed"] is (check["measured"]["max_abs_diff"] <= 1e-12), check
    failing = [c for c in report["checks"] if not c["passed"]]
    parity = [c for c in failing if c["name"].startswith("pytorch parity")]
    assert parity, [c["name"] for c in report["checks"]]
    assert all(1e-12 < c["measured"]["max_abs_diff"] <= ATOL for c in parity), parity
    assert recorded(tiny_artifact)["verdict"] == "failed"

    table = run_cli("verify", tiny_artifact, "--atol", "1e-12")
    assert table.exit_code == 1, (table.output, table.exception)
    shown = recorded(tiny_artifact)  # what the table run computed
    assert shown["verdict"] == "failed"
    shown_failed = sum(not c["passed"] for c in shown["checks"])
    assert shown_failed >= 1
    assert f"FAILED: {shown_failed} of {len(shown['checks'])} checks" in table.stdout


# ---------------------------------------------------------------- quality mode (int8)

# The first 48 built-in texts (3 batches of 16): short words, many scripts, and two
# paragraphs far past the 256-token limit. JSONL, since one of them holds newlines.
QUALITY_TEXT_COUNT = 48


@pytest.fixture(scope="module")
def int8_setup(minilm_artifact, minilm_path, tmp_path_factory):
    """A copy of the MiniLM artifact with a registered model.int8.onnx, the texts file, and
    the metrics computed independently: both files through onnxruntime on the same texts,
    in the same length-ordered batches of 16 padded to their longest text (int8 activations are quantized
    per batch), then cosine and top-10 neighbours in numpy."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoTokenizer

    from onnxport.core.sample_texts import builtin_texts

    root = tmp_path_factory.mktemp("int8")
    source = root / "source"
    shutil.copytree(minilm_artifact, source)
    quantize_dynamic(str(source / "model.onnx"), str(source / "model.int8.onnx"), per_channel=True,
                     weight_type=QuantType.QInt8)
    art = Artifact(source)
    art.files["model.int8.onnx"] = {"kind": "int8"}
    write_manifest(art.path, art.manifest)

    texts = builtin_texts()[:QUALITY_TEXT_COUNT]
    texts_file = root / "texts.jsonl"
    texts_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    fp32, int8 = ort_session(source / "model.onnx"), ort_session(source / "model.int8.onnx")
    # Batches of 16 in length order, as onnxport's verification and pipelines batch: dynamic
    # int8 gives each batch's activations one scale, so its result depends on batch-mates.
    lengths = [len(tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in texts]
    ordered = [texts[i] for i in sorted(range(len(texts)), key=lambda i: lengths[i])]
    a, b = [], []
    for start in range(0, len(ordered), 16):
        arrays = hf_batch(tokenizer, ordered[start:start + 16], max_length=256)
        a.append(int8.run(["sentence_embedding"], feed_for(int8, arrays))[0])
        b.append(fp32.run(["sentence_embedding"], feed_for(fp32, arrays))[0])
    a, b = np.concatenate(a).astype(np.float64), np.concatenate(b).astype(np.float64)
    cosines = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    def top10(x):
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        similarity = unit @ unit.T
        np.fill_diagonal(similarity, -np.inf)
        return [set(np.argsort(-row)[:10]) for row in similarity]

    overlap = float(np.mean([len(x & y) / 10 for x, y in zip(top10(a), top10(b))]))
    expected = {"mean_cosine": float(cosines.mean()), "min_cosine": float(cosines.min()), "top10_overlap": overlap}
    return source, texts, texts_file, expected


@pytest.fixture
def int8_artifact(int8_setup, tmp_path) -> Path:
    target = tmp_path / "minilm"
    shutil.copytree(int8_setup[0], target)
    return target


def _check_quality_report(report: dict, texts, expected) -> None:
    assert report["mode"] == "quality"
    assert report["model_file"] == "model.int8.onnx"
    assert report["texts"] == len(texts)
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"cosine to fp32", "top-10 neighbour overlap"}
    cosine = checks["cosine to fp32"]["measured"]
    assert 0.9 < cosine["mean_cosine"] < 1.0
    assert cosine["mean_cosine"] == pytest.approx(expected["mean_cosine"], abs=1e-6)
    assert cosine["min_cosine"] == pytest.approx(expected["min_cosine"], abs=1e-5)
    overlap = checks["top-10 neighbour overlap"]["measured"]["top10_overlap"]
    assert overlap == pytest.approx(expected["top10_overlap"], abs=1 / (10 * len(texts)) + 1e-9)
    # Verdicts follow the documented limits (mean >= 0.995, min >= 0.98, overlap >= 0.8).
    assert checks["cosine to fp32"]["passed"] == (expected["mean_cosine"] >= 0.995 and expected["min_cosine"] >= 0.98)
    assert checks["top-10 neighbour overlap"]["passed"] == (expected["top10_overlap"] >= 0.8)
    assert report["passed"] == all(c["passed"] for c in report["checks"])


def test_int8_quality_mode_python_api(int8_artifact, int8_setup):
    _, texts, _, expected = int8_setup
    report = onnxport.verify(int8_artifact, model_file="model.int8.onnx", texts=texts, record=False)
    data = report.to_dict()
    _check_quality_report(data, texts, expected)
    assert report.passed is data["passed"]
    # A report is plain data: verdicts are Python bools and it serializes to JSON (it goes
    # into the manifest and out through --json).
    assert [type(c["passed"]) for c in data["checks"]] == [bool] * len(data["checks"])
    json.dumps(data)


def test_int8_quality_mode_cli(int8_artifact, int8_setup):
    _, texts, texts_file, expected = int8_setup
    code, report = run_verify_json(int8_artifact, "--model-file", "model.int8.onnx", "--texts", texts_file)
    _check_quality_report(report, texts, expected)
    assert code == (0 if report["passed"] else 1)
    assert recorded(int8_artifact, "model.int8.onnx") == report
    assert Artifact(int8_artifact).files["model.int8.onnx"]["kind"] == "int8"
    assert recorded(int8_artifact) is not None  # the fp32 file's own report is kept
    assert not list(int8_artifact.glob(".onnxport.*"))  # no half-written manifest left behind


# ---------------------------------------------------------------- bad input


def test_artifact_that_does_not_exist(tmp_path):
    missing = tmp_path / "no-such-artifact"
    assert_clean_user_error(run_cli("verify", missing), "does not exist")
    assert_clean_user_error(run_cli("verify", missing, "--json"), "does not exist")
    with pytest.raises(ArtifactError):
        onnxport.verify(missing)


def test_artifact_without_manifest(tiny_artifact):
    (tiny_artifact / "onnxport.json").unlink()
    assert_clean_user_error(run_cli("verify", tiny_artifact), "onnxport.json")
    with pytest.raises(ArtifactError):
        onnxport.verify(tiny_artifact)


@pytest.mark.parametrize("content", ["{not json", "", '{"files": {}}'])
def test_artifact_with_corrupt_manifest(tiny_artifact, content):
    (tiny_artifact / "onnxport.json").write_text(content)
    assert_clean_user_error(run_cli("verify", tiny_artifact), "onnxport.json")
    assert_clean_user_error(run_cli("verify", tiny_artifact, "--json"), "onnxport.json")
    with pytest.raises(ArtifactError):
        onnxport.verify(tiny_artifact)


def test_missing_texts_file(tiny_artifact, tmp_path):
    assert_clean_user_error(run_cli("verify", tiny_artifact, "--texts", tmp_path / "nope.txt"), "nope.txt")
