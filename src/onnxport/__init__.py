"""onnxport: export transformer encoders to verified, fast ONNX artifacts, and run them.

The public surface is this module: six verbs and the types they take and return.

    export(model, out=...)        source model -> verified artifact directory   (needs onnxport[export])
    verify(artifact)              ParityReport against PyTorch, else the verified model.onnx
    inspect(path)                 what is inside a .onnx file or an artifact, without running it
    load(artifact)                Embedder / TokenClassifier / SequenceClassifier / Reranker /
                                  QuestionAnswerer / FillMask / SparseEmbedder
    optimize(artifact)            fused model.opt.onnx (or fp16), verified
    quantize(artifact)            accuracy-guarded model.int8.onnx, verified

Beside the verbs, two subpackages run artifacts at scale: `onnxport.serve` (an HTTP server,
onnxport[serve]) and `onnxport.scale` (Ray Data jobs, onnxport[ray]).

Imports are lazy: `import onnxport` loads no torch, onnxruntime or numpy, so the runtime
install (numpy, onnxruntime, tokenizers, onnx) serves artifacts on its own. The layers
behind the verbs are described in docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import errors
from .core.artifact import Artifact
from .core.spec import Exporter, Pooling, Task
from .core.version import __version__  # noqa: F401 - onnxport.__version__
from .runtime.batching import DEFAULT_BATCH_TOKENS as _DEFAULT_BATCH_TOKENS

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .checks.report import ParityReport
    from .runtime.pipelines import (Embedder, FillMask, Pipeline, QuestionAnswerer, Reranker, SequenceClassifier,
                                    SparseEmbedder, TokenClassifier)

__all__ = [
    "Artifact",
    "Embedder",
    "FillMask",
    "ParityReport",
    "Pooling",
    "QuestionAnswerer",
    "Reranker",
    "SequenceClassifier",
    "SparseEmbedder",
    "Task",
    "TokenClassifier",
    "errors",
    "export",
    "inspect",
    "load",
    "optimize",
    "quantize",
    "verify",
]

# Public classes that live behind imports the bare `import onnxport` should not pay for.
_LAZY_CLASSES = {
    "ParityReport": "onnxport.checks.report",
    "Embedder": "onnxport.runtime.pipelines",
    "TokenClassifier": "onnxport.runtime.pipelines",
    "SequenceClassifier": "onnxport.runtime.pipelines",
    "Reranker": "onnxport.runtime.pipelines",
    "QuestionAnswerer": "onnxport.runtime.pipelines",
    "FillMask": "onnxport.runtime.pipelines",
    "SparseEmbedder": "onnxport.runtime.pipelines",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module 'onnxport' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_CLASSES))


def export(
    model: Any = None,
    *,
    out: str | Path,
    task: str | Task | None = None,
    tokenizer: Any = None,
    pooling: str | Pooling | None = None,
    normalize: bool | None = None,
    opset: int | None = None,
    target_ort: str | None = None,
    exporter: str | Exporter = Exporter.TORCHSCRIPT,
    int32: bool = False,
    token_type_ids: bool | None = None,
    static_shape: tuple[int, int] | None = None,
    output_names: Sequence[str] | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    force: bool = False,
    verify: bool = True,
    texts: Sequence[str] | None = None,
    atol: float = 1e-4,
    external_data_threshold: int = 1_800_000_000,
    hierarchy: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Artifact:
    """Export `model` to the artifact directory `out` and verify it against PyTorch.

    `model`: a Hugging Face or sentence-transformers folder, a hub id already in the local
    cache, a `torch.nn.Module` (with `tokenizer=`), or None for the built-in
    all-MiniLM-L6-v2. `task` and `pooling` are detected when not given. A failed
    verification raises ParityError after the artifact is written, so the evidence stays
    on disk. Needs `pip install "onnxport[export]"` (MissingDependency otherwise).
    """
    from .convert.exporter import export as run

    return run(model, out=out, task=task, tokenizer=tokenizer, pooling=pooling, normalize=normalize, opset=opset,
               target_ort=target_ort, exporter=exporter, int32=int32, token_type_ids=token_type_ids,
               static_shape=static_shape, output_names=output_names, allow_pickle=allow_pickle,
               trust_remote_code=trust_remote_code, force=force, verify=verify, texts=texts, atol=atol,
               external_data_threshold=external_data_threshold, hierarchy=hierarchy, progress=progress)


def verify(
    artifact: str | Path | Artifact,
    *,
    model_file: str = "model.onnx",
    reference: str | Path | None = None,
    texts: Sequence[str] | None = None,
    atol: float = 1e-4,
    thresholds: dict[str, float] | None = None,
    allow_pickle: bool = False,
    record: bool | None = None,
    progress: Callable[[str], None] | None = None,
    engine: str = "onnxruntime",
    precision: str | None = None,
) -> ParityReport:
    """Check one model file of an artifact and record the report in its manifest.

    fp32 files are compared with PyTorch (the recorded source folder, or `reference`) within
    `atol`; without torch, files other than model.onnx are compared with the verified
    model.onnx. int8/fp16 files are judged by quality against model.onnx (`thresholds`).
    With nothing to compare with, the verdict is "not verified", never "passed".

    `record=None` makes the report the file's verdict when run with the default texts,
    tolerance and reference, and keeps it beside the verdict otherwise (the export's verdict
    stays); True always replaces the verdict, False writes nothing. On a read-only artifact
    nothing is written; `report.recorded` says where the report went. `progress` is called
    with one line per step (each batch of the shape matrix, each check phase).

    `engine="openvino"` judges model.onnx run by OpenVINO, `precision` "f32" (against PyTorch,
    else onnxruntime) or "bf16" (by quality against model.onnx, on CPUs with bf16), and
    records that verdict for that engine alone (`load(engine="openvino")` reads it).
    """
    _check_path(artifact, "verify")
    from .convert.references import verify as run

    return run(artifact, model_file=model_file, reference=reference, texts=texts, atol=atol,
               thresholds=thresholds, allow_pickle=allow_pickle, record=record, progress=progress,
               engine=engine, precision=precision)


def inspect(path: str | Path, *, deep: bool = False) -> dict[str, Any]:
    """Describe a .onnx file or an artifact directory without running it, as a plain dict.

    Model files that changed since they were written show `integrity: "modified"` and the
    verdict "modified since verified"; `deep=True` compares every file's sha256."""
    _check_path(path, "inspect")
    from .graph.inspection import inspect as run

    return run(path, deep=deep)


