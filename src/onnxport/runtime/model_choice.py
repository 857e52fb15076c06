"""Which model file `load(model="auto")` runs on this machine, and why.

The candidates, in `AUTO_PREFERENCE` order (int8, then the fused opt file), then model.onnx.
A candidate is taken only when all of this holds:

* its verification passed and the file has not changed since (`Artifact.verified`);
* int8: where the quantizer also measured it on texts the guard never saw
  (`held_out_quality`), it met the same quality targets there;
* int8: its verdict carries over to this CPU. A file quantized without `reduce_range` (for
  VNNI or arm64) runs on an x86 CPU without VNNI through onnxruntime's u8s8 kernels, whose
  16-bit intermediate sums can saturate: quality judged on the quantizing machine says
  nothing about this one, so the file is passed over until it is quantized here;
* int8: where its speed-up over its source file was measured on this CPU model
  (`measured_on`) over passes long enough to mean something (`MIN_TIMED_SECONDS`), it was
  not clearly slower (`SLOWER`: the measurement is the best of 3 short passes, and a busy
  machine moves it by a few percent).

Then, among the other engines model.onnx was verified on (`verify --engine openvino`), one
verified on this CPU model whose speed was measured there against that very pick, at least
`FASTER` times as fast, replaces it (the fastest such). On CPUs without bf16 OpenVINO's f32
does not beat onnxruntime (docs/engines.md), so this is where bf16 on AMX comes in.

The choice says what was picked and why, and why each file before it was passed over.
"""

from __future__ import annotations

import dataclasses
import importlib.util

from ..core.artifact import ENGINES, FAILED, MODIFIED, PASSED, Artifact, engine_key
from ..core.cpus import cpu_name, detect_isa
from ..core.model_files import AUTO_PREFERENCE, MODEL_CHOICES, MODEL_FILE, QUALITY_KINDS
from ..errors import ArtifactError, InputError

# CPUs whose int8 kernels can saturate on weights quantized to the full 8 bits.
_SATURATING_ISAS = ("avx2", "avx512", "generic")
# A speed-up below this, measured on this CPU model, passes an int8 file over; a measurement
# whose source pass took less than MIN_TIMED_SECONDS (a tiny model) is noise and not used.
SLOWER = 0.9
MIN_TIMED_SECONDS = 0.2
# Another engine replaces onnxruntime's pick only when measured at least this much faster.
FASTER = 1.1


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """The model file to run, why, and each better-ranked file that was passed over."""

    file: str
    reason: str
    skipped: tuple[tuple[str, str], ...] = ()
    engine: str = "onnxruntime"
    precision: str | None = None  # another engine's (OpenVINO: f32 or bf16)

    def describe(self) -> str:
        passed_over = "".join(f"; passed over {name}: {why}" for name, why in self.skipped)
        return f"{self.reason}{passed_over}"


def auto_choice(artifact: Artifact, *, engines: bool = True) -> ModelChoice:
    """What `model="auto"` runs here (see the module docstring); `engines=False`: onnxruntime's
    pick only (for callers that run onnxruntime files, or asked for its providers)."""
    picked = _onnxruntime_choice(artifact)
    faster = _faster_engine(artifact, picked) if engines else None
    return faster or picked


def _onnxruntime_choice(artifact: Artifact) -> ModelChoice:
    skipped: list[tuple[str, str]] = []
    for kind in AUTO_PREFERENCE:
        name = MODEL_CHOICES[kind]
        if not (artifact.path / name).exists():
            continue
        verdict = artifact.verdict(name)
        if verdict != PASSED:
            skipped.append((name, "its verification failed" if verdict == FAILED else verdict))
            continue
        entry = artifact.files.get(name, {})
        problem = _int8_problem(entry) if kind == "int8" else None
        if problem:
            skipped.append((name, problem))
            continue
        return ModelChoice(name, _why(artifact, name, entry), tuple(skipped))
    if artifact.verdict(MODEL_FILE) == MODIFIED:  # never a silent pick of a changed file
        raise ArtifactError(
            f"{artifact.path / MODEL_FILE} was modified since it was verified and the artifact has no other "
            f"verified model file; re-judge it with `onnxport verify {artifact.path}`, restore it, or load it "
            "anyway with model='fp32'")
    verdict = artifact.verdict(MODEL_FILE)
    reason = "the exported file, verified" if verdict == PASSED else f"the exported file ({verdict})"
    return ModelChoice(MODEL_FILE, reason, tuple(skipped))


