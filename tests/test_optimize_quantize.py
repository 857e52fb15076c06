"""optimize and quantize: fusion counts, the accuracy guard, int8 classifiers, and the CLI.

References: fused-op counts follow from the model's config (one Attention and one BiasGelu per
layer, two SkipLayerNormalization per layer, one EmbedLayerNormalization); quality is measured
against the fp32 graph and labels against PyTorch's own argmax.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport import Artifact
from onnxport.tools.cli import main
from onnxport import optimize
from onnxport import quantize
from onnxport.core.model_files import INT8_FILE
from onnxport.graph.quantizer import quantizable_units
from onnxport.core.sample_texts import builtin_texts

from conftest import save_tiny_model, tiny_bert_config

LAYERS = 2


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def fresh_copy(source, tmp_path, name="artifact"):
    """Every test that writes into an artifact (optimize, quantize) gets its own copy of the
    module's export, so no test sees what another one wrote and each passes run alone."""
    return shutil.copytree(source, tmp_path / name)


@pytest.fixture(scope="module")
def embedding_export(tiny_embedding_artifact):
    assert Artifact(tiny_embedding_artifact).verified()
    return tiny_embedding_artifact  # only ever copied (fresh_copy) before a test writes into it


@pytest.fixture
def embedding_artifact(embedding_export, tmp_path):
    return fresh_copy(embedding_export, tmp_path)


def test_fusion_counts_follow_the_config_and_pooling_does_not_block_them(embedding_artifact):
    name, counts, report = optimize(embedding_artifact, level="fused")
    assert name == "model.opt.onnx"
    # Mean pooling and L2 normalization sit after the encoder in the same graph: every layer
    # still fuses.
    assert counts.get("Attention") == LAYERS
    assert counts.get("SkipLayerNormalization") == 2 * LAYERS
    assert counts.get("BiasGelu") == LAYERS
    assert counts.get("EmbedLayerNormalization") == 1
    assert report.passed, report.to_dict()
    entry = Artifact(embedding_artifact).files["model.opt.onnx"]
    assert entry["fused_ops"] == counts and entry["kind"] == "opt" and entry["verification"]["passed"]


