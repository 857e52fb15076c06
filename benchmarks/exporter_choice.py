"""Which torch.onnx exporter should be the default? Export all-MiniLM-L6-v2 with both,
verify each, and count what onnxruntime's transformer optimizer fuses.

    python benchmarks/exporter_choice.py [--out DIR]

Prints one markdown table (the one in docs/exporter.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import onnxport

FUSED = ("Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "BiasGelu")


def fused_counts(model_path: Path, hidden: int, heads: int) -> dict[str, int]:
    from onnxruntime.transformers import optimizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimizer.optimize_model(str(model_path), model_type="bert", num_heads=heads,
                                             hidden_size=hidden, opt_level=0)
    stats = optimized.get_fused_operator_statistics()
    return {op: stats.get(op, 0) for op in FUSED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="exporter-choice-"))
    rows = []
    for exporter in ("torchscript", "dynamo"):
        out = root / exporter
        started = time.perf_counter()
        artifact = onnxport.export(out=out, exporter=exporter, force=True)
        seconds = time.perf_counter() - started
        report = artifact.files["model.onnx"]["verification"]
        worst = max(c["measured"].get("max_abs_diff", 0.0) for c in report["checks"])
        counts = fused_counts(out / "model.onnx", hidden=384, heads=12)
        rows.append((artifact.spec.exporter.value, f"{seconds:.1f}", report["passed"], f"{worst:.1e}",
                     *[counts[op] for op in FUSED]))
    print("| exporter | export+verify s | verified | worst max abs diff | " + " | ".join(FUSED) + " |")
    print("|---" * (4 + len(FUSED)) + "|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main()
