"""How much faster than sentence-transformers, at what accuracy? One run, one process.

    python benchmarks/speed_vs_sentence_transformers.py ARTIFACT [--texts 2000] [--repeats 3]

ARTIFACT is an all-MiniLM-L6-v2 artifact with model.opt.onnx and model.int8.onnx
(`onnxport export -o ARTIFACT --quantize`). Every contender encodes the same texts at batch 32
in length-sorted batches (sentence-transformers sorts by length itself), with the same
number of threads; runs are interleaved and the median is reported. Also batch-1 latency
(p50/p95) on the first 200 texts, and each ONNX file's agreement with SentenceTransformer.encode.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-texts", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    import onnxport
    from onnxport import Artifact
    from onnxport.runtime.session import default_threads
    from onnxport.core.sample_texts import builtin_texts

    threads = args.threads or default_threads()
    torch.set_num_threads(threads)
    texts = builtin_texts(args.texts, seed=1)
    art = Artifact(args.artifact)
    source = art.manifest["source"]["path"]
    st = SentenceTransformer(source, device="cpu")
    contenders = {"sentence-transformers (PyTorch)": lambda batch, size: st.encode(batch, batch_size=size)}
    # The fp32 file once more with 32 rows per run and no token budget: what batching by tokens gains.
    rows_only = onnxport.load(art, model="fp32", threads=threads, max_batch_tokens=None)
    contenders["onnxport fp32, rows-only batches"] = lambda batch, size: rows_only.embed(batch, batch_size=size)
    for kind in ("fp32", "opt", "int8"):
        if (art.path / {"fp32": "model.onnx", "opt": "model.opt.onnx", "int8": "model.int8.onnx"}[kind]).exists():
            pipeline = onnxport.load(art, model=kind, threads=threads)
            contenders[f"onnxport {kind} ({pipeline.model_file})"] = (
                lambda batch, size, p=pipeline: p.embed(batch, batch_size=size))

    reference = st.encode(texts, batch_size=32)
    quality = {}
    for name, run in contenders.items():
        got = run(texts, 32)  # also the warm-up
        cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
        quality[name] = (float(np.abs(got - reference).max()), float(cosine.mean()), float(cosine.min()))

    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):  # interleaved, so a noisy neighbour hits everyone alike
        for name, run in contenders.items():
            started = time.perf_counter()
            run(texts, 32)
            seconds[name].append(time.perf_counter() - started)

    latency: dict[str, list[float]] = {name: [] for name in contenders}
    for text in texts[:args.latency_texts]:
        for name, run in contenders.items():
            started = time.perf_counter()
            run([text], 1)
            latency[name].append((time.perf_counter() - started) * 1000)

    base = statistics.median(seconds["sentence-transformers (PyTorch)"])
    base_p50 = float(np.percentile(latency["sentence-transformers (PyTorch)"], 50))
    print(f"{len(texts)} texts, batch 32, {threads} threads, {args.repeats} interleaved runs (median; min-max)\n")
    print("| contender | texts/s | × sentence-transformers | max abs diff | mean cos | min cos "
          "| batch-1 p50 ms | p95 ms | p50 speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in contenders:
        median = statistics.median(seconds[name])
        p50, p95 = np.percentile(latency[name], [50, 95])
        diff, mean_cos, min_cos = quality[name]
        print(f"| {name} | {len(texts) / median:.0f} ({len(texts) / max(seconds[name]):.0f}-"
              f"{len(texts) / min(seconds[name]):.0f}) | {base / median:.2f}× | {diff:.1e} | {mean_cos:.4f} "
              f"| {min_cos:.4f} | {p50:.1f} | {p95:.1f} | {base_p50 / p50:.2f}× |")


if __name__ == "__main__":
    main()
