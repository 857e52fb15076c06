"""int8 quantization, accuracy-guarded (file -> file).

Dynamic (weights int8 per channel, activations quantized on the fly) or static (activations
calibrated on texts, QDQ format). The configuration follows the CPU it runs on: on AVX2 and
AVX-512 without VNNI, u8s8 products can saturate, so weights use reduce_range; VNNI and
arm64 do not need it. The guard measures quality against the fp32 model and keeps the most
sensitive parts in float, one at a time, until the targets hold.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..checks.parity import verify as run_verify
from ..checks.quality import QUALITY_DEFAULTS, quality_checks, quality_inputs
from ..core.arguments import choice, string_list, text_list
from ..core.arguments import limits as limits_arg
from ..core.artifact import Artifact, write_manifest
from ..core.files import file_facts
from ..core.model_files import INT8_FILE, MODEL_FILE, OPT_FILE
from ..core.sample_texts import builtin_texts
from ..errors import InputError
from ..runtime.session import OnnxModel
from ..runtime.tokenization import TextEncoder
from .onnx_files import check_fits_artifact, load_onnx
from .tags import carry_over_file, nodes_matching_modules

ISAS = ("avx512_vnni", "avx512", "avx2", "arm64", "generic")
QUANTIZED_OPS = {"DynamicQuantizeLinear", "QuantizeLinear", "MatMulInteger", "QAttention", "QLinearMatMul",
                 "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm"}
_LAYER = re.compile(r"layers?[./_](\d+)")


def detect_isa() -> str:
    """The best int8 instruction set this CPU has, from /proc/cpuinfo (Linux) or the machine name."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "generic"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags or "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "generic"


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
    calibration_inputs = quality_inputs(art.task, texts)[0]  # a reranker calibrates on pairs, as it runs

    with tempfile.TemporaryDirectory(dir=art.path, prefix=".quantize-") as scratch:
        scratch = Path(scratch)
        attempt = scratch / "attempt.onnx"

        def build(excluded: list[str]) -> Path:
            nodes = list(exclude_nodes) + [n for unit in excluded for n in units[unit]]
            _run_quantizer(source_path, attempt, mode, config, nodes, encoder, calibration_inputs)
            return attempt

        say = progress or (lambda message: None)
        started = time.perf_counter()
        say(f"{mode} int8 for {config.isa}: measuring quality on {len(texts)} texts")
        excluded: list[str] = []
        checks = evaluator.checks(build(excluded))
        history = [{"float_units": [], "passed": all(c.passed for c in checks), **evaluator.summary(checks)}]
        sensitivity: dict[str, float] = {}
        if guard and not history[-1]["passed"]:
            say(f"below target ({_describe(history[-1])}); ranking {len(candidates)} units by sensitivity")
            sensitivity = _rank_sensitivity(candidates, build, evaluator, say)
            for attempt_number, unit in enumerate(sorted(sensitivity, key=sensitivity.get, reverse=True), 1):
                say(f"guard attempt {attempt_number}/{len(sensitivity)}: keeping {unit} in float")
                excluded.append(unit)
                checks = evaluator.checks(build(excluded))
                history.append({"float_units": list(excluded), "passed": all(c.passed for c in checks),
                                **evaluator.summary(checks)})
                if history[-1]["passed"]:
                    break
        target = art.path / INT8_FILE
        attempt.replace(target)
        seconds = time.perf_counter() - started
        carry_over_file(art, source_name, INT8_FILE)  # quantized nodes keep their PyTorch module tags
    say(f"measuring the speed-up of {INT8_FILE} over {source_name}")
    speedup = _speedup(source_path, target, encoder, texts)
    float_units = excluded_units + excluded
    kept = user_float | {node for unit in excluded for node in units[unit]}
    partly_float = [unit for unit, nodes in units.items() if unit not in float_units and kept.intersection(nodes)]
    entry = {
        "kind": "int8", "mode": mode, "isa": config.isa, "per_channel": config.per_channel,
        "reduce_range": config.reduce_range, "source_file": source_name, "guard": guard,
        "float_units": float_units, "excluded_units": excluded_units, "partly_float_units": partly_float,
        "float_nodes": list(exclude_nodes), "total_units": len(units),
        "quantized_units": len(units) - len(float_units) - len(partly_float),
        "sensitivity": {k: round(v, 6) for k, v in sorted(sensitivity.items(), key=lambda kv: -kv[1])},
        "attempts": history, "quality": history[-1], "targets": limits, "speedup_vs_source": speedup,
        "seconds": round(seconds, 1), "verification": None, **file_facts([target]),
    }
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
        inputs, self.texts = quality_inputs(art.task, texts)  # texts, or (query, document) pairs
        self.batches = [encoder.encode_items(inputs[i:i + 16]) for i in range(0, len(inputs), 16)]
        self.masks = [b["attention_mask"].astype(bool) for b in self.batches]
        reference = OnnxModel(art.model_path(MODEL_FILE))
        self.expected = [reference.run(b) for b in self.batches]
        # Ranking units needs only an order, so it reads every third input: a third of the cost.
        sample = inputs[::3] if len(inputs) >= 24 else inputs
        self.sample_batches = [encoder.encode_items(sample[i:i + 16]) for i in range(0, len(sample), 16)]
        self.sample_masks = [b["attention_mask"].astype(bool) for b in self.sample_batches]
        self.sample_expected = [reference.run(b) for b in self.sample_batches]

    def checks(self, path: Path):
        model = OnnxModel(path)
        got = [model.run(b) for b in self.batches]
        return quality_checks(self.art.task, self.art.outputs[0].name, got, self.expected, self.masks,
                              self.texts, self.limits, self.art.labels)

    def loss(self, path: Path) -> float:
        """One number, higher is worse: mean (1 - cosine) of the main output against fp32, per text
        (per real token for token outputs). Continuous, so units are ranked even where every
        candidate keeps all labels."""
        model = OnnxModel(path)
        name = self.art.outputs[0].name
        shortfalls = []
        for batch, mask, expected in zip(self.sample_batches, self.sample_masks, self.sample_expected):
            got, want = model.run(batch)[name], expected[name]
            if got.ndim == 3:
                got, want = got[mask], want[mask]
            got = got.reshape(len(got), -1).astype(np.float64)
            want = want.reshape(len(want), -1).astype(np.float64)
            if got.shape[1] == 1:  # one score per input (a reranker): a cosine would only see its sign
                shortfalls.append(np.abs(got - want)[:, 0])
                continue
            cosine = (got * want).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)
            shortfalls.append(1.0 - cosine)
        return float(np.concatenate(shortfalls).mean())

    @staticmethod
    def summary(checks) -> dict:
        return {k: round(v, 6) for c in checks for k, v in c.measured.items()}


def _rank_sensitivity(units: dict[str, list[str]], build, evaluator: _QualityProbe,
                      say=lambda message: None) -> dict[str, float]:
    """Loss when only that unit is quantized (everything else stays float)."""
    sensitivity = {}
    names = list(units)
    for number, unit in enumerate(names, 1):
        say(f"ranking units by sensitivity: {number}/{len(names)} {unit} alone in int8")
        others = [u for u in names if u != unit]
        sensitivity[unit] = evaluator.loss(build(others))
    return sensitivity


def _speedup(source: Path, quantized: Path, encoder: TextEncoder, texts: list[str], repeats: int = 3) -> float:
    """Throughput ratio int8 / source on the texts, measured now in this process."""
    batches = [encoder.encode(texts[i:i + 32]) for i in range(0, len(texts), 32)]

    def seconds(path: Path) -> float:
        model = OnnxModel(path)
        model.run(batches[0])
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for batch in batches:
                model.run(batch)
            best = min(best, time.perf_counter() - started)
        return best

    return round(seconds(source) / seconds(quantized), 3)
