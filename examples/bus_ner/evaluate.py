"""Entity-level precision/recall/F1 and speed of an exported bus NER artifact.

Scores PyTorch (`onnxport.load(art, backend="torch")`), ONNX fp32, the fused
model.opt.onnx when there is one, and ONNX int8 on the held-out split with seqeval-style
exact span matching (an entity counts only when its label and both boundaries match
gold), all through the same `TokenClassifier.extract` API. Speed is texts/s over the
whole split, measured in this run, best of --repeats. Prints a markdown table and writes
everything as JSON.

    python evaluate.py OUT_DIR/artifact --data OUT_DIR/data/test.jsonl --json OUT_DIR/results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate import detokenize, read_jsonl, write_atomic  # noqa: E402

from onnxport.core.spans import group_spans  # noqa: E402

Span = tuple  # (first word, end word exclusive, label), or ("chars", start, end, label) when misaligned

TARGET_QUERY = "AC sleeper bus from Bangalore to Mumbai tomorrow"
TARGET_DICT = {"SRC": "Bangalore", "DEST": "Mumbai", "BUS_TYPE": "AC", "SEAT_TYPE": "sleeper", "DATE": "tomorrow"}
PROBES = [
    TARGET_QUERY,
    "VRL Non-AC from Chennai to Hyderabad next Friday",
    "Volvo Multi-Axle semi-sleeper from New Delhi to Manali on 25th December",
    "non ac seater pune se goa day after tomorrow under Rs 800",
]
BACKENDS = {"pytorch": {"backend": "torch"}, "onnx-fp32": {"model": "fp32"}, "onnx-opt": {"model": "opt"},
            "onnx-int8": {"model": "int8"}}


# ---------------------------------------------------------------- metrics

def bio_spans(tags: list[str]) -> set[Span]:
    """Entity spans from BIO tags, the way seqeval/conlleval read them by default: an entity
    starts at B-X, or at I-X not preceded by the same type, and runs over the I-X after it.
    Decoded by onnxport's own span decoder (`onnxport.core.spans`, on purpose): the one the
    NER pipeline and the int8 guard use, so gold, predictions and the guard agree."""
    units = ((i, i + 1, tag, 1.0) for i, tag in enumerate(tags))
    return {(span.start, span.end, span.label) for span in group_spans(units)}


def prf(gold: list[set[Span]], predicted: list[set[Span]]) -> dict:
    """Micro-averaged precision, recall and F1 over all sentences, and per label."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")

    def score(tp: int, fp: int, fn: int) -> dict:
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}

    counts: dict[str, list[int]] = {}
    for g, p in zip(gold, predicted):
        for span in g | p:
            entry = counts.setdefault(span[-1], [0, 0, 0])
            entry[0 if span in g and span in p else (1 if span in p else 2)] += 1
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    result = score(*total)
    result["per_label"] = {label: score(*c) for label, c in sorted(counts.items())}
    return result


def word_spans(entities: list[dict], offsets: list[tuple[int, int]]) -> set[Span]:
    """Character-span entities (from extract) as word spans. An entity whose edges are not word
    edges (half of "Non-AC", "Bangalore" without its last letters) stays a character span,
    so it can never match gold: that is what exact span match means."""
    starts = {start: i for i, (start, _) in enumerate(offsets)}
    ends = {end: i for i, (_, end) in enumerate(offsets)}
    spans = set()
    for e in entities:
        if e["start"] in starts and e["end"] in ends and starts[e["start"]] <= ends[e["end"]]:
            spans.add((starts[e["start"]], ends[e["end"]] + 1, e["label"]))
        else:
            spans.add(("chars", e["start"], e["end"], e["label"]))
    return spans


def multi_word_recall(gold: list[set[Span]], predicted: list[set[Span]]) -> float | None:
    """Share of gold entities of two or more words predicted whole (exact span and label)."""
    multi = [(span, p) for g, p in zip(gold, predicted) for span in g if span[1] - span[0] > 1]
    return sum(span in p for span, p in multi) / len(multi) if multi else None


# ---------------------------------------------------------------- running the artifact

