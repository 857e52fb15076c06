"""What does Ray cost on one machine? `onnxport embed` in one process against the same command
with `--engine ray`, over the same Parquet file, in the same run.

    python benchmarks/scale_ray.py [ARTIFACT] [--texts 20000] [--actors 2] [--cpus-per-actor 1]
                                   [--json out.json]

ARTIFACT defaults to artifacts/all-MiniLM-L6-v2 (the README's main command makes it). The
texts are onnxport's built-in mixed-length texts (seeded), with string ids.

1. `onnxport embed ARTIFACT in.parquet -o single.parquet` (one process, onnxruntime threads
   = the usable CPUs): the reference;
2. `onnxport embed ARTIFACT in.parquet -o ray.parquet --engine ray --actors N
   --cpus-per-actor K` (a local Ray started by the command).

Each is timed from process start to exit (Python start, model load and, for Ray, the
cluster's start and stop included), one after the other (never both at once: 2 cores).
The outputs are then compared row by row (by id): every id once, cosine >= 0.99999. On one
machine Ray cannot be faster than the single process: the figure is its overhead, which is
what a cluster pays per machine (docs/scale.md projects it to N machines).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from onnxport.core.sample_texts import builtin_texts
from onnxport.tools.bench.measurement import machine_facts

DEFAULT_ARTIFACT = Path("artifacts/all-MiniLM-L6-v2")


def timed(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as handle:
        finished = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {finished.returncode}); see {log}")
    return seconds


def vectors_by_id(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path, columns=["id", "embedding"])
    ids = table.column("id").to_pylist()
    if len(ids) != len(set(ids)):
        sys.exit(f"{path} repeats ids")
    return dict(zip(ids, np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", nargs="?", type=Path, default=DEFAULT_ARTIFACT)
    parser.add_argument("--texts", type=int, default=20000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--cpus-per-actor", type=int, default=1)
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON.")
    args = parser.parse_args()
    if not (args.artifact / "onnxport.json").exists():
        sys.exit(f"{args.artifact} is not an artifact; make one with `onnxport export -o {args.artifact}`")

    work = Path(tempfile.mkdtemp(prefix="onnxport-scale-bench-"))
    try:
        texts = builtin_texts(args.texts)
        ids = [f"doc-{i:06d}" for i in range(len(texts))]
        pq.write_table(pa.table({"id": ids, "text": texts}), work / "in.parquet")
        onnxport = [sys.executable, "-m", "onnxport.tools.cli", "embed", str(args.artifact), str(work / "in.parquet")]
        single = timed([*onnxport, "-o", str(work / "single.parquet")], work / "single.log")
        on_ray = timed([*onnxport, "-o", str(work / "ray.parquet"), "--engine", "ray", "--actors", str(args.actors),
                        "--cpus-per-actor", str(args.cpus_per_actor)], work / "ray.log")
        reference, scaled = vectors_by_id(work / "single.parquet"), vectors_by_id(work / "ray.parquet")
        if set(reference) != set(ids) or set(scaled) != set(ids):
            sys.exit("an output lost or added rows")
        a = np.stack([reference[i] for i in ids])
        b = np.stack([scaled[i] for i in ids])
        cosine = float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())
        ray_summary = next((line for line in (work / "ray.log").read_text().splitlines() if "rows in" in line), "")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    facts = machine_facts()
    report = {
        "machine": facts, "texts": len(texts), "actors": args.actors, "cpus_per_actor": args.cpus_per_actor,
        "single_process": {"seconds": round(single, 1), "texts_per_second": round(len(texts) / single, 1)},
        "ray": {"seconds": round(on_ray, 1), "texts_per_second": round(len(texts) / on_ray, 1),
                "summary": ray_summary.strip()},
        "ratio": round(single / on_ray, 3), "min_cosine": cosine,
    }
    print(f"## `--engine ray` against one process ({facts['cpu']}, {facts['usable_cpus']} usable CPUs)\n")
    print(f"{len(texts)} built-in texts of mixed length, {args.artifact}; wall time from process start to exit.\n")
    print("| run | seconds | texts/s | × single process |\n|---|---:|---:|---:|")
    print(f"| `onnxport embed` (one process) | {single:.1f} | {len(texts) / single:.1f} | 1.00 |")
    print(f"| `--engine ray`, {args.actors} actors × {args.cpus_per_actor} CPU | {on_ray:.1f} | "
          f"{len(texts) / on_ray:.1f} | {single / on_ray:.2f} |")
    print(f"\nEvery id once in both outputs; min cosine between them {cosine:.6f}. Ray's own summary: {ray_summary}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
