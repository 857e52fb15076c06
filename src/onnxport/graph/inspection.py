"""Describe an ONNX file or artifact without running the model.

Names, dtypes and dims of inputs and outputs, opsets and the onnxruntime they need, IR
version, producer, sizes (with external data), parameter count, op histogram, fused
transformer ops, metadata, and whether onnx.checker and onnxruntime both accept it.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

from ..core.artifact import ENGINES, MANIFEST, Artifact, verdict_flag
from ..core.messages import first_line
from ..core.model_files import MODEL_FILE
from ..errors import ArtifactError
from ..runtime.model_choice import auto_choice
from . import opsets
from .onnx_files import FUSED_DOMAIN, external_data_files, load_onnx


def _dtype_name(elem_type: int) -> str:
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, TypeError, ValueError):
        return f"type{elem_type}"


def _dims(value) -> list[int | str]:
    shape = value.type.tensor_type.shape
    return [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?") for d in shape.dim]


def describe_model(path: str | Path) -> dict[str, Any]:
    """Everything `inspect` shows about one .onnx file, as plain data."""
    path = Path(path)
    model = load_onnx(path)
    external = external_data_files(model, path.parent)
    missing = [name for name in external if not (path.parent / name).exists()]
    if missing:
        raise ArtifactError(
            f"{path} keeps its weights in {missing[0]}, which is missing; copy it beside the .onnx file"
        )
    graph = model.graph
    initializer_names = {t.name for t in graph.initializer}
    parameters = 0
    for tensor in graph.initializer:
        count = 1
        for d in tensor.dims:
            count *= d
        parameters += count
    op_counts = collections.Counter(n.op_type for n in graph.node)
    domain_opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    main_opset = domain_opsets.get("ai.onnx", 0)
    size = path.stat().st_size + sum((path.parent / name).stat().st_size for name in external)
    return {
        "path": str(path),
        "inputs": [{"name": i.name, "dtype": _dtype_name(i.type.tensor_type.elem_type), "dims": _dims(i)}
                   for i in graph.input if i.name not in initializer_names],
        "outputs": [{"name": o.name, "dtype": _dtype_name(o.type.tensor_type.elem_type), "dims": _dims(o)}
                    for o in graph.output],
        "opsets": dict(sorted(domain_opsets.items())),
        "ir_version": model.ir_version,
        "min_onnxruntime": opsets.min_ort_for(model.ir_version, main_opset),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "size_bytes": size,
        "external_data": external,
        "parameters": parameters,
        "nodes": len(graph.node),
        "op_types": dict(op_counts.most_common()),
        "fused_ops": dict(collections.Counter(n.op_type for n in graph.node if n.domain == FUSED_DOMAIN)),
        "metadata": {p.key: p.value for p in model.metadata_props},
        "loads": _load_checks(path),
    }


def _load_checks(path: Path) -> dict[str, Any]:
    """Whether onnx.checker and onnxruntime accept the file, and why not."""
    import onnx
    import onnxruntime as ort

    result: dict[str, Any] = {}
    try:
        onnx.checker.check_model(str(path))
        result["onnx_checker"] = {"ok": True}
    except Exception as error:  # the checker raises several types
        result["onnx_checker"] = {"ok": False, "error": first_line(error)}
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        result["onnxruntime"] = {"ok": True, "version": ort.__version__}
    except Exception as error:  # onnxruntime raises its own untyped errors
        result["onnxruntime"] = {"ok": False, "version": ort.__version__, "error": first_line(error)}
    return result


def inspect(path: str | Path, *, deep: bool = False) -> dict[str, Any]:
    """Describe a .onnx file, or an artifact directory (its model files plus the manifest).

    Each model file's bytes are compared with the fingerprint recorded when it was written
    ("integrity"): by size and mtime, falling back to sha256; `deep` always hashes."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist; pass a .onnx file or an artifact directory")
    if path.is_file():
        if path.suffix != ".onnx" and path.name != MANIFEST:
            raise ArtifactError(f"{path} is not an .onnx file; pass a .onnx file or an artifact directory")
        return {"model": describe_model(path)}
    artifact = Artifact(path)
    files = {}
    for name, entry in artifact.files.items():
        integrity = artifact.integrity(name, deep=deep)
        verdict = artifact.verdict(name, deep=deep)
        files[name] = {
            "kind": entry.get("kind"),
            "verdict": verdict,
            "verified": verdict_flag(verdict),
            "integrity": integrity,
            "size_bytes": entry.get("size_bytes"),
        }
        if entry.get(ENGINES):  # model.onnx judged on other engines: each verdict and the CPU it ran on
            files[name]["engines"] = {key: {"verdict": artifact.engine_verdict(key),
                                            "cpu": (value.get("measured_on") or {}).get("cpu")}
                                      for key, value in entry[ENGINES].items()}
    spec = artifact.spec
    try:
        picked = auto_choice(artifact)
        auto = {"file": picked.file, "reason": picked.reason, "skipped": [list(item) for item in picked.skipped]}
    except ArtifactError as error:  # nothing verified left to run
        auto = {"file": None, "reason": first_line(error), "skipped": []}
    return {
        "artifact": {
            "path": str(path),
            "task": spec.task.value,
            "pooling": spec.pooling.value if spec.pooling else None,
            "normalize": spec.normalize,
            "max_length": artifact.manifest.get("tokenizer", {}).get("max_length"),
            "labels": artifact.labels,
            "source": artifact.manifest.get("source"),
            "min_onnxruntime": artifact.manifest.get("min_onnxruntime"),
            "files": files,
            "auto": auto,  # what load(model="auto") runs on this machine, and why
        },
        "model": describe_model(artifact.model_path(MODEL_FILE)),
    }