def score_backends(artifact: Path, backends: list[str], texts: list[str], offsets: list, gold: list[set[Span]],
                   aggregation: str, batch_size: int, repeats: int) -> list[dict]:
    """Entity scores and speed of each backend. The timed passes take turns (one pass of each
    backend per round, best round counts), so a noisy neighbour slows them all alike."""
    import onnxport

    pipelines = {name: onnxport.load(artifact, **BACKENDS[name]) for name in backends}
    for pipeline in pipelines.values():
        pipeline.extract(texts[:batch_size], aggregation=aggregation, batch_size=batch_size)  # warm-up
    best = {name: float("inf") for name in backends}
    entities: dict[str, list] = {}
    for _ in range(repeats):
        for name, pipeline in pipelines.items():
            started = time.perf_counter()
            entities[name] = pipeline.extract(texts, aggregation=aggregation, batch_size=batch_size)
            best[name] = min(best[name], time.perf_counter() - started)
    results = []
    for name, pipeline in pipelines.items():
        predicted = [word_spans(e, o) for e, o in zip(entities[name], offsets)]
        result = prf(gold, predicted)
        result.update(
            backend=name, model_file="model.safetensors" if pipeline.backend == "torch" else pipeline.model_file,
            texts_per_second=len(texts) / best[name], seconds=best[name],
            multi_word_recall=multi_word_recall(gold, predicted),
            probes={text: pipeline.extract_dict(text) for text in PROBES},
        )
        result["target_query_ok"] = result["probes"][TARGET_QUERY] == TARGET_DICT
        result["_predicted"] = predicted
        results.append(result)
    return results


def markdown_table(results: list[dict]) -> str:
    rows = ["| model | precision | recall | F1 | multi-word recall | texts/s | speed vs PyTorch |",
            "|---|---|---|---|---|---|---|"]
    torch_speed = next((r["texts_per_second"] for r in results if r["backend"] == "pytorch"), None)
    for r in results:
        ratio = f"{r['texts_per_second'] / torch_speed:.2f}x" if torch_speed else "-"
        multi = "-" if r["multi_word_recall"] is None else f"{r['multi_word_recall']:.4f}"
        rows.append(f"| {r['backend']} ({r['model_file']}) | {r['precision']:.4f} | {r['recall']:.4f} | "
                    f"{r['f1']:.4f} | {multi} | {r['texts_per_second']:.0f} | {ratio} |")
    return "\n".join(rows)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path, help="artifact folder from `onnxport export`")
    parser.add_argument("--data", type=Path, required=True, help="held-out JSONL from generate.py (test.jsonl)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated, from {', '.join(BACKENDS)} "
                             "[default: all; onnx-opt only when the artifact has it]")
    parser.add_argument("--aggregation", default="first", choices=["simple", "first", "max", "average"],
                        help="how token labels become entities [default: first, as extract_dict]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per backend; the best counts")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        parser.error(f"unknown backend(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(BACKENDS)}")
    if args.batch_size < 1 or args.repeats < 1:
        parser.error("--batch-size and --repeats must be at least 1")
    if not (args.artifact / "onnxport.json").exists():
        parser.error(f"{args.artifact} is not an onnxport artifact; create it with `onnxport export`")

    from onnxport.errors import OnnxportError

    load_before = _load_average()
    examples = read_jsonl(args.data)
    texts, offsets = zip(*(detokenize(e["tokens"]) for e in examples))
    texts, offsets = list(texts), list(offsets)
    gold = [bio_spans(e["tags"]) for e in examples]
    if args.backends == parser.get_default("backends") and not (args.artifact / "model.opt.onnx").exists():
        backends.remove("onnx-opt")
    try:
        results = score_backends(args.artifact, backends, texts, offsets, gold, args.aggregation, args.batch_size,
                                 args.repeats)
    except OnnxportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    fp32 = next((r for r in results if r["backend"] == "onnx-fp32"), None)
    for r in results:
        # How far each model's entities are from the fp32 ONNX model's (1.0 = the same entities).
        r["entity_f1_vs_onnx_fp32"] = prf(fp32["_predicted"], r["_predicted"])["f1"] if fp32 else None
    table = markdown_table(results)
    print(table)
    print(f"\n{len(texts)} held-out queries, {sum(len(g) for g in gold)} gold entities; aggregation "
          f"{args.aggregation}, batch {args.batch_size}, best of {args.repeats}; load average "
          f"{load_before} before, {_load_average()} after ({os.cpu_count()} CPUs)")
    for text in PROBES:
        print(f"\n{text}")
        for r in results:
            print(f"  {r['backend']:>10}: {json.dumps(r['probes'][text], ensure_ascii=False)}")
    if args.json:
        import onnxruntime

        summary = {
            "artifact": str(args.artifact), "data": str(args.data), "texts": len(texts),
            "gold_entities": sum(len(g) for g in gold), "aggregation": args.aggregation,
            "batch_size": args.batch_size, "repeats": args.repeats,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "processor": _cpu_name(), "onnxruntime": onnxruntime.__version__,
                        # other work on a shared machine skews texts/s; this says how busy it was
                        "load_average_before": load_before, "load_average_after": _load_average()},
            "results": [{k: v for k, v in r.items() if k != "_predicted"} for r in results],
            "table": table,
        }
        write_json(args.json, summary)
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
