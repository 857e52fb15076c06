"""int8 quantization, accuracy-guarded (file -> file).

Dynamic (weights int8 per channel, activations quantized on the fly) or static (activations
calibrated on texts, QDQ format). The configuration follows the CPU it runs on: on AVX2 and
AVX-512 without VNNI, u8s8 products can saturate, so weights use reduce_range; VNNI and
arm64 do not need it. The guard measures quality against the fp32 model and keeps the most
sensitive parts in float until the targets hold: units ranked in one session and candidates
built without re-running the quantizer (`int8_units`), the fewest float units found by a
doubling-then-halving search.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import tempfile
import time
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from ..checks.parity import verify as run_verify
from ..checks.quality import QUALITY_DEFAULTS, judged_batches, judged_inputs, quality_checks, quality_inputs
from ..checks.speed import relative_speed
from ..core.arguments import choice, string_list, text_list
from ..core.arguments import limits as limits_arg
from ..core.artifact import Artifact, write_manifest
from ..core.files import file_facts
from ..core.model_files import INT8_FILE, MODEL_FILE, OPT_FILE
from ..core.cpus import cpu_name, detect_isa
from ..core.sample_texts import builtin_texts, held_out_texts
from ..core.spec import Task
from ..errors import InputError
from ..runtime.session import OnnxModel
from ..runtime.tokenization import TextEncoder
from .int8_units import keep_float, switch_graph
from .onnx_files import check_fits_artifact, load_onnx, save_onnx
from .tags import carry_over_file, nodes_matching_modules

ISAS = ("avx512_vnni", "avx512", "avx2", "arm64", "generic")
QUANTIZED_OPS = {"DynamicQuantizeLinear", "QuantizeLinear", "MatMulInteger", "QAttention", "QLinearMatMul",
                 "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm"}
_LAYER = re.compile(r"layers?[./_](\d+)")


@dataclasses.dataclass(frozen=True)
class QuantConfig:
    isa: str
    per_channel: bool = True
    reduce_range: bool = False

    @classmethod
    def for_isa(cls, isa: str) -> "QuantConfig":
        choice(isa, "ISA", ISAS)
        # onnxruntime's guidance: u8s8 may saturate on AVX2/AVX-512 without VNNI; reduce_range avoids it.
        return cls(isa=isa, per_channel=True, reduce_range=isa in ("avx2", "avx512", "generic"))


def quantizable_units(model, num_layers: int | None = None) -> dict[str, list[str]]:
    """Group the nodes int8 would touch (MatMul with constant weights, Attention, Gemm) into
    units a person recognises: 'layer.3.attention', 'layer.3.intermediate', ..., 'other:NAME'."""
    initializers = {t.name for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def layer_of(node) -> str | None:
        match = _LAYER.search(node.name)
        if match:
            return match.group(1)
        # Fused nodes (Attention_3) lose the module path: take it from what consumes them.
        for output in node.output:
            for consumer in consumers.get(output, []):
                match = _LAYER.search(consumer.name)
                if match:
                    return match.group(1)
        return None

    units: dict[str, list[str]] = {}
    for node in model.graph.node:
        weighted = node.op_type == "Attention" or (
            node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in initializers)
        if not weighted:
            continue
        layer = layer_of(node)
        name = node.name.lower()
        if node.op_type == "Attention" or re.search(r"(query|key|value|q_proj|k_proj|v_proj|q_lin|k_lin|v_lin)", name):
            kind = "attention"
        elif "attention" in name or "out_lin" in name:
            kind = "attention-output"
        elif "intermediate" in name or "lin1" in name or "ffn" in name and "lin1" in name:
            kind = "intermediate"
        elif "output" in name or "lin2" in name:
            kind = "output"
        else:
            kind = None
        key = f"layer.{layer}.{kind}" if layer is not None and kind else f"other:{node.name}"
        units.setdefault(key, []).append(node.name)
    return units


class _Calibration:
    """onnxruntime CalibrationDataReader over texts."""

    def __init__(self, model_path: Path, encoder: TextEncoder, inputs: list, batch_size: int = 8):
        runner = OnnxModel(model_path)
        self.feeds = iter([runner.feed(encoder.encode_items(inputs[i:i + batch_size]))
                           for i in range(0, len(inputs), batch_size)])

    def get_next(self):
        return next(self.feeds, None)


def _is_quantized(model) -> bool:
    return any(node.op_type in QUANTIZED_OPS for node in model.graph.node)


def quantize(
    artifact: str | Path | Artifact,
    *,
    mode: str = "dynamic",
    isa: str | None = None,
    texts: Sequence[str] | None = None,
    guard: bool = True,
    targets: dict[str, float] | None = None,
    input_file: str | None = None,
    exclude_nodes: Sequence[str] = (),
    exclude_modules: Sequence[str] = (),
    progress=None,
) -> dict:
    """Write model.int8.onnx into the artifact and return its manifest entry (with the guard report).

    Units whose nodes `exclude_nodes`/`exclude_modules` all keep in float count as float units
    (`excluded_units`) and are not the guard's to try; units they keep only partly in float
    are `partly_float_units`. `progress` gets a line per step: each unit ranked, each attempt."""
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    choice(mode, "mode", ("dynamic", "static"))
    targets = limits_arg(targets, "targets", QUALITY_DEFAULTS) or None
    exclude_modules = string_list(exclude_modules, "exclude_modules")
    exclude_nodes = string_list(exclude_nodes, "exclude_nodes")
    config = QuantConfig.for_isa(isa or detect_isa())
    source_name = input_file or (OPT_FILE if art.verified(OPT_FILE) else MODEL_FILE)
    source_path = art.model_path(source_name)
    model = load_onnx(source_path)
    check_fits_artifact(art, source_name, model)
    if _is_quantized(model):
        raise InputError(f"{source_name} is already quantized; quantize the fp32 {MODEL_FILE} or {OPT_FILE}")
    if exclude_modules:  # module path globs -> the nodes that stay float (hierarchy tags)
        exclude_nodes = list(exclude_nodes) + nodes_matching_modules(model, exclude_modules)
    texts = text_list(texts) if texts is not None else builtin_texts(96)
    if len(texts) < 2:
        raise InputError("quantization needs at least 2 texts to calibrate and measure quality; "
                         "give a file with one text per line")
    limits = {**QUALITY_DEFAULTS, **(targets or {})}
    units = quantizable_units(model)
    user_float = set(exclude_nodes)
    excluded_units = [unit for unit, nodes in units.items() if user_float.issuperset(nodes)]
    candidates = {unit: nodes for unit, nodes in units.items() if unit not in excluded_units}
    encoder = TextEncoder.for_artifact(art)
    evaluator = _QualityProbe(art, encoder, texts, limits)
    # a reranker calibrates on pairs and a question answerer on (question, context), as they run
    calibration_inputs = quality_inputs(art.task, texts, encoder.special_token("mask_token")[0])[0]

    with tempfile.TemporaryDirectory(dir=art.path, prefix=".quantize-") as scratch:
        scratch = Path(scratch)
        say = progress or (lambda message: None)
        started = time.perf_counter()
        say(f"{mode} int8 for {config.isa}: measuring quality on {len(texts)} texts")
        # The quantizer runs once; in dynamic mode the guard's candidates are spliced from its graph.
        everything = scratch / "all-int8.onnx"
        _run_quantizer(source_path, everything, mode, config, list(exclude_nodes), encoder, calibration_inputs)
        quantized = load_onnx(everything)
        built: dict[int, Path] = {0: everything}

        def build(count: int) -> Path:
            """The candidate with the `count` most sensitive units in float."""
            if count not in built:
                built[count] = scratch / f"float-{count}.onnx"
                nodes = [n for unit in ranking[:count] for n in units[unit]]
                if mode == "dynamic":
                    save_onnx(keep_float(quantized, model, nodes), built[count])
                else:  # QDQ also rounds a float unit's output, which only the quantizer knows to skip
                    _run_quantizer(source_path, built[count], mode, config, list(exclude_nodes) + nodes, encoder,
                                   calibration_inputs)
            return built[count]

        def judge(count: int) -> bool:
            checks = evaluator.checks(build(count))
            history.append({"float_units": ranking[:count], "passed": all(c.passed for c in checks),
                            **evaluator.summary(checks)})
            results[count] = history[-1]
            return history[-1]["passed"]

        ranking: list[str] = []
        history: list[dict] = []
        results: dict[int, dict] = {}
        chosen = 0
        sensitivity: dict[str, float] = {}
        if not judge(0) and guard and candidates:
            say(f"below target ({_describe(history[-1])}); ranking {len(candidates)} units by sensitivity")
            sensitivity = evaluator.rank_units(quantized, model, candidates, scratch, say)
            ranking = sorted(sensitivity, key=sensitivity.get, reverse=True)
            chosen = _fewest_float_units(len(ranking), judge, say)
        target = art.path / INT8_FILE
        build(chosen).replace(target)
        excluded = ranking[:chosen]
        history.sort(key=lambda attempt: len(attempt["float_units"]))
        quality = results[chosen]
        seconds = time.perf_counter() - started
        carry_over_file(art, source_name, INT8_FILE)  # quantized nodes keep their PyTorch module tags
    say(f"measuring the speed-up of {INT8_FILE} over {source_name}")
    speedup, timed_seconds = relative_speed(OnnxModel(source_path), OnnxModel(target), encoder, texts)
    float_units = excluded_units + excluded
    kept = user_float | {node for unit in excluded for node in units[unit]}
    partly_float = [unit for unit, nodes in units.items() if unit not in float_units and kept.intersection(nodes)]
    entry = {
        "kind": "int8", "mode": mode, "isa": config.isa, "per_channel": config.per_channel,
        "reduce_range": config.reduce_range, "source_file": source_name, "guard": guard,
        "float_units": float_units, "excluded_units": excluded_units, "partly_float_units": partly_float,
        "float_nodes": list(exclude_nodes), "total_units": len(units),
        "quantized_units": len(units) - len(float_units) - len(partly_float),
        "sensitivity": {k: float(f"{v:.4g}") for k, v in sorted(sensitivity.items(), key=lambda kv: -kv[1])},
        "attempts": history, "quality": quality, "targets": limits, "speedup_vs_source": speedup,
        # quality and speed-up hold for this CPU; `load(model="auto")` reads them with this
        "measured_on": {"cpu": cpu_name(), "isa": detect_isa()}, "speedup_timed_seconds": timed_seconds,
        "seconds": round(seconds, 1), "verification": None, **file_facts([target]),
    }
    held_out = held_out_texts(min(len(texts), 96), texts)  # as many as the guard's, up to 96
    if len(held_out) >= 2:
        say(f"measuring {INT8_FILE} on {len(held_out)} texts the guard never saw")
        probe = _QualityProbe(art, encoder, held_out, limits)
        checks = probe.checks(target)
        entry["held_out_quality"] = {"texts": len(held_out), "passed": all(c.passed for c in checks),
                                     **probe.summary(checks)}
    art.files[INT8_FILE] = entry
    write_manifest(art.path, art.manifest)
    report = run_verify(art, model_file=INT8_FILE, texts=texts, thresholds=targets, record=True, progress=progress)
    entry["verification"] = report.to_dict()
    return entry


def _describe(attempt: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in attempt.items() if isinstance(v, float))


def _run_quantizer(source: Path, target: Path, mode: str, config: QuantConfig, exclude: list[str],
                   encoder: TextEncoder, calibration_inputs: list) -> None:
    import logging

    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    # onnxruntime.quantization logs a pre-processing hint on the root logger for every call.
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    common = dict(per_channel=config.per_channel, reduce_range=config.reduce_range,
                  weight_type=QuantType.QInt8, nodes_to_exclude=exclude)
    # Shape inference knows no com.microsoft ops, so outputs of fused nodes have no type;
    # in these encoders every such tensor is float.
    extra = {"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT}
    if mode == "dynamic":
        quantize_dynamic(str(source), str(target), op_types_to_quantize=["MatMul", "Attention", "Gemm"],
                         extra_options=extra, **common)
    else:
        quantize_static(str(source), str(target), _Calibration(source, encoder, calibration_inputs),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        op_types_to_quantize=["MatMul", "Gemm"], calibrate_method=CalibrationMethod.MinMax,
                        extra_options=extra, **common)


class _QualityProbe:
    """Quality of candidate int8 files against the fp32 model, on fixed texts."""

    def __init__(self, art: Artifact, encoder: TextEncoder, texts: list[str], limits: dict[str, float]):
        self.art = art
        self.limits = limits
        # texts, or (query, document) pairs; shortest first, so batches are little padding
        inputs, self.texts = judged_inputs(art.task, encoder, texts)
        # masks: the tokens judged (real ones, a question's context, or a fill-mask model's masks)
        self.batches, self.masks = judged_batches(art.task, encoder, inputs, 16)
        self.reference = OnnxModel(art.model_path(MODEL_FILE))
        self.expected = [self.reference.run(b) for b in self.batches]
        # Ranking units needs only an order, so it reads every third input (a third of the
        # cost) in batches of 8, which pad sorted inputs less than 16 do.
        sample = inputs[::3] if len(inputs) >= 24 else inputs
        self.sample_batches, self.sample_masks = judged_batches(art.task, encoder, sample, 8)

    @cached_property
    def sample_expected(self) -> list[dict[str, np.ndarray]]:
        return [self.reference.run(b) for b in self.sample_batches]

    def checks(self, path: Path):
        model = OnnxModel(path)
        got = [model.run(b) for b in self.batches]
        return quality_checks(self.art.task, self.art.outputs[0].name, got, self.expected, self.masks,
                              self.texts, self.limits, self.art.labels)

    def rank_units(self, quantized, original, units: dict[str, list[str]], scratch: Path,
                   say=lambda message: None) -> dict[str, float]:
        """Per unit, the loss when only that unit is int8 (everything else float), all measured
        with one session over `int8_units.switch_graph`; 0 for a unit it cannot switch."""
        mixed, switches = switch_graph(quantized, original, units)
        path = scratch / "switches.onnx"
        save_onnx(mixed, path)
        del mixed
        model = OnnxModel(path)
        off = {switch: np.zeros((), np.float32) for switch in switches.values()}
        sensitivity = {}
        for number, unit in enumerate(units, 1):
            say(f"ranking units by sensitivity: {number}/{len(units)} {unit} alone in int8")
            if unit not in switches:
                sensitivity[unit] = 0.0
                continue
            feed = {**off, switches[unit]: np.ones((), np.float32)}
            sensitivity[unit] = self.loss([model.run({**batch, **feed}) for batch in self.sample_batches])
        return sensitivity

    def loss(self, outputs: list[dict[str, np.ndarray]]) -> float:
        """One number, higher is worse, for outputs of the sample batches: mean (1 - cosine) of
        the main output against fp32, per text (per real token for token outputs); for one
        score per input (a reranker) the mean |difference|, as a cosine would see only its sign.
        Continuous, so units are ranked even where every candidate keeps all labels. A question
        answerer's start and end logits count alike, over the context's tokens."""
        names = [o.name for o in self.art.outputs[:2]] if self.art.task is Task.QUESTION_ANSWERING \
            else [self.art.outputs[0].name]
        shortfalls = []
        for (result, mask, expected), name in itertools.product(
                zip(outputs, self.sample_masks, self.sample_expected), names):
            got, want = result[name], expected[name]
            if got.ndim == 3:
                got, want = got[mask], want[mask]
            elif got.shape == mask.shape:  # one number per token: compare the judged tokens' rows
                got, want = np.where(mask, got, 0), np.where(mask, want, 0)
            got = got.reshape(len(got), -1).astype(np.float64)
            want = want.reshape(len(want), -1).astype(np.float64)
            if got.shape[1] == 1:
                shortfalls.append(np.abs(got - want)[:, 0])
                continue
            cosine = (got * want).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)
            shortfalls.append(1.0 - cosine)
        return float(np.concatenate(shortfalls).mean())

    @staticmethod
    def summary(checks) -> dict:
        return {k: round(v, 6) for c in checks for k, v in c.measured.items()}


def _fewest_float_units(most: int, passes, say=lambda message: None) -> int:
    """The fewest of the ranked units to keep float for `passes(count)` to hold: 1, 2, 4, ...
    until one passes, then halving the gap to the last that failed (more units in float never
    lowers quality much, and this tries about 2·log2 counts instead of every one). `most`
    when nothing passes."""
    failed, count = 0, 1
    while count < most:
        say(f"guard: keeping the {count} most sensitive unit(s) in float")
        if passes(count):
            break
        failed, count = count, min(count * 2, most)
    else:
        say(f"guard: keeping all {most} ranked units in float")
        if not passes(most):
            return most
    passed = count
    while passed - failed > 1:
        middle = (failed + passed) // 2
        say(f"guard: keeping the {middle} most sensitive unit(s) in float")
        if passes(middle):
            passed = middle
        else:
            failed = middle
    return passed
