"""Benchmark an artifact side by side: its model files, the PyTorch source, sentence-transformers.

Every contender runs in this process on the same texts with the same thread count, through
the same pipeline code (tokenize, length-sorted batches, run, restore order) where it can.
Measured per contender: throughput per batch size (median of repeated runs after warm-up,
with min/max), latency percentiles at batch 1, cold start and peak RSS (in a fresh
interpreter), file size, and quality against the PyTorch reference with verify's metrics.
Contenders take turns within each repeat so a noisy, shared CPU slows all of them alike;
speed-up is a ratio to the reference measured in the same run.

Runtime side: torch is imported only by the PyTorch and sentence-transformers contenders.
Ctrl-C keeps what was measured; the report says it is partial.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from ..checks.quality import QUALITY_DEFAULTS, quality_checks
from ..convert.references import open_torch_pipeline
from ..core.artifact import Artifact
from ..core.messages import first_line
from ..core.model_files import MODEL_CHOICES as MODEL_FILES
from ..core.sample_texts import length_mix_texts
from ..core.spec import SEQUENCE_AXIS, Task
from ..errors import InputError
from ..runtime.pipelines import load
from ..runtime.session import default_threads
from ..runtime.tokenization import TextEncoder
from .textio import read_texts

AGAINST = ("sentence-transformers",)
CHART_SIZE = (1200, 600)  # pixels: 12 x 6 inches at 100 dpi
EMBEDDING_TASKS = (Task.SENTENCE_EMBEDDING, Task.FEATURE_EXTRACTION)
_METHODS = {Task.SENTENCE_EMBEDDING: "embed", Task.FEATURE_EXTRACTION: "embed",
            Task.TOKEN_CLASSIFICATION: "extract", Task.SEQUENCE_CLASSIFICATION: "classify"}
_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
              "avx512_bf16", "amx_tile", "amx_int8")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much to measure. `quick()` costs about a minute of CPU for all-MiniLM-L6-v2 (docs/bench.md)."""

    batch_sizes: tuple[int, ...] = (1, 8, 32)
    threads: int | None = None       # None: physical cores
    repeats: int = 5                 # timed passes over the texts, per contender and batch size
    warmup: int = 1                  # untimed passes per batch size (after the quality pass, itself a warm-up)
    texts: int = 256                 # size of the generated corpus (a texts file is used whole)
    latency_samples: int = 96        # single-text calls per contender for the percentiles
    cold_start: bool = True          # fresh-interpreter load + first result + peak RSS
    rss_batch: int | None = None     # peak RSS after one batch of this many longest texts [largest batch size]
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> "Settings":
        # The quality pass (every text, every length) is the only warm-up in quick mode.
        values = dict(batch_sizes=(1, 32), repeats=2, warmup=0, texts=40, latency_samples=16, rss_batch=8)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


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
        self.method = getattr(pipeline, _METHODS[pipeline.artifact.task])
        self.output = pipeline.artifact.outputs[0]

    def run(self, texts: list[str], batch_size: int) -> Any:
        return self.method(texts, batch_size=batch_size)

    def outputs(self, texts: list[str]) -> list[dict[str, np.ndarray]]:
        result: list[Any] = [None] * len(texts)
        per_token = SEQUENCE_AXIS in self.output.dims[1:2]
        for indices, _, arrays, outputs in self.pipeline.run_batches(texts, 16):
            values = outputs[self.output.name]
            for row, index in enumerate(indices):
                value = values[row][arrays["attention_mask"][row].astype(bool)] if per_token else values[row]
                result[index] = {self.output.name: value[None]}
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


# ---------------------------------------------------------------- contenders

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
                     cold_start={"script": _COLD_TORCH, "args": {"artifact": str(art.path), "threads": threads,
                                                                 "method": _METHODS[art.task]}})


def onnx_contender(art: Artifact, kind: str, *, threads: int, providers: Sequence[str] | None = None) -> Contender:
    """One model file of the artifact ('fp32', 'opt', 'int8', 'fp16') through onnxport.load."""
    name = MODEL_FILES[kind]
    entry = art.files.get(name, {})
    size = entry.get("size_bytes") or ((art.path / name).stat().st_size if (art.path / name).exists() else None)
    report = entry.get("verification")
    return Contender(
        f"onnx {entry.get('kind', kind)}", "onnx",
        lambda: PipelineRunner(load(art, model=kind, threads=threads, providers=providers)),
        file=name, size_bytes=size, verified=None if report is None else bool(report.get("passed")),
        cold_start={"script": _COLD_ONNX, "args": {"artifact": str(art.path), "model": kind, "threads": threads,
                                                   "providers": list(providers) if providers else None,
                                                   "method": _METHODS[art.task]}})


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