def _faster_engine(artifact: Artifact, picked: ModelChoice) -> ModelChoice | None:
    """model.onnx on another engine, verified on this CPU model and measured there at least
    FASTER times as fast as `picked` (the fastest such), or None."""
    best = None
    for key, entry in (artifact.files.get(MODEL_FILE, {}).get(ENGINES) or {}).items():
        speed = entry.get("speed") or {}
        if (artifact.engine_verdict(key) != PASSED or (entry.get("measured_on") or {}).get("cpu") != cpu_name()
                or speed.get("against") != picked.file or (speed.get("timed_seconds") or 0) < MIN_TIMED_SECONDS
                or (speed.get("speedup") or 0) < FASTER or importlib.util.find_spec(entry.get("engine") or "") is None):
            continue
        if best is None or speed["speedup"] > best["speed"]["speedup"]:
            best = entry
    if best is None:
        return None
    engine, precision, speedup = best["engine"], best["precision"], best["speed"]["speedup"]
    verification = best.get("verification") or {}
    measured = {k: v for check in verification.get("checks", []) for k, v in check.get("measured", {}).items()
                if verification.get("mode") == "quality"}  # a bf16 verdict's numbers; f32 is exact
    reason = (f"{MODEL_FILE} on {engine} {precision}, verified on this CPU"
              + (f" ({_metrics(measured)})" if measured else "") + f", {speedup:.2f}x {picked.file} here")
    passed_over = (picked.file, f"{engine} {precision} measured {speedup:.2f}x faster on this CPU")
    return ModelChoice(MODEL_FILE, reason, picked.skipped + (passed_over,), engine=engine, precision=precision)


def _int8_problem(entry: dict) -> str | None:
    """Why a verified int8 file should not run here (None: it may)."""
    held_out = entry.get("held_out_quality")
    if held_out and not held_out.get("passed", True):
        return f"below the quality targets on {held_out.get('texts')} held-out texts ({_metrics(held_out)})"
    here, made_for = detect_isa(), entry.get("isa")
    full_range = entry.get("reduce_range") is False  # weights use all 8 bits
    if full_range and here in _SATURATING_ISAS and made_for not in _SATURATING_ISAS:
        return (f"quantized for {made_for} without reduce_range, and this CPU ({here}, no VNNI) can saturate "
                "onnxruntime's u8s8 kernels, so its verdict does not carry over; run `onnxport quantize` here")
    measured = entry.get("measured_on") or {}
    speedup = entry.get("speedup_vs_source")
    long_enough = (entry.get("speedup_timed_seconds") or 0) >= MIN_TIMED_SECONDS
    if measured.get("cpu") == cpu_name() and long_enough and speedup is not None and speedup < SLOWER:
        return f"{speedup:.2f}x the speed of {entry.get('source_file', 'its source')} on this CPU ({cpu_name()})"
    return None


def _why(artifact: Artifact, name: str, entry: dict) -> str:
    kind = entry.get("kind", "fp32")
    if kind not in QUALITY_KINDS:
        return f"verified against {entry.get('verification', {}).get('reference') or 'its reference'}"
    parts = [f"verified by quality against {MODEL_FILE}"]
    if entry.get("quality"):
        parts.append(f"{_metrics(entry['quality'])} on the guard's texts")
    held_out = entry.get("held_out_quality")
    if held_out:
        parts.append(f"{_metrics(held_out)} on {held_out.get('texts')} held-out texts")
    speedup, measured = entry.get("speedup_vs_source"), entry.get("measured_on") or {}
    if speedup is not None:
        where = "this CPU" if measured.get("cpu") == cpu_name() else (measured.get("cpu") or "the quantizing machine")
        parts.append(f"{speedup:.2f}x {entry.get('source_file', 'its source')} on {where}")
    return ", ".join(parts)


def _metrics(measured: dict) -> str:
    """'mean cosine 0.9955, min cosine 0.9817' from a quality summary's numbers."""
    return ", ".join(f"{key.replace('_', ' ')} {value:.4f}" for key, value in measured.items()
                     if isinstance(value, float))


def engine_choice(artifact: Artifact, model: str, engine: str, precision: str) -> ModelChoice:
    """model.onnx on another engine: the only file it runs, and what its verdict there says."""
    if model not in ("auto", "fp32"):
        raise InputError(f"{engine} runs {MODEL_FILE} only (the other files hold onnxruntime's own operators); "
                         f"use model='auto' or 'fp32' with engine={engine!r}")
    key = engine_key(engine, precision)
    verdict, entry = artifact.engine_verdict(key), artifact.engine_entry(key)
    where = (entry.get("measured_on") or {}).get("cpu")
    if verdict == PASSED:
        on = "this CPU" if where == cpu_name() else (where or "another machine")
        reason = f"asked for ({engine} {precision}), verified on {on}"
    else:
        reason = f"asked for ({engine} {precision}), {verdict} on it"
    return ModelChoice(MODEL_FILE, reason, engine=engine, precision=precision)
