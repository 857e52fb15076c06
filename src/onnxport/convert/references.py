"""The models an exported file is judged against, built on the torch side, and the
verify/optimize entry points that pick the best one available.

`TorchReference` runs the artifact's source model through the same wrapper the exporter
traced (task head, pooling, Dense, normalize), so its outputs are exactly what the graph
must produce. `SentenceTransformersReference` (and `SparseEncoderReference` for SPLADE) is
an independent second opinion for sentence-transformers folders. `best_references` says
which of them this environment can build and why not otherwise; without torch the checks
fall back to model.onnx.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..checks.parity import DEFAULT_ATOL, ParityReport
from ..checks.parity import verify as check
from ..core.artifact import Artifact
from ..core.model_files import MODEL_FILE, QUALITY_KINDS
from ..core.spec import Task
from ..errors import InputError, OnnxportError
from ..runtime.batching import DEFAULT_BATCH_TOKENS
from .requirements import require_export


class TorchReference:
    """arrays in (as the tokenizer gives them), {output name: np.ndarray} out."""

    def __init__(self, artifact: Artifact, *, source: str | Path | None = None, wrapper: Any = None,
                 allow_pickle: bool = False) -> None:
        require_export("running the PyTorch model")
        import torch

        self.name = "pytorch (in-memory module)"
        if wrapper is None:
            from .sources import load_source
            from .wrapper import build_wrapper

            path = source or artifact.manifest.get("source", {}).get("path")
            if not path:
                raise InputError("the artifact came from an in-memory module; pass the model folder as reference")
            if not Path(path).exists():
                raise InputError(f"the source model {path} is gone; pass the model folder as reference")
            # The artifact's own tokenizer: the one its graph was verified with (maybe from --tokenizer).
            loaded = load_source(path, task=artifact.task, allow_pickle=allow_pickle, tokenizer=artifact.path)
            wrapper, _, _, _ = build_wrapper(loaded, artifact.spec)
            self.name = f"pytorch ({path})"
        self.wrapper = wrapper
        self.input_names = [i.name for i in artifact.inputs]
        self.output_names = [o.name for o in artifact.outputs]
        self.dtype = torch.int32 if artifact.spec.int32_inputs else torch.int64

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            results = self.wrapper(*[torch.as_tensor(arrays[n]).to(self.dtype) for n in self.input_names])
        return {n: r.detach().cpu().numpy() for n, r in zip(self.output_names, results)}


class SentenceTransformersReference:
    """`SentenceTransformer(folder).encode`, for artifacts exported from a sentence-transformers folder."""

    def __init__(self, folder: str | Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(folder), device="cpu")
        self.name = "sentence-transformers encode"

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=16, convert_to_numpy=True, show_progress_bar=False)


class SparseEncoderReference:
    """`SparseEncoder(folder).encode` in dense form, for artifacts exported from a SPLADE folder."""

    def __init__(self, folder: str | Path) -> None:
        from sentence_transformers import SparseEncoder

        self.model = SparseEncoder(str(folder), device="cpu")
        self.model.max_active_dims = None  # the graph gives every weight; the pipeline applies the folder's cut
        self.name = "sentence-transformers SparseEncoder encode"

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, batch_size=16, convert_to_tensor=True, show_progress_bar=False)
        return vectors.to_dense().cpu().numpy()


def best_references(art: Artifact, model_file: str = MODEL_FILE, *, source: str | Path | None = None,
                    allow_pickle: bool = False, wrapper: Any = None):
    """(reference, embedding reference, notes) for `model_file`: PyTorch and sentence-transformers
    where this environment has them and the source is reachable; notes say what is missing.

    A source the caller names (`source`) must load: its errors propagate. The recorded source
    path is best effort: when it is gone or refuses to load, the note says why and the
    checks fall back to model.onnx (or "not verified" for model.onnx itself)."""
    if art.files.get(model_file, {}).get("kind", "fp32") in QUALITY_KINDS:
        return None, None, []  # judged against model.onnx by quality, whatever is installed
    notes: list[str] = []
    reference = None
    try:
        reference = TorchReference(art, source=source, wrapper=wrapper, allow_pickle=allow_pickle)
    except OnnxportError as error:
        if source is not None:
            raise
        notes.append(f"PyTorch parity: {error}")
    return reference, _sentence_transformers_reference(art, notes), notes


def _sentence_transformers_reference(art: Artifact, notes: list[str]):
    recorded = art.manifest.get("source", {})
    if art.task not in (Task.SENTENCE_EMBEDDING, Task.SPARSE_EMBEDDING) or recorded.get("kind") != "st-folder":
        return None
    if importlib.util.find_spec("sentence_transformers") is None:
        notes.append("sentence-transformers parity: sentence-transformers is not installed")
        return None
    path = recorded.get("path")
    if not path or not Path(path).exists():
        notes.append(f"sentence-transformers parity: source folder {path} is gone")
        return None
    return (SparseEncoderReference if art.task is Task.SPARSE_EMBEDDING else SentenceTransformersReference)(path)


def verify(artifact: str | Path | Artifact, *, model_file: str = MODEL_FILE, reference: str | Path | None = None,
           texts: Sequence[str] | None = None, atol: float = DEFAULT_ATOL, thresholds: dict[str, float] | None = None,
           allow_pickle: bool = False, record: bool | None = None,
           progress: Callable[[str], None] | None = None, engine: str = "onnxruntime",
           precision: str | None = None) -> ParityReport:
    """Verify one model file against the best reference available (see `best_references`);
    with `engine="openvino"`, model.onnx run by OpenVINO (`checks.parity.verify`)."""
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    art.model_path(model_file)  # a missing file is the user's error, before any model loads
    by_quality = art.files.get(model_file, {}).get("kind", "fp32") in QUALITY_KINDS or precision == "bf16"
    torch_reference, embedding_reference, notes = None, None, []
    if not by_quality:  # judged against model.onnx, whatever is installed
        if progress:
            progress(f"loading the reference for {model_file} (PyTorch where installed)")
        torch_reference, embedding_reference, notes = best_references(art, model_file, source=reference,
                                                                      allow_pickle=allow_pickle)
    return check(art, model_file=model_file, reference=torch_reference, embedding_reference=embedding_reference,
                 texts=texts, atol=atol, thresholds=thresholds, notes=notes, record=record,
                 own_reference=reference is not None, progress=progress, engine=engine, precision=precision)


def optimize(artifact: str | Path | Artifact, *, level: str = "fused", verify: bool = True,
             texts: Sequence[str] | None = None, allow_pickle: bool = False,
             progress: Callable[[str], None] | None = None):
    """`graph.optimizer.optimize`, verified against PyTorch where it is available."""
    from ..graph.optimizer import KINDS, LEVELS
    from ..graph.optimizer import optimize as fuse

    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    reference, notes = None, []
    if verify and level in LEVELS and KINDS[level] not in QUALITY_KINDS:
        if progress:
            progress("loading the PyTorch reference (where installed)")
        reference, _, notes = best_references(art, allow_pickle=allow_pickle)
    return fuse(art, level=level, verify=verify, texts=texts, reference=reference, notes=notes, progress=progress)


def open_torch_pipeline(artifact: str | Path | Artifact, *, truncate: bool = True, allow_pickle: bool = False,
                        max_batch_tokens: int | None = DEFAULT_BATCH_TOKENS):
    """The artifact's task pipeline running its PyTorch source (`load(..., backend="torch")`),
    batched exactly as the onnx one."""
    from ..runtime.pipelines import load

    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    return load(art, runner=TorchReference(art, allow_pickle=allow_pickle), backend="torch", truncate=truncate,
                max_batch_tokens=max_batch_tokens)