# ---------------------------------------------------------------- cold start (fresh interpreter)

_COLD_PRELUDE = """
import json, sys, time
started = time.perf_counter()
args = json.loads(sys.argv[1])
"""
_COLD_ONNX = _COLD_PRELUDE + """
import onnxport
pipeline = onnxport.load(args["artifact"], model=args["model"], threads=args["threads"], providers=args["providers"])
call = getattr(pipeline, args["method"])
run = lambda texts, batch_size: call(texts, batch_size=batch_size)
"""
_COLD_TORCH = _COLD_PRELUDE + """
import torch
torch.set_num_threads(args["threads"])
import onnxport
pipeline = onnxport.load(args["artifact"], backend="torch")
call = getattr(pipeline, args["method"])
run = lambda texts, batch_size: call(texts, batch_size=batch_size)
"""
_COLD_ST = _COLD_PRELUDE + """
import torch
torch.set_num_threads(args["threads"])
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(args["source"], device="cpu")
run = lambda texts, batch_size: model.encode(texts, batch_size=batch_size, show_progress_bar=False)
"""
# Appended to each: time to the first result, then the peak RSS after one batch of the
# longest texts at the largest batch size (what serving at that size needs).
_COLD_EPILOGUE = """
run([args["first"]], 1)
seconds = time.perf_counter() - started

def peak_rss_mb():
    # Linux: VmHWM, the peak of this process image. ru_maxrss would not do: Linux carries it
    # over from the parent through fork and exec, so every child would report the bench's own peak.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource  # macOS: bytes
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
    except ImportError:  # Windows: psutil, when installed
        try:
            import psutil
            return psutil.Process().memory_info().peak_wset / (1 << 20)
        except (ImportError, AttributeError):
            return None

first_rss = peak_rss_mb()
run(args["batch"], len(args["batch"]))
print(json.dumps({"seconds": seconds, "first_result_rss_mb": first_rss, "peak_rss_mb": peak_rss_mb()}))
"""


def measure_cold_start(contender: Contender, first: str, batch: list[str], timeout: float = 600) -> dict:
    """Run the contender's script in a fresh interpreter: import + load + first result (seconds,
    timed inside the script), and peak RSS after one more batch."""
    args = {**contender.cold_start["args"], "first": first, "batch": batch}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", contender.cold_start["script"] + _COLD_EPILOGUE,
                               json.dumps(args)], capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f} s"}
    wall = time.perf_counter() - started
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1][:300] if lines else f"exit code {done.returncode}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "process_seconds": wall}


# ---------------------------------------------------------------- measuring

def parse_batch_sizes(value: str) -> tuple[int, ...]:
    """'1,8,32' -> (1, 8, 32); sorted, without duplicates."""
    try:
        sizes = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise InputError(f"batch sizes must be whole numbers separated by commas, like 1,8,32; not '{value}'") \
            from None
    if not sizes or sizes[0] < 1:
        raise InputError(f"batch sizes must be 1 or more, like 1,8,32; not '{value}'")
    return tuple(sizes)


