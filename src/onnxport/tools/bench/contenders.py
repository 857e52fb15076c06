"""The contenders: what bench measures, and how each one loads and runs.

A Contender is a name, a loader (which may fail: the contender is then reported unavailable
with the reason) and, for the built-in ones, a Program: a script (scripts.py) run in a
process of its own (workers.py), by this interpreter or by a side environment's
(side_envs.py); the fresh-interpreter cold start runs the same script. Loaded, it is a
Runner. Nothing here imports torch: PyTorch and sentence-transformers run in their workers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ...checks.quality import judged_positions
from ...core.artifact import ENGINES, Artifact, verdict_flag
from ...core.cpus import detect_isa
from ...core.model_files import MODEL_CHOICES as MODEL_FILES
from ...core.spec import SEQUENCE_AXIS, Task
from ...errors import InputError
from ..workloads import run_task, verb_inputs
from . import scripts
from .side_envs import SIDE_ENV_PACKAGES, ensure_env, env_python
from .workers import ProcessRunner

# What --against can name. sentence-transformers runs with its torch backend in this
# environment; its onnx backend (fp32, and int8 with its preset for this CPU), its OpenVINO
# backend and fastembed need other versions and run in side environments.
AGAINST = ("sentence-transformers", "st-onnx", "st-onnx-int8", "st-openvino", "fastembed")
_ST_BACKENDS = {"sentence-transformers": "torch", "st-onnx": "onnx", "st-onnx-int8": "onnx-int8",
                "st-openvino": "openvino"}
EMBEDDING_TASKS = (Task.SENTENCE_EMBEDDING, Task.FEATURE_EXTRACTION)
_THIS_ENV_PACKAGES = ("onnxport", "onnxruntime", "torch", "transformers", "sentence-transformers")


class Runner(Protocol):
    """A loaded contender."""

    def run(self, texts: list[str], batch_size: int) -> Any:
        """What is timed: texts in, the task's result out (vectors, entities, labels)."""

    def outputs(self, texts: list[str]) -> list[dict[str, np.ndarray]]:
        """Per text, the graph's first output without padding ([1, ...]), for quality."""


@dataclasses.dataclass
class Program:
    """A contender as a script (scripts.py) with its `args`, run by this interpreter or, with
    `env`, by that side environment's python (side_envs.SIDE_ENVS)."""

    script: str
    args: dict
    env: str | None = None

    def python(self) -> str:
        return str(env_python(self.env)) if self.env else sys.executable

    def start(self) -> ProcessRunner:
        """Its worker, loading (the side environment is built first when missing): the bench
        starts every worker, then waits for each (`wait_ready`), so they load at once."""
        python = ensure_env(self.env) if self.env else None
        packages = SIDE_ENV_PACKAGES[self.env] if self.env else _THIS_ENV_PACKAGES
        return ProcessRunner(self.script, {**self.args, "packages": list(packages)}, python, wait=False)


@dataclasses.dataclass
class Contender:
    """Something to measure: how to load it, and the Program it runs (None: an in-process
    loader, with no cold start measured). `load` may raise: the contender is then reported
    unavailable with the error as the reason."""

    name: str
    kind: str
    load: Callable[[], Runner]
    file: str | None = None
    size_bytes: int | None = None
    program: Program | None = None
    unavailable: str | None = None
    verified: bool | None = None


def program_contender(name: str, kind: str, program: Program, **fields) -> Contender:
    """A contender that runs `program` in a worker of its own, and in the cold start."""
    return Contender(name, kind, program.start, program=program, **fields)


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


def _weights_size(folder: Path) -> int | None:
    if not folder.is_dir():
        return None
    files = [p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".pth")
             and p.name != "training_args.bin" and "onnx" not in p.parts]
    return sum(p.stat().st_size for p in files) or None


# ---------------------------------------------------------------- contenders

def torch_contender(art: Artifact, *, threads: int) -> Contender:
    """The artifact's source model in PyTorch, through the same pipeline (backend='torch')."""
    source = art.manifest.get("source", {}).get("path")
    reason = None
    if not source:
        reason = "the artifact came from an in-memory module, so there is no PyTorch model to load"
    elif not Path(source).exists():
        reason = f"the source model {source} is gone (moved or deleted since the export)"
    elif importlib.util.find_spec("torch") is None:
        reason = "torch is not installed here: pip install \"onnxport[torch]\""
    program = Program(scripts.PIPELINE, {"artifact": str(art.path), "backend": "torch", "threads": threads})
    return program_contender("pytorch", "pytorch", program, file=source, unavailable=reason,
                             size_bytes=_weights_size(Path(source)) if source else None)


