"""Graph-level levers on this CPU: which ways of running an artifact's files are faster, at what accuracy?

    python benchmarks/cpu_levers.py ARTIFACT [--texts 256] [--passes 6] [--threads N]

ARTIFACT is an embedding artifact (`onnxport export -o ARTIFACT --quantize`). The texts are
the built-in length mix (seed 1), tokenized once by the artifact's own tokenizer and cut
into the same length-sorted runs the pipelines make (`runtime.batching`, 32 rows, 1,024
tokens), so only `session.run` is timed. Each way of running is compared with one
onnxruntime session on all threads running the runs one after another, the pipelines' way:

* runs in flight: the runs shared out to as many Python threads as there are cores, over
  one session with one thread each, or over one session with all of them;
* blockwise 8- and 4-bit weights (onnxruntime's MatMulNBits with int8 activations per block,
  accuracy_level 4) made from model.onnx here, every MatMul with a constant weight;
* OpenVINO (the `openvino` extra) reading model.onnx in its latency mode, and in its
  throughput mode (one stream per core, runs queued asynchronously).

Ways of running are interleaved pass by pass; the median texts/s (min-max) is reported with
each one's cosine against model.onnx run the reference way. Prints a markdown table with
the CPU named. Nothing here is adopted by onnxport on its own: docs/performance.md says
what was kept and why.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

OUTPUT = "sentence_embedding"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import onnxport
    from onnxport.core.cpus import cpu_name, detect_isa
    from onnxport.core.sample_texts import length_mix_texts
    from onnxport.runtime.batching import length_batches
    from onnxport.runtime.session import default_threads

    threads = args.threads or default_threads()
    pipeline = onnxport.load(args.artifact, model="fp32", threads=threads)
    if OUTPUT not in pipeline.runner.output_names:
        raise SystemExit(f"{args.artifact} has no '{OUTPUT}' output; this benchmark takes an embedding artifact")
    texts = length_mix_texts(args.texts, seed=1)
    encodings = pipeline.tokenize(texts)
    runs = [(indices, pipeline.runner.feed(pipeline.encoder.pad([encodings[i] for i in indices])))
            for indices in length_batches([len(e.ids) for e in encodings], 32, 1024)]
    width = pipeline.dimensions

    def embed_one_by_one(run: Callable) -> np.ndarray:
        vectors = np.zeros((len(texts), width), np.float32)
        for indices, feed in runs:
            vectors[indices] = run(feed)
        return vectors

    def embed_in_flight(run: Callable) -> np.ndarray:
        vectors = np.zeros((len(texts), width), np.float32)
        pending: queue.Queue = queue.Queue()
        for item in sorted(runs, key=lambda item: -item[1]["input_ids"].size):  # longest first
            pending.put(item)

        def work() -> None:
            while True:
                try:
                    indices, feed = pending.get_nowait()
                except queue.Empty:
                    return
                vectors[indices] = run(feed)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return vectors

    ways: dict[str, Callable[[], np.ndarray]] = {}
    for name in ("model.onnx", "model.opt.onnx", "model.int8.onnx"):
        path = args.artifact / name
        if not path.exists():
            continue
        every = _ort_run(path, threads)
        ways[f"{name}, one session, {threads} threads, runs one by one (reference)"] = (
            lambda run=every: embed_one_by_one(run))
        single = _ort_run(path, 1)
        ways[f"{name}, {threads} runs in flight, one session with 1 thread"] = lambda run=single: embed_in_flight(run)
        ways[f"{name}, {threads} runs in flight, one session with {threads} threads"] = (
            lambda run=every: embed_in_flight(run))

    scratch = tempfile.TemporaryDirectory(prefix="onnxport-levers-")
    for bits, block in ((8, 32), (8, 128), (4, 32)):
        path = _blockwise(args.artifact / "model.onnx", Path(scratch.name), bits, block)
        ways[f"model.onnx with {bits}-bit weights per {block} (MatMulNBits), int8 activations"] = (
            lambda run=_ort_run(path, threads): embed_one_by_one(run))
    ways.update(_openvino_ways(args.artifact / "model.onnx", threads, embed_one_by_one, embed_in_flight))

    reference = next(iter(ways.values()))()
    quality = {}
    for name, way in ways.items():  # also the warm-up
        got = way()
        cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
        quality[name] = (float(cosine.mean()), float(cosine.min()))
    speeds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.passes):
        for name, way in ways.items():
            start = time.perf_counter()
            way()
            speeds[name].append(len(texts) / (time.perf_counter() - start))

    base = {}
    print(f"{cpu_name()} ({detect_isa()}), {threads} threads, {len(texts)} texts "
          f"({sum(len(e.ids) for e in encodings)} tokens) in {len(runs)} runs, {args.passes} passes\n")
    print("| how | texts/s (min-max) | × the file's reference | mean / min cosine vs model.onnx |")
    print("|---|---:|---:|---|")
    for name, values in speeds.items():
        median = statistics.median(values)
        file = name.split(",")[0].split(" ")[0]
        base.setdefault(file, median)
        ratio = median / base[file] if "(reference)" not in name else 1.0
        mean, least = quality[name]
        print(f"| {name} | {median:.1f} ({min(values):.1f}-{max(values):.1f}) | {ratio:.2f} | "
              f"{mean:.5f} / {least:.5f} |")
    scratch.cleanup()


def _ort_run(path: Path, threads: int) -> Callable[[dict], np.ndarray]:
    from onnxport.runtime.session import create_session  # the pipelines' own session options

    session = create_session(path, threads=threads)
    names = {value.name for value in session.get_inputs()}
    return lambda feed: session.run([OUTPUT], {k: v for k, v in feed.items() if k in names})[0]


def _blockwise(source: Path, folder: Path, bits: int, block: int) -> Path:
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                 MatMulNBitsQuantizer)

    # It logs a line per node at INFO through a handler of its own.
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

    config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=4, bits=bits)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=bits, block_size=block, is_symmetric=True,
                                     accuracy_level=4, algo_config=config)
    quantizer.process()
    path = folder / f"model.nbits{bits}.block{block}.onnx"
    quantizer.model.save_model_to_file(str(path), use_external_data_format=False)
    return path


def _openvino_ways(path: Path, threads: int, one_by_one: Callable, in_flight: Callable) -> dict:
    try:
        import openvino as ov
    except ImportError:
        print("openvino is not installed (pip install 'onnxport[openvino]'): its rows are left out")
        return {}
    core = ov.Core()
    latency = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                    "INFERENCE_PRECISION_HINT": "f32"})
    request = latency.create_infer_request()
    throughput = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                       "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": threads,
                                                       "INFERENCE_PRECISION_HINT": "f32"})
    requests = [throughput.create_infer_request() for _ in range(threads)]
    idle: queue.Queue = queue.Queue()
    for each in requests:
        idle.put(each)

    def run_on_a_stream(feed: dict) -> np.ndarray:
        # One infer request per stream; a thread takes whichever is free. OpenVINO releases
        # the GIL while it infers, so the streams run side by side.
        each = idle.get()
        try:
            return each.infer(feed)[OUTPUT].copy()
        finally:
            idle.put(each)

    return {
        "model.onnx on OpenVINO f32, latency mode, runs one by one":
            lambda: one_by_one(lambda feed: request.infer(feed)[OUTPUT].copy()),
        f"model.onnx on OpenVINO f32, throughput mode, {threads} streams":
            lambda: in_flight(run_on_a_stream),
    }


if __name__ == "__main__":
    main()
