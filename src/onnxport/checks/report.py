"""The result of verifying one model file: each check, the reference, and the verdict.

A verdict needs a reference. `passed` means every check held *and* the file was compared
with a trusted reference (PyTorch, or the fp32 model.onnx that PyTorch verified). Checks
that only look at the file itself (padding invariance, running at each shape) can fail it
but never pass it alone: with no trusted reference the verdict is "not verified".
"""

from __future__ import annotations

import dataclasses

from ..core.artifact import FAILED, NOT_VERIFIED, PASSED


@dataclasses.dataclass
class CheckResult:
    """One comparison: what was compared, the measured numbers and the worst input."""

    name: str
    output: str
    passed: bool
    measured: dict[str, float]
    limits: dict[str, float]
    worst_input: str | None = None
    shape: list[int] | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        # numpy comparisons give numpy types; the manifest is JSON.
        self.passed = bool(self.passed)
        self.measured = {k: float(v) for k, v in self.measured.items()}
        self.limits = {k: float(v) for k, v in self.limits.items()}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ParityReport:
    """Every check run on one model file, what it was compared with, and the verdict."""

    model_file: str
    mode: str  # "atol" | "quality"
    reference: str  # what the file was compared with; "none" when nothing was
    checks: list[CheckResult]
    texts: int
    shapes: list[list[int]]
    skipped: list[str] = dataclasses.field(default_factory=list)
    # Why there is no verdict although no check failed: no reference, or an unverified one.
    unverified_reason: str | None = None
    # Where verify put it in the manifest: "verdict", "beside", "not recorded", "read-only".
    recorded: str | None = dataclasses.field(default=None, compare=False)
    # The engine that ran the file, when not onnxruntime: "OpenVINO 2026.4.1 CPU, bf16".
    engine: str | None = None

    @property
    def verdict(self) -> str:
        if any(not c.passed for c in self.checks):
            return FAILED
        if not self.checks:
            return NOT_VERIFIED
        return NOT_VERIFIED if self.unverified_reason else PASSED

    @property
    def passed(self) -> bool:
        return self.verdict == PASSED

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def failure_summary(self) -> str:
        failed = self.failures()
        if not failed:
            if self.verdict == NOT_VERIFIED:
                return f"not verified: {self.unverified_reason or 'no checks ran'}"
            return "all checks passed"
        first = failed[0]
        numbers = ", ".join(f"{k} {v:.3g}" for k, v in first.measured.items())
        return f"{len(failed)} of {len(self.checks)} checks failed, first: {first.name} on {first.output} ({numbers})"

    def to_dict(self) -> dict:
        return {
            "model_file": self.model_file,
            **({"engine": self.engine} if self.engine else {}),
            "verdict": self.verdict,
            "passed": self.passed,
            "mode": self.mode,
            "reference": self.reference,
            "unverified_reason": self.unverified_reason,
            "texts": self.texts,
            "shapes": self.shapes,
            "skipped": self.skipped,
            "checks": [c.to_dict() for c in self.checks],
        }