def test_optimized_model_equals_pytorch(embedding_artifact, tiny_bert_folder):
    """Independent of verify(): the fused graph against sentence vectors computed by hand in PyTorch."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    assert not (embedding_artifact / "model.opt.onnx").exists()  # a fresh copy
    optimize(embedding_artifact, level="fused", verify=False)
    texts = ["a short one", "a somewhat longer sentence with more words in it", "東京"]
    got = onnxport.load(embedding_artifact, model="opt").embed(texts)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_folder)
    model = AutoModel.from_pretrained(tiny_bert_folder).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_unknown_level_is_a_clear_error(embedding_artifact):
    result = run_cli("optimize", embedding_artifact, "--level", "turbo")
    assert result.exit_code == 2 and "turbo" in result.output


# ---------------------------------------------------------------- the guard


@pytest.fixture(scope="module")
def sensitive_export(tmp_path_factory, wordpiece_tokenizer):
    """A tiny BERT whose layer 1 feed-forward output is fragile under int8 on purpose.

    One intermediate channel of layer 1 is pushed to ~1000 and its weight in output.dense is
    zeroed, so the float model ignores it; but dynamic int8 quantizes that MatMul's input
    with one scale per tensor, and the outlier leaves no resolution for the other channels.
    output.dense is scaled up so that its contribution dominates the residual sum (at random
    init it is too small for its loss to show).
    """
    import torch
    from transformers import BertModel

    torch.manual_seed(3)
    model = BertModel(tiny_bert_config(num_hidden_layers=3)).eval()
    layer = model.encoder.layer[1]
    with torch.no_grad():
        layer.intermediate.dense.bias[0] = 1000.0
        layer.output.dense.weight.mul_(30.0)
        layer.output.dense.weight[:, 0] = 0.0
    folder = save_tiny_model(tmp_path_factory.mktemp("sensitive"), model, wordpiece_tokenizer)
    out = tmp_path_factory.mktemp("sensitive-art") / "artifact"
    onnxport.export(folder, out=out, task="sentence-embedding", pooling="mean", normalize=True)
    return out


@pytest.fixture
def sensitive_artifact(sensitive_export, tmp_path):
    return fresh_copy(sensitive_export, tmp_path)


def test_unguarded_int8_misses_the_target_on_the_sensitive_model(sensitive_artifact):
    entry = quantize(sensitive_artifact, guard=False, texts=builtin_texts(48))
    assert entry["float_units"] == []
    assert entry["quality"]["mean_cosine"] < 0.995
    assert entry["verification"]["passed"] is False
    assert entry["verification"]["verdict"] == "failed"
    assert not Artifact(sensitive_artifact).verified(INT8_FILE)
    assert Artifact(sensitive_artifact).verdict(INT8_FILE) == "failed"


def test_guard_keeps_the_sabotaged_unit_in_float(sensitive_artifact):
    entry = quantize(sensitive_artifact, texts=builtin_texts(48))
    ranking = list(entry["sensitivity"])
    assert ranking[0] == "layer.1.output", entry["sensitivity"]
    assert "layer.1.output" in entry["float_units"]
    assert entry["quality"]["mean_cosine"] >= 0.995 and entry["quality"]["min_cosine"] >= 0.98
    assert entry["verification"]["passed"] and entry["verification"]["verdict"] == "passed"
    assert entry["quantized_units"] >= 1  # the rest stayed int8
    art = Artifact(sensitive_artifact)
    assert art.verified(INT8_FILE)
    # The file really keeps that unit's MatMul in float, and quantizes others.
    import onnx

    kept = [name for name in quantizable_units(onnx.load(str(art.path / "model.onnx")))["layer.1.output"]]
    assert len(kept) == 1 and kept[0].endswith("/encoder/layer.1/output/dense/MatMul")
    model = onnx.load(str(art.path / INT8_FILE))
    ops = {node.name: node.op_type for node in model.graph.node}
    assert ops.get(kept[0]) == "MatMul"
    assert any(op in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention") for op in ops.values())


def test_int8_quality_is_also_reported_on_texts_the_guard_never_saw(sensitive_artifact):
    """The reference: both files through onnxruntime on the held-out texts, in length-ordered
    batches of 16 (as the guard batches), cosines in numpy."""
    from transformers import AutoTokenizer

    from onnxport.core.sample_texts import held_out_texts

    texts = builtin_texts(48)
    entry = quantize(sensitive_artifact, texts=texts)
    held = entry["held_out_quality"]
    unseen = held_out_texts(48, texts)
    assert held["texts"] == len(unseen) == 48 and not set(unseen) & set(texts)
    tokenizer = AutoTokenizer.from_pretrained(sensitive_artifact)
    lengths = [len(tokenizer(t, truncation=True, max_length=64)["input_ids"]) for t in unseen]
    ordered = [unseen[i] for i in sorted(range(len(unseen)), key=lambda i: lengths[i])]
    import onnxruntime as ort

    sessions = [ort.InferenceSession(str(sensitive_artifact / name), providers=["CPUExecutionProvider"])
                for name in ("model.onnx", INT8_FILE)]
    vectors = [[], []]
    for start in range(0, len(ordered), 16):
        batch = dict(tokenizer(ordered[start:start + 16], padding=True, truncation=True, max_length=64,
                               return_tensors="np"))
        for vector, session in zip(vectors, sessions):
            names = {i.name for i in session.get_inputs()}
            vector.append(session.run(["sentence_embedding"], {k: v.astype(np.int64) for k, v in batch.items()
                                                                 if k in names})[0])
    want, got = (np.concatenate(v).astype(np.float64) for v in vectors)
    cosines = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert held["mean_cosine"] == pytest.approx(cosines.mean(), abs=1e-6)
    assert held["min_cosine"] == pytest.approx(cosines.min(), abs=1e-5)
    assert held["passed"] == (cosines.mean() >= 0.995 and cosines.min() >= 0.98 and held["top10_overlap"] >= 0.8)


def test_units_are_grouped_per_layer_and_kind(sensitive_export):
    import onnx

    units = quantizable_units(onnx.load(str(Artifact(sensitive_export).path / "model.onnx")))  # reads only
    for layer in range(3):
        assert len(units[f"layer.{layer}.attention"]) == 3  # query, key, value
        for kind in ("attention-output", "intermediate", "output"):
            assert len(units[f"layer.{layer}.{kind}"]) == 1


# ---------------------------------------------------------------- int8 classifier


def _run_graph(model, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})


def test_spliced_candidates_equal_the_quantizer_run_with_those_nodes_excluded(sensitive_export, tmp_path):
    """In dynamic mode the guard builds candidates by putting units back in float in one
    quantized graph; the reference is onnxruntime's quantizer itself, run with those nodes in
    nodes_to_exclude. (Static QDQ files also round a float node's output, so static candidates
    come from the quantizer.)"""
    mode = "dynamic"
    import onnx

    from onnxport.graph.int8_units import keep_float
    from onnxport.graph.quantizer import QuantConfig, _run_quantizer
    from onnxport.runtime.tokenization import TextEncoder

    art = Artifact(sensitive_export)
    source = art.path / "model.onnx"
    original = onnx.load(str(source))
    units = quantizable_units(original)
    encoder = TextEncoder.for_artifact(art)
    texts = builtin_texts(24)
    config = QuantConfig.for_isa("avx2")
    everything, excluded = tmp_path / "all.onnx", tmp_path / "excluded.onnx"
    _run_quantizer(source, everything, mode, config, [], encoder, texts)
    kept = units["layer.1.output"] + units["layer.0.attention"]
    _run_quantizer(source, excluded, mode, config, kept, encoder, texts)
    spliced = keep_float(onnx.load(str(everything)), original, kept)
    onnx.checker.check_model(spliced)
    ops = {node.name: node.op_type for node in spliced.graph.node}
    assert all(ops.get(name) == "MatMul" for name in kept)  # the originals, back in float
    feeds = encoder.encode(texts)
    want = _run_graph(onnx.load(str(excluded)), feeds)
    got = _run_graph(spliced, feeds)
    all_int8 = _run_graph(onnx.load(str(everything)), feeds)
    assert np.abs(got[0] - all_int8[0]).max() > 1e-3  # the splice changed something that matters
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    # Nothing left that only the float units used: no larger than the quantizer's own file.
    assert spliced.ByteSize() <= onnx.load(str(excluded)).ByteSize() * 1.01


def test_switch_graph_mixes_float_and_int8_per_unit(sensitive_export, tmp_path):
    """All switches 0 is the fp32 model, all 1 the int8 file, one switch that unit alone in int8
    (the reference: the quantizer run with every other unit excluded)."""
    import onnx

    from onnxport.graph.int8_units import switch_graph
    from onnxport.graph.quantizer import QuantConfig, _run_quantizer
    from onnxport.runtime.tokenization import TextEncoder

    art = Artifact(sensitive_export)
    source = art.path / "model.onnx"
    original = onnx.load(str(source))
    units = quantizable_units(original)
    encoder = TextEncoder.for_artifact(art)
    config = QuantConfig.for_isa("avx2")
    everything, alone = tmp_path / "all.onnx", tmp_path / "alone.onnx"
    _run_quantizer(source, everything, "dynamic", config, [], encoder, [])
    others = [n for unit, names in units.items() if unit != "layer.1.output" for n in names]
    _run_quantizer(source, alone, "dynamic", config, others, encoder, [])
    mixed, switches = switch_graph(onnx.load(str(everything)), original, units)
    assert sorted(switches) == sorted(units)
    feeds = encoder.encode(builtin_texts(24))
    off = {switch: np.zeros((), np.float32) for switch in switches.values()}
    on = {switch: np.ones((), np.float32) for switch in switches.values()}
    one = {**off, switches["layer.1.output"]: np.ones((), np.float32)}
    np.testing.assert_allclose(_run_graph(mixed, {**feeds, **off})[0], _run_graph(original, feeds)[0], atol=1e-5)
    np.testing.assert_allclose(_run_graph(mixed, {**feeds, **on})[0],
                               _run_graph(onnx.load(str(everything)), feeds)[0], atol=1e-5)
    np.testing.assert_allclose(_run_graph(mixed, {**feeds, **one})[0],
                               _run_graph(onnx.load(str(alone)), feeds)[0], atol=1e-5)


@pytest.fixture(scope="module")
def classifier_export(tmp_path_factory, tiny_sequence_classifier_folder):
    folder = tiny_sequence_classifier_folder
    out = tmp_path_factory.mktemp("cls-art") / "artifact"
    result = run_cli("export", "--model", folder, "-o", out, "--quantize")
    assert result.exit_code == 0, result.output
    return folder, out


@pytest.fixture
def classifier_artifact(classifier_export, tmp_path):
    folder, out = classifier_export
    return folder, fresh_copy(out, tmp_path)


def test_export_quantize_writes_verified_opt_and_int8(classifier_artifact):
    _, out = classifier_artifact
    art = Artifact(out)
    for name in ("model.onnx", "model.opt.onnx", INT8_FILE):
        assert art.verified(name), name
    assert art.files[INT8_FILE]["source_file"] == "model.opt.onnx"
    assert onnxport.load(out).model_file == INT8_FILE  # auto picks the verified int8 file


def test_int8_classifier_keeps_pytorch_labels(classifier_artifact):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, out = classifier_artifact
    texts = builtin_texts(120)
    got = onnxport.load(out, model="int8").classify(texts)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits
    expected = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    agreement = np.mean([g[0]["label"] == e for g, e in zip(got, expected)])
    assert agreement >= 0.99, agreement


# ---------------------------------------------------------------- CLI mistakes leave the artifact alone


def test_quantizing_an_int8_file_is_refused_and_nothing_changes(classifier_artifact):
    _, out = classifier_artifact
    before = (out / INT8_FILE).read_bytes(), (out / "onnxport.json").read_text()
    result = run_cli("quantize", out, "--input-file", INT8_FILE)
    assert result.exit_code == 2
    assert "already quantized" in result.output and "Traceback" not in result.output
    assert ((out / INT8_FILE).read_bytes(), (out / "onnxport.json").read_text()) == before


def test_empty_calibration_file_is_refused_and_nothing_changes(classifier_artifact, tmp_path):
    _, out = classifier_artifact
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    before = (out / INT8_FILE).read_bytes()
    result = run_cli("quantize", out, "--mode", "static", "--texts", empty)
    assert result.exit_code == 2 and "empty" in result.output
    assert (out / INT8_FILE).read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no scratch left behind


def test_unknown_target_metric_is_a_usage_error(classifier_artifact):
    _, out = classifier_artifact
    result = run_cli("quantize", out, "--target", "accuracy=0.9")
    assert result.exit_code == 2 and "mean_cosine" in result.output


# Targets whose outcome is known whatever the int8 file's quality: every cosine is at least
# -1 and every overlap at least 0, so LENIENT always holds; no cosine exceeds 1, so
# UNREACHABLE never does (and --no-guard keeps the guard from trying every unit first).
LENIENT = ["--target", "mean_cosine=-1", "--target", "min_cosine=-1", "--target", "top10_overlap=0"]
UNREACHABLE = ["--target", "mean_cosine=1.01", "--no-guard"]


@pytest.mark.parametrize(("targets", "code", "verdict"), [(LENIENT, 0, "passed"), (UNREACHABLE, 1, "failed")],
                         ids=["lenient-passes", "unreachable-fails"])
def test_static_quantization_cli_reports_quality(embedding_artifact, tmp_path, targets, code, verdict):
    texts = tmp_path / "calibration.txt"
    texts.write_text("\n".join(builtin_texts(40)) + "\n")
    result = run_cli("quantize", embedding_artifact, "--mode", "static", "--texts", texts, *targets)
    assert result.exit_code == code, result.output
    entry = Artifact(embedding_artifact).files[INT8_FILE]
    assert entry["mode"] == "static"
    assert entry["source_file"] == "model.onnx"  # a fresh copy: no model.opt.onnx to start from
    report = entry["verification"]
    assert report["verdict"] == verdict and report["passed"] is (verdict == "passed")
    assert report["mode"] == "quality" and report["reference"].startswith("fp32 model.onnx (verified")
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"cosine to fp32", "top-10 neighbour overlap"}
    if verdict == "failed":
        assert checks["cosine to fp32"]["passed"] is False
        assert checks["cosine to fp32"]["limits"]["mean_cosine"] == 1.01
        assert checks["cosine to fp32"]["measured"]["mean_cosine"] <= 1.0 + 1e-9
        assert entry["float_units"] == []  # --no-guard: everything quantized
    else:
        assert all(c["passed"] for c in report["checks"])
    assert f"mean_cosine={entry['quality']['mean_cosine']:.4f}" in result.output
    # The measured quality is what a fresh comparison against fp32 gives.
    fp32 = onnxport.load(embedding_artifact, model="fp32").embed(builtin_texts(40))
    if verdict == "failed":
        with pytest.warns(UserWarning, match="FAILED verification"):
            int8_pipeline = onnxport.load(embedding_artifact, model="int8")
    else:
        int8_pipeline = onnxport.load(embedding_artifact, model="int8")
    int8 = int8_pipeline.embed(builtin_texts(40))
    cosines = (fp32 * int8).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(int8, axis=1)
    assert abs(cosines.mean() - entry["quality"]["mean_cosine"]) < 1e-3
    assert abs(cosines.mean() - checks["cosine to fp32"]["measured"]["mean_cosine"]) < 1e-3
    assert json.loads((embedding_artifact / "onnxport.json").read_text())["files"][INT8_FILE]["mode"] == "static"


def test_fp16_without_a_gpu_runtime_works_with_a_warning(embedding_artifact):
    before = (embedding_artifact / "model.onnx").read_bytes()
    with pytest.warns(RuntimeWarning, match="meant for GPUs"):
        name, counts, report = optimize(embedding_artifact, level="fp16")
    assert name == "model.fp16.onnx" and counts.get("Attention") == LAYERS
    entry = Artifact(embedding_artifact).files[name]
    assert entry["kind"] == "fp16" and report.to_dict()["mode"] == "quality"
    assert report.passed, report.to_dict()
    assert (embedding_artifact / "model.onnx").read_bytes() == before
    # fp32 inputs and outputs kept, weights in float16.
    import onnx

    model = onnx.load(str(embedding_artifact / name))
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {onnx.TensorProto.FLOAT}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
