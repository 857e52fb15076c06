"""Measuring: the settings, the turns the contenders take, and what each turn records.

`measure` loads every contender, then runs the phases of a `_Run` in order (quality, warm-up,
throughput, latency, cold start), and returns the report dict with the summary numbers
(report.py). Quality is verify's metrics against the reference; machine facts say where
it ran.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import platform
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...checks.quality import QUALITY_DEFAULTS, quality_checks
from ...core.artifact import Artifact
from ...core.cpus import cpu_flags, cpu_name
from ...core.sample_texts import length_mix_texts
from ...core.spec import Task
from ...errors import InputError
from ...runtime.session import default_threads
from ...runtime.tokenization import TextEncoder
from .cold_start import measure_cold_start
from .contenders import EMBEDDING_TASKS, Contender, Runner, artifact_contenders
from .report import _mark_unavailable, _new_report, _new_result, _summarize

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

    def recorded(self, threads: int, texts: int) -> dict:
        """As the report records them: the threads used, and the RSS batch no larger than the texts."""
        return {"threads": threads, "batch_sizes": list(self.batch_sizes), "repeats": self.repeats,
                "warmup": self.warmup, "latency_samples": self.latency_samples, "cold_start": self.cold_start,
                "rss_batch": min(self.rss_batch or max(self.batch_sizes), texts)}


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
    scratch = Path(tempfile.mkdtemp(prefix="onnxport-bench-"))  # what contenders save, for this run only
    try:
        contenders = artifact_contenders(art, threads=threads, against=against, scratch=scratch) \
            + list(extra_contenders)
        names = [c.name for c in contenders]
        if len(set(names)) != len(names):
            raise InputError(f"contender names must be unique: {', '.join(names)}")
        return _measure(art, settings, contenders, corpus, threads, texts_source, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _measure(art: Artifact, settings: Settings, contenders: list[Contender], corpus: list[str], threads: int,
             texts_source: str | None, progress: Callable[..., None] | None) -> dict:
    run = _Run(art, settings, contenders, corpus, progress)
    report = _new_report(art, settings.recorded(threads, len(corpus)), machine_facts(), corpus, run.tokens,
                         run.truncated, texts_source)
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
        run.unload()
    report["seconds"] = round(time.perf_counter() - started, 1)
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["contenders"] = list(run.results.values())
    _summarize(report, run.results, run.seconds, run.latencies, run.tokens)
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
        for name, runner in list(self.loaded.items()):  # workers load side by side; wait for each
            if hasattr(runner, "wait_ready"):
                if self._guarded(name, lambda r: r.wait_ready() or True, "loading"):
                    self.results[name]["runs_in"] = {"python": runner.python, "detail": runner.detail,
                                                     "versions": runner.versions}
        onnx = [c.name for c in self.contenders if c.kind == "onnx" and c.name in self.loaded]
        self.reference = "pytorch" if "pytorch" in self.loaded else next(iter(onnx + list(self.loaded)), None)
        if self.reference is None:
            raise InputError("nothing could be loaded: " + "; ".join(
                f"{r['name']}: {r['reason']}" for r in self.results.values()))
        s, n = self.settings, len(self.loaded)
        cold = sum(1 for c in self.contenders if c.program and c.name in self.loaded) if s.cold_start else 0
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
                self._collect(name)
                for batch_size in self.settings.batch_sizes:
                    self.step(f"throughput {name} at batch {batch_size} ({repeat + 1}/{self.settings.repeats})")
                    elapsed = self._timed(name, self.corpus, batch_size)
                    if elapsed is not None:
                        self.seconds[(name, batch_size)].append(elapsed)

    def latency(self) -> None:
        for chunk in self.latency_chunks:
            gc.collect()
            for name in list(self.loaded):
                self._collect(name)
                self.step(f"latency {name}")
                for text in chunk:
                    elapsed = self._timed(name, [text], 1)
                    if elapsed is None:
                        break
                    self.latencies[name].append(elapsed)

    def cold_starts(self) -> None:
        if not self.settings.cold_start:
            return
        measured = [c for c in self.contenders if c.program and c.name in self.loaded]
        self.unload()  # free the memory of this process and the workers before the fresh ones start
        gc.collect()
        order = sorted(range(len(self.corpus)), key=lambda i: -self.tokens[i])
        longest = [self.corpus[i] for i in order[: self.settings.rss_batch or max(self.settings.batch_sizes)]]
        for contender in measured:
            self.step(f"cold start {contender.name}")
            self.results[contender.name]["cold_start"] = measure_cold_start(contender.program, self.corpus[0], longest)

    def unload(self) -> None:
        """Close every loaded contender (workers exit), keeping what was measured."""
        while self.loaded:
            _close(self.loaded.popitem()[1])

    def _collect(self, name: str) -> None:
        """Garbage collection in a worker between passes, as gc.collect() here does for in-process runners."""
        if hasattr(self.loaded.get(name), "collect"):
            self._guarded(name, lambda r: r.collect(), "timing")

    def _guarded(self, name: str, work: Callable[[Runner], Any], what: str) -> Any:
        """Run `work` on a loaded contender; an error drops the contender, with the reason."""
        runner = self.loaded.get(name)
        if runner is None:
            return None
        try:
            return work(runner)
        except Exception as error:
            _mark_unavailable(self.results[name], error, during=what)
            _close(self.loaded.pop(name, None))
            return None

    def _timed(self, name: str, texts: list[str], batch_size: int) -> float | None:
        """Seconds one `run` takes on a loaded contender (None when it is not loaded or fails).
        A worker times the call itself (`timed_run`), so the pipe to it is not counted."""
        runner = self.loaded.get(name)
        if runner is None:
            return None
        if hasattr(runner, "timed_run"):
            return self._guarded(name, lambda r: r.timed_run(texts, batch_size), "timing")
        # As timeit does: no garbage collection inside the timed region (it runs between
        # passes instead; one per call would cost more than a tiny model's call itself).
        enabled = gc.isenabled()
        gc.disable()
        try:
            started = time.perf_counter()
            self._guarded(name, lambda r: r.run(texts, batch_size), "timing")
            elapsed = time.perf_counter() - started
        finally:
            if enabled:
                gc.enable()
        return elapsed if name in self.loaded else None


def _close(runner: Runner | None) -> None:
    close = getattr(runner, "close", None)
    if close:
        close()


def _quality(art: Artifact, reference: str, name: str, got: list[dict], expected: list[dict],
             corpus: list[str]) -> dict:
    """verify's quality metrics (cosine / neighbours, label or entity agreement) against the reference."""
    if name == reference:
        return {"reference": reference, "is_reference": True}
    output = next(iter(expected[0]))
    # the runners kept the judged tokens only (all of them count); a question answerer's
    # logits are 2-D, one number per token
    per_token = art.task is Task.QUESTION_ANSWERING or expected[0][output].ndim == 3
    masks = [np.ones((1, e[output].shape[1] if per_token else 1), dtype=bool) for e in expected]
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


def machine_facts() -> dict:
    """The CPU (name, usable count, ISA flags), load and package versions a figure was measured with."""
    flags = cpu_flags()
    versions = {}
    for package in ("onnxport", "onnxruntime", "torch", "transformers", "sentence-transformers", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # A shared machine's load changes every number; the report says what it was.
    load_average = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "usable_cpus": affinity, "load_average": load_average,
            "cpu_flags": [f for f in _CPU_FLAGS if f in flags], "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}