def measure(artifact: str | Path | Artifact, *, texts: Sequence[str] | None = None, texts_source: str | None = None,
            settings: Settings = Settings(), against: Sequence[str] = (),
            extra_contenders: Sequence[Contender] = (),
            progress: Callable[..., None] | None = None) -> dict:
    """Measure every contender and return the report (a JSON-ready dict). `extra_contenders`
    are measured like the built-in ones. Ctrl-C returns what was measured, marked partial."""
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    if not settings.batch_sizes or min(settings.batch_sizes) < 1:
        raise InputError("batch sizes must be 1 or more")
    if settings.repeats < 1 or settings.latency_samples < 1 or settings.warmup < 0:
        raise InputError("repeats and latency samples must be at least 1, warm-up passes at least 0")
    threads = settings.threads or default_threads()
    if threads < 1:
        raise InputError(f"threads must be at least 1, not {threads}")
    if texts is None:
        corpus = length_mix_texts(settings.texts, seed=settings.seed)
        texts_source = f"built-in length mix (seed {settings.seed})"
    else:
        corpus = list(texts)
    if not corpus:
        raise InputError("the benchmark needs at least one text")
    contenders = artifact_contenders(art, threads=threads, against=against) + list(extra_contenders)
    names = [c.name for c in contenders]
    if len(set(names)) != len(names):
        raise InputError(f"contender names must be unique: {', '.join(names)}")
    run = _Run(art, settings, contenders, corpus, progress)
    report = _new_report(art, settings, threads, corpus, run.tokens, run.truncated, texts_source)
    started = time.perf_counter()
    report["phase_seconds"] = phases = {}
    try:
        for phase in (run.load, run.quality, run.warm_up, run.throughput, run.latency, run.cold_starts):
            begun = time.perf_counter()
            phase()
            phases[phase.__name__] = round(time.perf_counter() - begun, 2)
            report["reference"] = run.reference
    except KeyboardInterrupt:
        report["partial"] = True
        report["interrupted_during"] = run.current
    finally:
        run.loaded.clear()
        _restore_torch_threads()
    report["seconds"] = round(time.perf_counter() - started, 1)
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["contenders"] = list(run.results.values())
    _summarize(report, run)
    return report


