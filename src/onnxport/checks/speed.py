"""How much faster one runner is than another on this machine, measured now, and how long
the measurement took (a ratio of milliseconds is mostly noise; readers weigh it by that).

Both runners run the same length-sorted batches of 32 (as the pipelines batch) over every
other text; each gets one untimed run, then the best of `repeats` timed passes counts.
Used by the int8 guard (int8 against its source file) and by engine verification (OpenVINO
against the file onnxruntime would run).
"""

from __future__ import annotations

import time

from ..runtime.tokenization import TextEncoder
from .quality import length_order


def relative_speed(baseline, candidate, encoder: TextEncoder, texts: list[str],
                   repeats: int = 3) -> tuple[float, float]:
    """(throughput of `candidate` / throughput of `baseline`, seconds of the baseline's best
    pass). Each runner takes and gives the graph's arrays (`run(arrays)`)."""
    texts = texts[::2] if len(texts) >= 32 else texts
    order = length_order(encoder, texts)
    batches = [encoder.encode([texts[i] for i in order[start:start + 32]]) for start in range(0, len(texts), 32)]

    def seconds(runner) -> float:
        runner.run(batches[0])
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for batch in batches:
                runner.run(batch)
            best = min(best, time.perf_counter() - started)
        return best

    base = seconds(baseline)
    return round(base / seconds(candidate), 3), round(base, 4)