def load(
    artifact: str | Path | Artifact,
    *,
    model: str = "auto",
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    backend: str = "onnx",
    truncate: bool = True,
    allow_pickle: bool = False,
    max_batch_tokens: int | None = _DEFAULT_BATCH_TOKENS,
    engine: str | None = None,
    precision: str | None = None,
) -> Pipeline:
    """Open an artifact as its task's pipeline: Embedder, TokenClassifier, SequenceClassifier,
    Reranker, QuestionAnswerer, FillMask or SparseEmbedder.

    `model`: "auto" (verified int8, else verified opt, else model.onnx), "fp32", "opt",
    "int8" or "fp16". `backend="torch"` runs the PyTorch source through the same pipeline
    (needs onnxport[export]; `allow_pickle` lets pickle weights load there).
    `max_batch_tokens`: at most this many padded tokens (rows x longest) per model run, besides
    the verbs' `batch_size` rows; None: rows only. See docs/performance.md.
    `engine="openvino"` runs model.onnx with OpenVINO (onnxport[openvino]) in `precision`
    "f32" or "bf16" (CPUs with AMX / AVX512-BF16); it warns unless `verify(engine=...)` passed.
    By default (`engine=None`) model="auto" may pick OpenVINO by itself where it was verified
    and measured faster on this CPU model; `engine="onnxruntime"` keeps to onnxruntime.
    """
    _check_path(artifact, "load")
    if backend == "torch":
        from .convert.references import open_torch_pipeline

        return open_torch_pipeline(artifact, truncate=truncate, allow_pickle=allow_pickle,
                                   max_batch_tokens=max_batch_tokens)
    if backend != "onnx":
        raise errors.InputError(f"unknown backend '{backend}'; choose onnx or torch")
    from .runtime.pipelines import load as run

    return run(artifact, model=model, providers=providers, threads=threads, truncate=truncate,
               max_batch_tokens=max_batch_tokens, engine=engine, precision=precision)


def optimize(
    artifact: str | Path | Artifact,
    *,
    level: str = "fused",
    verify: bool = True,
    texts: Sequence[str] | None = None,
    allow_pickle: bool = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[str, dict[str, int], ParityReport | None]:
    """Fuse the encoder with onnxruntime's transformer optimizer; returns (file, fused op
    counts, report). `level`: "fused" (exact), "fused-gelu-approx" or "fp16". Verified
    against PyTorch where it is installed, else against model.onnx. `progress` is called
    with one line per step, the verification's included."""
    _check_path(artifact, "optimize")
    from .convert.references import optimize as run

    return run(artifact, level=level, verify=verify, texts=texts, allow_pickle=allow_pickle, progress=progress)


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
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Write an accuracy-guarded model.int8.onnx and return its manifest entry.

    `mode`: "dynamic" or "static" (calibrated on `texts`); `isa`: detected when None. The
    guard keeps the most sensitive layers in float until `targets` (mean_cosine,
    min_cosine, top10_overlap, label_agreement, entity_f1, rank_agreement,
    top1_agreement) hold against model.onnx.
    """
    _check_path(artifact, "quantize")
    from .graph.quantizer import quantize as run

    return run(artifact, mode=mode, isa=isa, texts=texts, guard=guard, targets=targets, input_file=input_file,
               exclude_nodes=exclude_nodes, exclude_modules=exclude_modules, progress=progress)


def _check_path(value: Any, verb: str) -> None:
    """InputError, not a TypeError deep inside, when a verb gets no path (None, a number, ...)."""
    import os

    if isinstance(value, (str, os.PathLike)) or (verb != "inspect" and isinstance(value, Artifact)):
        return
    wanted = "a .onnx file or an artifact directory" if verb == "inspect" else "an artifact directory"
    also = "" if verb == "inspect" else ", or an onnxport.Artifact"
    raise errors.InputError(f"onnxport.{verb}() takes {wanted} as a str or pathlib.Path{also}, not "
                            f"{type(value).__name__}")