class _Run:
    """One benchmark run: the loaded contenders, and everything measured so far (kept when
    Ctrl-C stops it). Contenders take turns inside every pass, so load that comes and goes
    on a shared machine lands on all of them."""

    def __init__(self, art: Artifact, settings: Settings, contenders: list[Contender], corpus: list[str],
                 progress: Callable[..., None] | None) -> None:
        self.art, self.settings, self.contenders, self.corpus = art, settings, contenders, corpus
        encodings = TextEncoder.for_artifact(art).tokenize(corpus)
        self.tokens = [len(e.ids) for e in encodings]
        self.truncated = sum(bool(e.overflowing) for e in encodings)
        self.progress = progress
        self.current = "setup"
        self.results = {c.name: _new_result(c) for c in contenders}
        self.loaded: dict[str, Runner] = {}
        self.reference: str | None = None
        self.seconds: dict[tuple[str, int], list[float]] = {
            (c.name, b): [] for c in contenders for b in settings.batch_sizes}
        self.latencies: dict[str, list[float]] = {c.name: [] for c in contenders}
        self.latency_chunks = self._latency_texts()

    def step(self, description: str | None, total: int | None = None) -> None:
        if description is not None:
            self.current = description
        if self.progress:
            self.progress(description, total=total)

    def _latency_texts(self) -> list[list[str]]:
        """Evenly spaced texts, so the length mix is the corpus's; in chunks of 8 per turn."""
        n, count = len(self.corpus), self.settings.latency_samples
        texts = [self.corpus[(i * n) // count % n] for i in range(count)]
        return [texts[i:i + 8] for i in range(0, len(texts), 8)]

    def load(self) -> None:
        self.step(None, total=len(self.contenders))
        for contender in self.contenders:
            self.step(f"loading {contender.name}")
            if contender.unavailable:
                continue
            try:
                self.loaded[contender.name] = contender.load()
            except Exception as error:  # a contender that cannot load is reported, not fatal
                _mark_unavailable(self.results[contender.name], error)
        onnx = [c.name for c in self.contenders if c.kind == "onnx" and c.name in self.loaded]
        self.reference = "pytorch" if "pytorch" in self.loaded else next(iter(onnx + list(self.loaded)), None)
        if self.reference is None:
            raise InputError("nothing could be loaded: " + "; ".join(
                f"{r['name']}: {r['reason']}" for r in self.results.values()))
        s, n = self.settings, len(self.loaded)
        cold = sum(1 for c in self.contenders if c.cold_start and c.name in self.loaded) if s.cold_start else 0
        self.step(None, total=len(self.contenders) + n * (1 + bool(s.warmup)) + s.repeats * n * len(s.batch_sizes)
                  + len(self.latency_chunks) * n + cold)

    def quality(self) -> None:
        expected = self._guarded(self.reference, lambda r: r.outputs(self.corpus), "quality")
        for name in list(self.loaded):
            self.step(f"quality of {name}")
            if expected is not None:
                got = expected if name == self.reference else self._guarded(
                    name, lambda r: r.outputs(self.corpus), "quality")
                if got is not None:
                    self.results[name]["quality"] = self._guarded(
                        name, lambda r: _quality(self.art, self.reference, name, got, expected, self.corpus),
                        "quality")

    def warm_up(self) -> None:
        if not self.settings.warmup:
            return
        for name in list(self.loaded):
            self.step(f"warm-up {name}")
            for batch_size in self.settings.batch_sizes:
                head = self.corpus[: max(2 * batch_size, 16)]
                for _ in range(self.settings.warmup):
                    self._guarded(name, lambda r: r.run(head, batch_size), "warm-up")

    def throughput(self) -> None:
        for repeat in range(self.settings.repeats):
            gc.collect()
            for name in list(self.loaded):
                for batch_size in self.settings.batch_sizes:
                    self.step(f"throughput {name} at batch {batch_size} ({repeat + 1}/{self.settings.repeats})")
                    elapsed = self._timed(name, lambda r: r.run(self.corpus, batch_size))
                    if elapsed is not None:
                        self.seconds[(name, batch_size)].append(elapsed)

    def latency(self) -> None:
        for chunk in self.latency_chunks:
            gc.collect()
            for name in list(self.loaded):
                self.step(f"latency {name}")
                for text in chunk:
                    elapsed = self._timed(name, lambda r: r.run([text], 1))
                    if elapsed is None:
                        break
                    self.latencies[name].append(elapsed)

    def cold_starts(self) -> None:
        if not self.settings.cold_start:
            return
        measured = [c for c in self.contenders if c.cold_start and c.name in self.loaded]
        self.loaded.clear()  # free this process's memory before the fresh ones start
        gc.collect()
        order = sorted(range(len(self.corpus)), key=lambda i: -self.tokens[i])
        longest = [self.corpus[i] for i in order[: self.settings.rss_batch or max(self.settings.batch_sizes)]]
        for contender in measured:
            self.step(f"cold start {contender.name}")
            self.results[contender.name]["cold_start"] = measure_cold_start(contender, self.corpus[0], longest)

    def _guarded(self, name: str, work: Callable[[Runner], Any], what: str) -> Any:
        """Run `work` on a loaded contender; an error drops the contender, with the reason."""
        runner = self.loaded.get(name)
        if runner is None:
            return None
        try:
            return work(runner)
        except Exception as error:
            _mark_unavailable(self.results[name], error, during=what)
            self.loaded.pop(name, None)
            return None

    def _timed(self, name: str, work: Callable[[Runner], Any]) -> float | None:
        """Seconds `work` takes on a loaded contender (None when it is not loaded or fails)."""
        if name not in self.loaded:
            return None
        # As timeit does: no garbage collection inside the timed region (it runs between
        # passes instead; one per call would cost more than a tiny model's call itself).
        enabled = gc.isenabled()
        gc.disable()
        try:
            started = time.perf_counter()
            self._guarded(name, work, "timing")
            elapsed = time.perf_counter() - started
        finally:
            if enabled:
                gc.enable()
        return elapsed if name in self.loaded else None


def _mark_unavailable(result: dict, error: BaseException, during: str | None = None) -> None:
    message = first_line(error)
    if not isinstance(error, InputError) and type(error).__module__.split(".")[0] != "onnxport":
        message = f"{type(error).__name__}: {message}"
    result["available"] = False
    result["reason"] = f"failed during {during}: {message}" if during else message


def _quality(art: Artifact, reference: str, name: str, got: list[dict], expected: list[dict],
             corpus: list[str]) -> dict:
    """verify's quality metrics (cosine / neighbours, label or entity agreement) against the reference."""
    if name == reference:
        return {"reference": reference, "is_reference": True}
    output = next(iter(expected[0]))
    masks = [np.ones((1, e[output].shape[1] if e[output].ndim == 3 else 1), dtype=bool) for e in expected]
    for g, e in zip(got, expected):  # per-token outputs must line up token for token
        if g[output].ndim == 3 and g[output].shape != e[output].shape:
            raise InputError(f"{name} gives {output} of shape {g[output].shape}, the reference {e[output].shape}")
    checks = quality_checks(art.task, output, got, expected, masks, corpus, QUALITY_DEFAULTS, art.labels)
    metrics = {k: v for check in checks for k, v in check.measured.items()}
    if art.task in EMBEDDING_TASKS:  # mean cosine is the headline number; quality_checks' name says "fp32"
        metrics = {"mean_cosine": metrics["mean_cosine"], "min_cosine": metrics["min_cosine"],
                   **{k: v for k, v in metrics.items() if k not in ("mean_cosine", "min_cosine")}}
    return {"reference": reference, "is_reference": False, "passed": all(c.passed for c in checks),
            "metrics": metrics, "limits": {k: v for c in checks for k, v in c.limits.items()},
            "worst_input": next((c.worst_input for c in checks if c.worst_input), None)}


# ---------------------------------------------------------------- the report

def _machine() -> dict:
    cpu, flags = None, set()
    with contextlib.suppress(OSError):  # Linux; elsewhere the platform's processor name
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu is None:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    cpu = cpu or platform.processor() or platform.machine()
    versions = {}
    for package in ("onnxport", "onnxruntime", "torch", "transformers", "sentence-transformers", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # A shared machine's load changes every number; the report says what it was.
    load_average = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "usable_cpus": affinity, "load_average": load_average,
            "cpu_flags": [f for f in _CPU_FLAGS if f in flags], "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def _new_report(art: Artifact, settings: Settings, threads: int, corpus: list[str], tokens: list[int],
                truncated: int, texts_source: str | None) -> dict:
    source = art.manifest.get("source", {}).get("path")
    return {
        "format": 1,
        "artifact": str(art.path),
        "model": _model_name(art),
        "task": art.task.value,
        "source": source,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "partial": False,
        "interrupted_during": None,
        "machine": _machine(),
        "settings": {"threads": threads, "batch_sizes": list(settings.batch_sizes), "repeats": settings.repeats,
                     "warmup": settings.warmup, "latency_samples": settings.latency_samples,
                     "cold_start": settings.cold_start,
                     "rss_batch": min(settings.rss_batch or max(settings.batch_sizes), len(corpus))},
        "texts": {"source": texts_source or "given", "count": len(corpus), "tokens": int(sum(tokens)),
                  "tokens_min": int(min(tokens)), "tokens_mean": round(float(np.mean(tokens)), 1),
                  "tokens_max": int(max(tokens)), "max_length": art.manifest["tokenizer"]["max_length"],
                  "truncated": truncated},
        "reference": None,
        "contenders": [],
    }


def _model_name(art: Artifact) -> str:
    source = art.manifest.get("source", {})
    path = Path(source.get("path") or art.path)
    # Packaged models live in .../<package>/model; the package name says more than "model".
    return path.parent.name if path.name == "model" and path.parent.name else path.name


def _new_result(contender: Contender) -> dict:
    return {"name": contender.name, "kind": contender.kind, "file": contender.file,
            "size_bytes": contender.size_bytes, "verified": contender.verified,
            "available": contender.unavailable is None, "reason": contender.unavailable,
            "throughput": [], "latency_ms": None, "cold_start": None, "quality": None}


def _summarize(report: dict, run: _Run) -> None:
    """Medians, spreads, percentiles and speed-ups from the raw timings."""
    results, seconds, latencies = run.results, run.seconds, run.latencies
    count, total_tokens = len(run.tokens), int(sum(run.tokens))
    baseline = report["reference"]
    report["baseline"] = baseline
    for result in results.values():
        result["throughput"] = []
        for batch_size in report["settings"]["batch_sizes"]:
            runs = seconds[(result["name"], batch_size)]
            row = {"batch_size": batch_size, "runs": len(runs), "seconds": runs,
                   "texts_per_s": None, "texts_per_s_min": None, "texts_per_s_max": None, "tokens_per_s": None,
                   "speedup": None}
            if runs:
                median = float(np.median(runs))
                row.update(texts_per_s=count / median, texts_per_s_min=count / max(runs),
                           texts_per_s_max=count / min(runs), tokens_per_s=total_tokens / median)
            result["throughput"].append(row)
        samples = latencies[result["name"]]
        if samples:
            p50, p95, p99 = np.percentile(np.array(samples) * 1000, [50, 95, 99])
            result["latency_ms"] = {"batch_size": 1, "samples": len(samples), "p50": float(p50), "p95": float(p95),
                                    "p99": float(p99)}
    base = results.get(baseline)
    for result in results.values():
        for row in result["throughput"]:
            base_row = next((r for r in base["throughput"] if r["batch_size"] == row["batch_size"]), None) \
                if base else None
            if row["texts_per_s"] and base_row and base_row["texts_per_s"]:
                row["speedup"] = row["texts_per_s"] / base_row["texts_per_s"]


# ---------------------------------------------------------------- rendering

def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _mb(size: int | None) -> str:
    return "–" if size is None else f"{size / 1e6:,.1f}"


def quality_text(quality: dict | None) -> str:
    if not quality:
        return "–"
    if quality.get("is_reference"):
        return "reference"
    m = quality["metrics"]
    if "mean_cosine" in m:
        text = f"cos {m['mean_cosine']:.5f} (min {m['min_cosine']:.5f})"
    elif "entity_f1" in m:
        text = f"tokens {m['label_agreement']:.1%}, entity F1 {m['entity_f1']:.3f}"
    else:
        text = f"labels agree {m['label_agreement']:.1%}"
    return text if quality["passed"] else text + " BELOW TARGET"


def _speedup(row: dict) -> str:
    return "–" if row["speedup"] is None else f"{row['speedup']:.2f}x"


def _cold(result: dict) -> tuple[str, str]:
    cold = result["cold_start"]
    if not cold:
        return "–", "–"
    if "error" in cold:
        return "failed", "–"
    return f"{cold['seconds']:.2f}", _fmt(cold.get("peak_rss_mb"), 0)


def throughput_rows(report: dict) -> list[list[str]]:
    rows = []
    for result in report["contenders"]:
        for row in result["throughput"]:
            if not result["available"] and not row["runs"]:
                continue
            spread = "–" if not row["runs"] else f"{_fmt(row['texts_per_s_min'])}–{_fmt(row['texts_per_s_max'])}"
            rows.append([result["name"], str(row["batch_size"]), _fmt(row["texts_per_s"]), spread,
                         _fmt(row["tokens_per_s"], 0), _speedup(row), str(row["runs"])])
    return rows


def summary_rows(report: dict) -> list[list[str]]:
    rows = []
    for result in report["contenders"]:
        if not result["available"] and not result["latency_ms"]:
            continue
        latency = result["latency_ms"] or {}
        cold, rss = _cold(result)
        rows.append([result["name"], _fmt(latency.get("p50"), 2), _fmt(latency.get("p95"), 2),
                     _fmt(latency.get("p99"), 2), cold, rss, _mb(result["size_bytes"]),
                     quality_text(result["quality"])])
    return rows


SUMMARY_COLUMNS = ["contender", "p50 ms", "p95 ms", "p99 ms", "cold start s", "peak RSS MB", "size MB", "quality"]


def throughput_columns(report: dict) -> list[str]:
    """The speed-up column names its baseline: PyTorch, or fp32 ONNX when PyTorch is unavailable."""
    return ["contender", "batch", "texts/s (median)", "min–max", "tokens/s",
            f"speed-up vs {report['baseline'] or '–'}", "runs"]


def _intro(report: dict) -> list[str]:
    s, t, m = report["settings"], report["texts"], report["machine"]
    baseline = report["baseline"]
    lines = [
        f"Artifact `{report['artifact']}` ({report['task']}, {report['model']}), {report['created']}.",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable of {m['logical_cpus']} logical CPUs"
        + (f" ({' '.join(m['cpu_flags'])})" if m["cpu_flags"] else "") + f", {m['platform']}, Python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + "."
        + (f" Load average (1/5/15 min) {'/'.join(map(str, m['load_average']))} at the start, "
           f"{'/'.join(map(str, m.get('load_average_end') or []))} at the end." if m.get("load_average") else ""),
        f"Texts: {t['count']} from {t['source']}; {t['tokens_min']}–{t['tokens_max']} tokens (mean "
        f"{t['tokens_mean']}), {t['truncated']} truncated at {t['max_length']}. Tokens counted by the artifact's "
        "tokenizer for every contender.",
        f"Every contender uses {s['threads']} thread{'s' if s['threads'] != 1 else ''}. After an untimed quality "
        f"pass over all texts and {s['warmup']} warm-up pass(es) per batch size, {s['repeats']} timed passes over "
        "all texts per batch size (median, with min–max), contenders taking turns within each pass; latency from "
        f"{s['latency_samples']} single-text calls.",
    ]
    if baseline == "pytorch":
        lines.append("Speed-up: throughput divided by PyTorch's at the same batch size, measured in this run.")
    elif baseline:
        lines.append(f"**PyTorch is unavailable**, so speed-up and quality are relative to `{baseline}` instead.")
    lines.append("Cold start: import + load + first result in a fresh interpreter; peak RSS of that process "
                 f"after one more batch of the {s.get('rss_batch') or max(s['batch_sizes'])} longest texts.")
    return lines


def to_markdown(report: dict) -> str:
    lines = [f"# onnxport bench: {report['model']}", ""]
    if report["partial"]:
        lines += [f"**Partial report**: interrupted during {report['interrupted_during']}; "
                  "only what was measured until then is shown.", ""]
    lines += [f"{line}  " for line in _intro(report)] + [""]
    for title, columns, rows in (("Throughput", throughput_columns(report), throughput_rows(report)),
                                 ("Latency at batch 1, cold start, memory, size, quality", SUMMARY_COLUMNS,
                                  summary_rows(report))):
        alignment = ["---" if i == 0 or column == "quality" else "---:" for i, column in enumerate(columns)]
        lines += [f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "|".join(alignment) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows] + [""]
    unavailable = [r for r in report["contenders"] if not r["available"]]
    if unavailable:
        lines += ["## Not measured", ""] + [f"- **{r['name']}**: {r['reason']}" for r in unavailable] + [""]
    failed_cold = [r for r in report["contenders"] if r["cold_start"] and "error" in r["cold_start"]]
    lines += [f"- cold start of **{r['name']}** failed: {r['cold_start']['error']}" for r in failed_cold]
    return "\n".join(lines).rstrip() + "\n"


def print_report(report: dict, console) -> None:
    """The two tables (and what was not measured) on a rich console."""
    from rich.markup import escape
    from rich.table import Table

    from rich.console import Console

    if not console.is_terminal:  # a pipe or a file has no width to respect: do not crop the numbers
        console = Console(file=console.file, width=160, highlight=False, soft_wrap=True, no_color=True)
    title = f"{report['model']}: {report['texts']['count']} texts, {report['settings']['threads']} thread(s)"
    for columns, rows, caption in ((throughput_columns(report), throughput_rows(report), title),
                                   (SUMMARY_COLUMNS, summary_rows(report), "latency at batch 1, cold start, memory")):
        table = Table(title=caption, title_justify="left")
        for i, column in enumerate(columns):
            table.add_column(column, justify="left" if i == 0 or column == "quality" else "right",
                             no_wrap=column != "quality")
        for row in rows:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
    if report["baseline"] != "pytorch":
        console.print(f"[yellow]PyTorch unavailable[/]: speed-up and quality are relative to {report['baseline']}")
    for result in report["contenders"]:
        if not result["available"]:
            console.print(f"[yellow]not measured[/] {escape(result['name'])}: {escape(result['reason'])}")
    if report["partial"]:
        console.print(f"[yellow]partial[/]: interrupted during {escape(report['interrupted_during'])}")


def draw_chart(report: dict) -> bytes:
    """PNG bytes, CHART_SIZE pixels: throughput per contender and batch size (min–max whiskers,
    speed-up on the largest batch), and p95 latency at batch 1 with quality beside each bar."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("the chart needs matplotlib: pip install \"onnxport[bench]\"") from None

    measured = [r for r in report["contenders"] if any(row["runs"] for row in r["throughput"]) or r["latency_ms"]]
    names = [r["name"] for r in measured]
    sizes = report["settings"]["batch_sizes"]
    dpi = 100
    figure, (left, right) = plt.subplots(1, 2, figsize=(CHART_SIZE[0] / dpi, CHART_SIZE[1] / dpi), dpi=dpi,
                                         gridspec_kw={"width_ratios": [1.35, 1]})
    width = 0.8 / max(len(sizes), 1)
    colors = plt.get_cmap("tab10").colors
    for i, batch_size in enumerate(sizes):
        rows = [next(row for row in r["throughput"] if row["batch_size"] == batch_size) for r in measured]
        values = [row["texts_per_s"] or 0 for row in rows]
        low = [max(v - (row["texts_per_s_min"] or v), 0) for v, row in zip(values, rows)]
        high = [max((row["texts_per_s_max"] or v) - v, 0) for v, row in zip(values, rows)]
        x = np.arange(len(names)) + (i - (len(sizes) - 1) / 2) * width
        left.bar(x, values, width, yerr=[low, high], capsize=2, label=f"batch {batch_size}", color=colors[i % 10])
        for xi, value, top, row in zip(x, values, high, rows):
            if row["speedup"] is not None:  # above the whisker, so it is never hidden
                left.annotate(f"{row['speedup']:.1f}x", (xi, value + top), ha="center", va="bottom", fontsize=7,
                              xytext=(0, 2), textcoords="offset points")
    left.set_xticks(np.arange(len(names)), [n.replace(" ", "\n", 1) for n in names], fontsize=8)
    left.set_ylabel("texts / s (median, min–max)")
    left.set_title(f"Throughput per batch size (labels: speed-up vs {report['baseline'] or '–'})", fontsize=10)
    left.legend(fontsize=8)
    left.grid(axis="y", alpha=0.3)

    p95 = [(r["latency_ms"] or {}).get("p95") or 0 for r in measured]
    y = np.arange(len(names))
    right.barh(y, p95, color=colors[len(sizes) % 10])
    right.set_yticks(y, names, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("p95 latency at batch 1 (ms)")
    right.set_title(f"Latency and quality vs {report['reference'] or '(nothing loaded)'}", fontsize=10)
    right.set_xlim(0, max(p95 + [1e-3]) * 1.9)  # room for the quality text
    for yi, value, result in zip(y, p95, measured):
        right.annotate(f"{value:.1f} ms  {quality_text(result['quality'])}", (value, yi), va="center",
                       fontsize=7.5, xytext=(4, 0), textcoords="offset points")
    right.grid(axis="x", alpha=0.3)

    m = report["machine"]
    title = (f"onnxport bench: {report['model']} ({report['task']}), {report['texts']['count']} texts, "
             f"{report['settings']['threads']} thread(s), {m['cpu']} ({m['usable_cpus']} CPUs)")
    figure.suptitle(title + ("  [PARTIAL]" if report["partial"] else ""), fontsize=11)
    missing = [r["name"] for r in report["contenders"] if not r["available"] and r["name"] not in names]
    if missing:
        figure.text(0.01, 0.01, "not measured: " + ", ".join(missing) + " (reasons in report.md)", fontsize=7.5)
    figure.tight_layout(rect=(0, 0.03, 1, 0.95))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)  # no bbox_inches="tight": it would change the size
    plt.close(figure)
    return buffer.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def prepare_report_dir(report_dir: str | Path) -> Path:
    """Create REPORT_DIR up front, so a bad path fails before minutes of measuring."""
    folder = Path(report_dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"report directory {folder} is a file; choose a directory path with -o")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot create report directory {folder}: {error.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise InputError(f"report directory {folder} is not writable; choose another with -o")
    return folder


def write_reports(report: dict, report_dir: str | Path) -> dict[str, Path]:
    """report.md, report.json and chart.png, each written to a temp file and renamed."""
    folder = prepare_report_dir(report_dir)
    chart = draw_chart(report)
    written = {}
    for name, data in (("report.json", (json.dumps(report, indent=2) + "\n").encode()),
                       ("report.md", to_markdown(report).encode()), ("chart.png", chart)):
        _write_atomic(folder / name, data)
        written[name] = folder / name
    return written


def bench(artifact: str | Path, *, report_dir: str | Path, texts_file: str | Path | None = None,
          batch_sizes: Sequence[int] | None = None, against: Sequence[str] = (), quick: bool = False,
          threads: int | None = None, progress: Callable[..., None] | None = None,
          extra_contenders: Sequence[Contender] = ()) -> dict:
    """What `onnxport bench` does: measure, then write the three report files."""
    art = Artifact(artifact)
    overrides = {"batch_sizes": tuple(batch_sizes) if batch_sizes else None, "threads": threads}
    settings = Settings.quick(**overrides) if quick else dataclasses.replace(
        Settings(), **{k: v for k, v in overrides.items() if v is not None})
    texts = read_texts(texts_file) if texts_file else None
    prepare_report_dir(report_dir)
    report = measure(art, texts=texts, texts_source=str(texts_file) if texts_file else None, settings=settings,
                     against=against, extra_contenders=extra_contenders, progress=progress)
    report["files"] = {name: str(path) for name, path in write_reports(report, report_dir).items()}
    return report


@contextlib.contextmanager
def live_progress(console) -> Iterator[Callable[..., None] | None]:
    """A rich progress bar on a terminal (None elsewhere), as the callback `measure` takes."""
    if not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("bench", total=None)

        def update(description: str | None, total: int | None = None) -> None:
            if total is not None:
                bar.update(task, total=total)
            if description is not None:
                bar.update(task, description=description, advance=1)

        yield update