def onnx_contender(art: Artifact, kind: str, *, threads: int, providers: Sequence[str] | None = None) -> Contender:
    """One model file of the artifact ('fp32', 'opt', 'int8', 'fp16') through onnxport.load."""
    name = MODEL_FILES[kind]
    entry = art.files.get(name, {})
    size = entry.get("size_bytes") or ((art.path / name).stat().st_size if (art.path / name).exists() else None)
    verified = verdict_flag(art.verdict(name))
    args = {"artifact": str(art.path), "backend": "onnx", "model": kind, "threads": threads,
            "providers": list(providers) if providers else None}
    return program_contender(f"onnx {entry.get('kind', kind)}", "onnx", Program(scripts.PIPELINE, args), file=name,
                             size_bytes=size, verified=verified)


def engine_contenders(art: Artifact, *, threads: int) -> list[Contender]:
    """model.onnx on each other engine it was verified on (`verify --engine openvino`)."""
    contenders = []
    for key, entry in (art.files.get(MODEL_FILES["fp32"], {}).get(ENGINES) or {}).items():
        engine, precision = entry.get("engine"), entry.get("precision")
        reason = None
        if importlib.util.find_spec(engine or "") is None:
            reason = f"{engine} is not installed here: pip install \"onnxport[{engine}]\""
        args = {"artifact": str(art.path), "backend": "onnx", "model": "fp32", "threads": threads,
                "providers": None, "engine": engine, "precision": precision}
        contenders.append(program_contender(
            f"onnx {engine} {precision}", "onnx", Program(scripts.PIPELINE, args), file=MODEL_FILES["fp32"],
            size_bytes=art.files[MODEL_FILES["fp32"]].get("size_bytes"), unavailable=reason,
            verified=verdict_flag(art.engine_verdict(key))))
    return contenders


def against_contender(art: Artifact, name: str, *, threads: int, scratch: Path) -> Contender:
    """One of AGAINST: a sentence-transformers backend or fastembed, on the artifact's source
    (fastembed: on the artifact's model.onnx). `scratch` holds what a contender saves (the
    sentence-transformers exports), for this run only."""
    if name not in AGAINST:
        raise InputError(f"unknown --against '{name}'; choose from {', '.join(AGAINST)}")
    source = art.manifest.get("source", {}).get("path")
    output = art.outputs[0].name
    reason = _against_reason(art, name, source)
    if name == "fastembed":
        program = Program(scripts.FASTEMBED, {"artifact": str(art.path), "model_file": MODEL_FILES["fp32"],
                                              "output": output, "dim": art.outputs[0].dims[-1], "threads": threads},
                          env="fastembed")
        return program_contender(name, "fastembed", program, file=MODEL_FILES["fp32"], unavailable=reason,
                                 size_bytes=(art.path / MODEL_FILES["fp32"]).stat().st_size)
    backend = _ST_BACKENDS[name]
    args = {"source": source, "backend": backend, "output": output, "threads": threads,
            "workdir": str(scratch / name), "preset": quantization_preset()}
    program = Program(scripts.SENTENCE_TRANSFORMERS, args, env=None if backend == "torch" else "optimum")
    return program_contender(name, "sentence-transformers", program, file=source, unavailable=reason,
                             size_bytes=_weights_size(Path(source)) if source and backend == "torch" else None)


def _against_reason(art: Artifact, name: str, source: str | None) -> str | None:
    """Why `name` cannot run on this artifact (None: it can)."""
    if art.task not in EMBEDDING_TASKS:
        return f"{name} compares embedding artifacts; this one is {art.task.value}"
    if name == "fastembed":  # it runs the artifact's own graph, not the source
        if art.task is not Task.SENTENCE_EMBEDDING:
            return "fastembed runs a graph with a pooled output; export with --task sentence-embedding"
        return None
    if not source:
        return "the artifact came from an in-memory module; there is no folder to load"
    if not Path(source).exists():
        return f"the source model {source} is gone"
    if name == "sentence-transformers" and importlib.util.find_spec("sentence_transformers") is None:
        return "sentence-transformers is not installed: pip install \"onnxport[sentence-transformers]\""
    return None


def quantization_preset() -> str:
    """sentence-transformers' dynamic int8 preset for this CPU: the int8 instruction set the
    quantizer detects (no preset of theirs is older than avx2)."""
    isa = detect_isa()
    return "avx2" if isa == "generic" else isa


def _unavailable_loader(reason: str) -> Callable[[], Runner]:
    def fail() -> Runner:
        raise InputError(reason)

    return fail


def artifact_contenders(art: Artifact, *, threads: int, against: Sequence[str] = (),
                        scratch: Path | None = None) -> list[Contender]:
    """PyTorch, every model file the artifact has (and model.onnx on each other engine it was
    verified on), then what `against` names."""
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
    contenders += engine_contenders(art, threads=threads)
    for name in dict.fromkeys(against):
        if scratch is None:
            raise ValueError("contenders from --against need a scratch folder")
        contenders.append(against_contender(art, name, threads=threads, scratch=scratch))
    return contenders
