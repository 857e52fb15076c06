"""The contenders: what bench measures, and how each one loads and runs here.

A Contender is a name, a loader (which may fail: the contender is then reported unavailable
with the reason) and a script for the fresh-interpreter cold start. Loaded, it is a Runner.
torch is imported only when the PyTorch or sentence-transformers contenders load; they get
the bench's thread count, and torch's own is restored after the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from ...checks.quality import judged_positions
from ...convert.references import open_torch_pipeline
from ...core.artifact import Artifact
from ...core.model_files import MODEL_CHOICES as MODEL_FILES
from ...core.spec import SEQUENCE_AXIS, Task
from ...errors import InputError
from ...runtime.pipelines import load
from ..workloads import run_task, verb_inputs
from .cold_start import _COLD_ONNX, _COLD_ST, _COLD_TORCH

AGAINST = ("sentence-transformers",)
EMBEDDING_TASKS = (Task.SENTENCE_EMBEDDING, Task.FEATURE_EXTRACTION)


class Runner(Protocol):
    """A loaded contender."""

    def run(self, texts: list[str], batch_size: int) -> Any:
        """What is timed: texts in, the task's result out (vectors, entities, labels)."""

    def outputs(self, texts: list[str]) -> list[dict[str, np.ndarray]]:
        """Per text, the graph's first output without padding ([1, ...]), for quality."""


@dataclasses.dataclass
class Contender:
    """Something to measure: how to load it here, and a script that loads it in a fresh
    interpreter (for cold start and memory; None: not measured). `load` may raise: the
    contender is then reported unavailable with the error as the reason."""

    name: str
    kind: str
    load: Callable[[], Runner]
    file: str | None = None
    size_bytes: int | None = None
    cold_start: dict | None = None  # {"script": python source, "args": {...}}
    unavailable: str | None = None
    verified: bool | None = None


class PipelineRunner:
    """An onnxport pipeline (ONNX session or PyTorch backend) as a contender."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.output = pipeline.artifact.outputs[0]

    def run(self, texts: list[str], batch_size: int) -> Any:
        return run_task(self.pipeline, texts, batch_size)

    def outputs(self, texts: list[str]) -> list[dict[str, np.ndarray]]:
        """Per text, the graph outputs quality is judged on, at the tokens it judges (see
        `checks.quality.judged_positions`): one row [1, ...] per output."""
        art = self.pipeline.artifact
        names = [o.name for o in art.outputs[:2]] if art.task is Task.QUESTION_ANSWERING else [self.output.name]
        per_token = SEQUENCE_AXIS in self.output.dims[1:2]
        items = verb_inputs(self.pipeline, texts)
        mask_id = self.pipeline.encoder.special_token("mask_token")[1]
        result: list[Any] = [None] * len(items)
        for indices, batch, arrays, outputs in self.pipeline.run_encodings(self.pipeline.tokenize_items(items), 16,
                                                                           names):
            judged = judged_positions(art.task, batch, arrays, mask_id, self.pipeline.encoder.padding_side)
            for row, index in enumerate(indices):
                result[index] = {name: (outputs[name][row][judged[row]] if per_token else outputs[name][row])[None]
                                 for name in names}
        return result


class SentenceTransformerRunner:
    """SentenceTransformer.encode as a contender (embedding artifacts)."""

    def __init__(self, model, output: str) -> None:
        self.model = model
        self.output = output

    def run(self, texts: list[str], batch_size: int) -> Any:
        return self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

    def outputs(self, texts: list[str]) -> list[dict[str, np.ndarray]]:
        return [{self.output: vector[None]} for vector in self.run(texts, 16)]


# ---------------------------------------------------------------- thread handling

_ORIGINAL_TORCH_THREADS: list[int] = []


def _torch_threads(threads: int) -> None:
    """Same intra-op thread count as the ONNX sessions; the old value is restored after the run."""
    import torch

    if not _ORIGINAL_TORCH_THREADS:
        _ORIGINAL_TORCH_THREADS.append(torch.get_num_threads())
    torch.set_num_threads(threads)


def _restore_torch_threads() -> None:
    if _ORIGINAL_TORCH_THREADS and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_ORIGINAL_TORCH_THREADS.pop())


# ---------------------------------------------------------------- contenders

def _weights_size(folder: Path) -> int | None:
    if not folder.is_dir():
        return None
    files = [p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".pth")
             and p.name != "training_args.bin" and "onnx" not in p.parts]
    return sum(p.stat().st_size for p in files) or None


def torch_contender(art: Artifact, *, threads: int) -> Contender:
    """The artifact's source model in PyTorch, through the same pipeline (backend='torch')."""
    source = art.manifest.get("source", {}).get("path")

    def load_torch() -> Runner:
        runner = PipelineRunner(open_torch_pipeline(art))  # a missing torch or source raises with a hint
        _torch_threads(threads)
        return runner

    reason = None
    if not source:
        reason = "the artifact came from an in-memory module, so there is no PyTorch model to load"
    elif not Path(source).exists():
        reason = f"the source model {source} is gone (moved or deleted since the export)"
    return Contender("pytorch", "pytorch", load_torch, file=source, unavailable=reason,
                     size_bytes=_weights_size(Path(source)) if source else None,
                     cold_start={"script": _COLD_TORCH, "args": {"artifact": str(art.path), "threads": threads}})


