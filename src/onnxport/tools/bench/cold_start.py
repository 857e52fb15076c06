"""Cold start and peak memory, measured in a fresh interpreter.

Each contender's program (its script from scripts.py, run by this interpreter or a side
environment's) is followed by the epilogue below: time to the first result counts from
the script's first line (import + load + first result); then one batch of the longest
texts and the process's peak RSS. `measure_cold_start` reads the numbers back as JSON.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Protocol

from .scripts import PRELUDE
from .workers import worker_env


class Program(Protocol):
    """What `measure_cold_start` needs: a contender's script, its args and its interpreter."""

    script: str
    args: dict

    def python(self) -> str: ...


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


def measure_cold_start(program: Program, first: str, batch: list[str], timeout: float = 600) -> dict:
    """Run the contender's script in a fresh interpreter: import + load + first result (seconds,
    timed inside the script), and peak RSS after one more batch."""
    args = {**program.args, "first": first, "batch": batch}
    started = time.perf_counter()
    try:
        done = subprocess.run([program.python(), "-c", PRELUDE + program.script + _COLD_EPILOGUE, json.dumps(args)],
                              capture_output=True, text=True, env=worker_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f} s"}
    wall = time.perf_counter() - started
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1][:300] if lines else f"exit code {done.returncode}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "process_seconds": wall}
