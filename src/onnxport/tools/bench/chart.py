"""The chart: throughput per contender and batch size beside p95 latency and quality, as PNG.

matplotlib (the `bench` extra) is imported only when a chart is drawn. `quality_text`, the
quality of a contender in words, labels the latency bars here and fills report.py's column.
"""

from __future__ import annotations

import io

import numpy as np

from ...errors import InputError

CHART_SIZE = (1200, 600)  # pixels: 12 x 6 inches at 100 dpi


def quality_text(quality: dict | None) -> str:
    """A contender's quality in words: 'reference', cosines, label / entity / rank / answer or
    masked-token agreement."""
    if not quality:
        return "–"
    if quality.get("is_reference"):
        return "reference"
    m = quality["metrics"]
    if "mean_cosine" in m:
        text = f"cos {m['mean_cosine']:.5f} (min {m['min_cosine']:.5f})"
    elif "rank_agreement" in m:
        text = f"rank ρ {m['rank_agreement']:.4f}, top-1 {m['top1_agreement']:.1%}"
    elif "entity_f1" in m:
        text = f"tokens {m['label_agreement']:.1%}, entity F1 {m['entity_f1']:.3f}"
    elif "exact_match" in m:
        text = f"same answer {m['exact_match']:.1%}, span F1 {m['answer_f1']:.3f}"
    elif "top5_agreement" in m:
        text = f"top-1 {m['top1_agreement']:.1%}, top-5 {m['top5_agreement']:.1%}"
    else:
        text = f"labels agree {m['label_agreement']:.1%}"
    return text if quality["passed"] else text + " BELOW TARGET"


def draw_chart(report: dict) -> bytes:
    """PNG bytes, CHART_SIZE pixels: throughput per contender and batch size (min–max whiskers,
    speed-up on the largest batch), and p95 latency at batch 1 with quality beside each bar."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("the chart needs matplotlib: pip install \"onnxport[bench]\"") from None

    measured = [r for r in report["contenders"] if any(row["runs"] for row in r["throughput"]) or r["latency_ms"]]
    names = [r["name"] for r in measured]
    sizes = report["settings"]["batch_sizes"]
    dpi = 100
    figure, (left, right) = plt.subplots(1, 2, figsize=(CHART_SIZE[0] / dpi, CHART_SIZE[1] / dpi), dpi=dpi,
                                         gridspec_kw={"width_ratios": [1.35, 1]})
    width = 0.8 / max(len(sizes), 1)
    colors = plt.get_cmap("tab10").colors
    for i, batch_size in enumerate(sizes):
        rows = [next(row for row in r["throughput"] if row["batch_size"] == batch_size) for r in measured]
        values = [row["texts_per_s"] or 0 for row in rows]
        low = [max(v - (row["texts_per_s_min"] or v), 0) for v, row in zip(values, rows)]
        high = [max((row["texts_per_s_max"] or v) - v, 0) for v, row in zip(values, rows)]
        x = np.arange(len(names)) + (i - (len(sizes) - 1) / 2) * width
        left.bar(x, values, width, yerr=[low, high], capsize=2, label=f"batch {batch_size}", color=colors[i % 10])
        for xi, value, top, row in zip(x, values, high, rows):
            if row["speedup"] is not None:  # above the whisker, so it is never hidden
                left.annotate(f"{row['speedup']:.1f}x", (xi, value + top), ha="center", va="bottom", fontsize=7,
                              xytext=(0, 2), textcoords="offset points")
    # Long names (sentence-transformers, st-onnx-int8) would run into each other: break them
    # at a space or after the first dash, and tilt them when there are many.
    labels = [n.replace(" ", "\n", 1) if " " in n else n.replace("-", "-\n", 1) for n in names]
    left.set_xticks(np.arange(len(names)), labels, fontsize=8, rotation=30 if len(names) > 6 else 0,
                    ha="right" if len(names) > 6 else "center")
    left.set_ylabel("texts / s (median, min–max)")
    left.set_title(f"Throughput per batch size (labels: speed-up vs {report['baseline'] or '–'})", fontsize=10)
    left.legend(fontsize=8)
    left.grid(axis="y", alpha=0.3)

    p95 = [(r["latency_ms"] or {}).get("p95") or 0 for r in measured]
    y = np.arange(len(names))
    right.barh(y, p95, color=colors[len(sizes) % 10])
    right.set_yticks(y, names, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("p95 latency at batch 1 (ms)")
    right.set_title(f"Latency and quality vs {report['reference'] or '(nothing loaded)'}", fontsize=10)
    right.set_xlim(0, max(p95 + [1e-3]) * 1.9)  # room for the quality text
    for yi, value, result in zip(y, p95, measured):
        right.annotate(f"{value:.1f} ms  {quality_text(result['quality'])}", (value, yi), va="center",
                       fontsize=7.5, xytext=(4, 0), textcoords="offset points")
    right.grid(axis="x", alpha=0.3)

    m = report["machine"]
    title = (f"onnxport bench: {report['model']} ({report['task']}), {report['texts']['count']} texts, "
             f"{report['settings']['threads']} thread(s), {m['cpu']} ({m['usable_cpus']} CPUs)")
    figure.suptitle(title + ("  [PARTIAL]" if report["partial"] else ""), fontsize=11)
    missing = [r["name"] for r in report["contenders"] if not r["available"] and r["name"] not in names]
    if missing:
        figure.text(0.01, 0.01, "not measured: " + ", ".join(missing) + " (reasons in report.md)", fontsize=7.5)
    figure.tight_layout(rect=(0, 0.03, 1, 0.95))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)  # no bbox_inches="tight": it would change the size
    plt.close(figure)
    return buffer.getvalue()

