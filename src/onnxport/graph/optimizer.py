"""Fuse an artifact's encoder with onnxruntime's transformer optimizer (file -> file).

Levels: `fused` (Attention, SkipLayerNormalization, EmbedLayerNormalization, BiasGelu; exact),
`fused-gelu-approx` (also FastGelu's tanh approximation; slightly inexact), and `fp16`
(fused, then float16 weights and compute with fp32 inputs/outputs, meant for GPUs).
Writes model.opt.onnx or model.fp16.onnx into the artifact and verifies it: against the
reference the caller passes (the facade passes PyTorch when it is installed), else against
the artifact's fp32 model.onnx.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..checks.parity import verify as run_verify
from ..core.artifact import Artifact, write_manifest
from ..core.files import file_facts
from ..core.model_files import FP16_FILE, MODEL_FILE, OPT_FILE
from ..errors import ArtifactError, InputError
from .onnx_files import FUSED_DOMAIN, check_fits_artifact, load_onnx, save_onnx
from .tags import carry_over, record

LEVELS = ("fused", "fused-gelu-approx", "fp16")
OUTPUT_FILES = {"fused": OPT_FILE, "fused-gelu-approx": OPT_FILE, "fp16": FP16_FILE}
# The tanh GELU approximation is not exact, so like fp16 it is judged by quality.
KINDS = {"fused": "opt", "fused-gelu-approx": "opt-approx", "fp16": "fp16"}
# Ops that lose too much in float16 and stay fp32 (normalizations and softmax-like reductions
# are handled inside onnxruntime's fused kernels; these are the standalone ones).
FP16_KEEP_FP32 = ["ReduceSum", "ReduceMean", "Sqrt", "Div", "Pow", "Softmax", "LayerNormalization"]


def fused_op_counts(model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.domain == FUSED_DOMAIN:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def optimize(artifact: str | Path | Artifact, *, level: str = "fused", verify: bool = True, texts=None,
             reference=None, notes=(), progress=None):
    """Write the optimized model into the artifact; returns (file name, fused op counts, report).

    `reference` and `notes` go to `checks.parity.verify` (None: judged against model.onnx);
    `progress` gets a line per step, the verification's included."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    if level not in LEVELS:
        raise InputError(f"unknown level '{level}'; choose one of {', '.join(LEVELS)}")
    if level == "fp16" and "CUDAExecutionProvider" not in ort.get_available_providers():
        warnings.warn("fp16 is meant for GPUs: this onnxruntime has no CUDA provider, and on CPU an fp16 model "
                      "runs slower than fp32; the file is written and verified anyway", RuntimeWarning, stacklevel=2)
    config = _model_config(art)
    # A model.onnx swapped after export must stop here, before a file is written for it.
    check_fits_artifact(art, MODEL_FILE, load_onnx(art.model_path(MODEL_FILE)))
    say = progress or (lambda message: None)
    say(f"fusing transformer ops ({level}) with onnxruntime's optimizer")
    options = FusionOptions("bert")
    options.enable_gelu_approximation = level == "fused-gelu-approx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimizer.optimize_model(
            str(art.model_path(MODEL_FILE)), model_type="bert", num_heads=config.get("num_attention_heads", 0),
            hidden_size=config.get("hidden_size", 0), optimization_options=options, opt_level=0,
        )
        if level == "fp16":
            optimized.convert_float_to_float16(keep_io_types=True, op_block_list=FP16_KEEP_FP32)
            # The converter appends its Cast nodes at the end; the checker wants topological order.
            optimized.topological_sort()
    model = optimized.model
    carry_over(art.model_path(MODEL_FILE), model)  # fused nodes take the module of what they replaced
    counts = fused_op_counts(model)
    if counts and not any(o.domain == FUSED_DOMAIN for o in model.opset_import):
        # The optimizer inserts contrib ops without declaring their domain; the checker wants it.
        model.opset_import.append(onnx.helper.make_opsetid(FUSED_DOMAIN, 1))
    name = OUTPUT_FILES[level]
    say(f"checking and writing {name}")
    onnx.checker.check_model(model if model.ByteSize() < 2**31 - 1 else str(art.model_path()), full_check=False)
    files = save_onnx(model, art.path / name)
    art.files[name] = {"kind": KINDS[level], "level": level, "fused_ops": counts,
                       "source_file": MODEL_FILE, "verification": None, **file_facts(files)}
    write_manifest(art.path, art.manifest)
    record(art, name, model)
    report = None
    if verify:
        report = run_verify(art, model_file=name, texts=texts, reference=reference, notes=notes, record=True,
                            progress=progress)
    return name, counts, report


def _model_config(art: Artifact) -> dict:
    config_file = art.path / "config.json"
    if not config_file.exists():
        raise ArtifactError(f"{config_file} is missing; the optimizer needs the model's heads and hidden size")
    config = json.loads(config_file.read_text())
    # DistilBERT names them differently.
    config.setdefault("num_attention_heads", config.get("n_heads", 0))
    config.setdefault("hidden_size", config.get("dim", 0))
    return config