def onnx_contender(art: Artifact, kind: str, *, threads: int, providers: Sequence[str] | None = None) -> Contender:
    """One model file of the artifact ('fp32', 'opt', 'int8', 'fp16') through onnxport.load."""
    name = MODEL_FILES[kind]
    entry = art.files.get(name, {})
    size = entry.get("size_bytes") or ((art.path / name).stat().st_size if (art.path / name).exists() else None)
    verified = {"passed": True, "failed": False}.get(art.verdict(name))  # "not verified": None
    return Contender(
        f"onnx {entry.get('kind', kind)}", "onnx",
        lambda: PipelineRunner(load(art, model=kind, threads=threads, providers=providers)),
        file=name, size_bytes=size, verified=verified,
        cold_start={"script": _COLD_ONNX, "args": {"artifact": str(art.path), "model": kind, "threads": threads,
                                                   "providers": list(providers) if providers else None}})


def sentence_transformers_contenders(art: Artifact, *, threads: int) -> list[Contender]:
    """SentenceTransformer(source).encode with its torch backend, and its onnx backend when it
    can be built here (it needs optimum, and no download)."""
    source = art.manifest.get("source", {}).get("path")
    names = ("sentence-transformers", "sentence-transformers onnx")
    reason = None
    if art.task not in EMBEDDING_TASKS:
        reason = f"sentence-transformers compares embedding artifacts; this one is {art.task.value}"
    elif not source:
        reason = "the artifact came from an in-memory module; there is no folder to load"
    elif not Path(source).exists():
        reason = f"the source model {source} is gone"
    if reason:
        return [Contender(name, "sentence-transformers", _unavailable_loader(reason), unavailable=reason)
                for name in names]
    output = art.outputs[0].name

    def load_st(backend: str) -> Runner:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise InputError("sentence-transformers is not installed: pip install \"onnxport[sentence-transformers]\"") \
                from None
        _torch_threads(threads)
        if backend == "torch":
            return SentenceTransformerRunner(SentenceTransformer(source, device="cpu"), output)
        # Offline only: no hub look-up, and a failure (no optimum, no onnx/ folder) is a reason, not a crash.
        with _offline():
            model = SentenceTransformer(source, device="cpu", backend="onnx", local_files_only=True,
                                        model_kwargs={"provider": "CPUExecutionProvider"})
        return SentenceTransformerRunner(model, output)

    size = _weights_size(Path(source))
    args = {"source": source, "threads": threads}
    return [Contender(names[0], "sentence-transformers", lambda: load_st("torch"), file=source, size_bytes=size,
                      cold_start={"script": _COLD_ST, "args": args}),
            Contender(names[1], "sentence-transformers", lambda: load_st("onnx"), file=source)]


def _unavailable_loader(reason: str) -> Callable[[], Runner]:
    def fail() -> Runner:
        raise InputError(reason)

    return fail


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def artifact_contenders(art: Artifact, *, threads: int, against: Sequence[str] = ()) -> list[Contender]:
    """PyTorch, every model file the artifact has, then what `against` names."""
    import onnxruntime as ort

    contenders = [torch_contender(art, threads=threads)]
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    for kind, name in MODEL_FILES.items():
        if not (art.path / name).exists():
            continue
        if kind == "fp16" and not has_cuda:
            reason = ("this onnxruntime has no CUDA provider; fp16 is meant for GPUs and on CPU runs slower "
                      "than fp32 (pip install onnxruntime-gpu on a machine with CUDA)")
            contenders.append(Contender("onnx fp16", "onnx", _unavailable_loader(reason), file=name,
                                        unavailable=reason))
            continue
        contenders.append(onnx_contender(art, kind, threads=threads, providers=["cuda"] if kind == "fp16" else None))
    for other in against:
        if other != "sentence-transformers":
            raise InputError(f"unknown --against '{other}'; choose {', '.join(AGAINST)}")
        contenders += sentence_transformers_contenders(art, threads=threads)
    return contenders
