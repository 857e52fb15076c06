"""The CPU this runs on: how many CPUs this process may really use (the smallest of the
host's count, the CPU affinity mask and the cgroup CPU quota: a container limited to 2 CPUs
on a 64-core host must not start 64 onnxruntime threads), its model name, its instruction
set flags, and the best int8 instruction set among them. Read at run time, never assumed:
the machines change between runs."""

from __future__ import annotations

import functools
import math
import os
import platform
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = _CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None


def available_cpus() -> int:
    """Logical CPUs this process may use: affinity mask, capped by the cgroup quota (rounded up)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str | None, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; (None, empty) where there is none."""
    name, flags = None, frozenset()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None, flags
    for line in lines:
        if line.startswith("model name") and name is None:
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = frozenset(line.split(":", 1)[1].split())
    return name, flags


def cpu_name() -> str:
    """'AMD EPYC', 'Intel(R) Xeon(R) Platinum 8480C', ...: what figures and verdicts are tied to."""
    return _cpuinfo()[0] or platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The instruction set flags /proc/cpuinfo lists (empty elsewhere)."""
    return _cpuinfo()[1]


def detect_isa() -> str:
    """The best int8 instruction set this CPU has: avx512_vnni (AVX-512 VNNI or AVX-VNNI),
    avx512, avx2, arm64 or generic."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    flags = cpu_flags()
    if not flags:
        return "generic"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags or "avx512bw" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    return "generic"
