"""Cold start and peak memory, measured in a fresh interpreter.

Each contender carries one of the scripts below (contenders.py picks it): import, load, and
time to the first result; then one batch of the longest texts and the process's peak RSS.
`measure_cold_start` runs it with `sys.executable` and reads the numbers back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Protocol


class ColdStartable(Protocol):
    """What `measure_cold_start` needs of a Contender (contenders.py builds on this module)."""

    cold_start: dict | None  # {"script": python source, "args": {...}}


_COLD_PRELUDE = """
import json, sys, time
started = time.perf_counter()
args = json.loads(sys.argv[1])
"""
_COLD_ONNX = _COLD_PRELUDE + """
import onnxport
pipeline = onnxport.load(args["artifact"], model=args["model"], threads=args["threads"], providers=args["providers"])
from onnxport.tools.workloads import run_task
run = lambda texts, batch_size: run_task(pipeline, texts, batch_size)
"""
_COLD_TORCH = _COLD_PRELUDE + """
import torch
torch.set_num_threads(args["threads"])
import onnxport
pipeline = onnxport.load(args["artifact"], backend="torch")
from onnxport.tools.workloads import run_task
run = lambda texts, batch_size: run_task(pipeline, texts, batch_size)
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


def measure_cold_start(contender: ColdStartable, first: str, batch: list[str], timeout: float = 600) -> dict:
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
