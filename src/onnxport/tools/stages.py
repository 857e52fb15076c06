"""Where one pipeline call's time goes, end to end: tokenize, pad, feed, run, pool, the rest.

`profile` (tools/profile.py) splits onnxruntime's run by module; this splits the whole call of
the task's verb (`embed`, `classify`, `extract`, `score`, `answer`, `fill`) around it, which is what a user waits for.
The pipeline's own methods are wrapped with timers on that one instance, so what is timed is
the code path users run, not a copy of it; whatever the wrappers do not cover (sorting,
batching, copying results into place) is the `other` row, so the rows add up to the wall time.
Runtime side: no torch.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

from ..core.artifact import Artifact
from ..core.sample_texts import builtin_texts
from ..errors import InputError
from ..runtime.pipelines import load
from .workloads import VERBS, run_verb, verb_inputs

STAGES = ("tokenize", "pad", "feed", "run", "pool", "other")
STAGE_MEANING = {
    "tokenize": "tokenizers: texts to token ids (Rust, batched)",
    "pad": "token lists to padded int64 arrays",
    "feed": "arrays cast to the types the graph declares",
    "run": "onnxruntime session.run (the graph)",
    "pool": "graph outputs to the task's result (pooling, softmax, copies)",
    "other": "sorting by length, batching, putting rows back in order (extract: entity spans)",
}
@dataclasses.dataclass
class StageProfile:
    model_file: str
    verb: str
    texts: int
    tokens: int
    batch_size: int
    repeat: int
    threads: int | None
    wall_ms: float
    stage_ms: dict[str, float]
    calls: dict[str, int]

    def to_dict(self) -> dict:
        wall = self.wall_ms or 1.0
        return {
            "model_file": self.model_file, "verb": self.verb, "texts": self.texts, "tokens": self.tokens,
            "batch_size": self.batch_size, "repeat": self.repeat, "threads": self.threads,
            "wall_ms": round(self.wall_ms, 3), "texts_per_second": round(self.texts * self.repeat / wall * 1000, 1),
            "stages": [{"stage": s, "ms": round(self.stage_ms[s], 3), "share": round(self.stage_ms[s] / wall, 4),
                        "calls": self.calls.get(s), "what": STAGE_MEANING[s]} for s in STAGES],
        }


def profile_stages(artifact: str | Path | Artifact, *, model: str = "auto", texts: Sequence[str] | None = None,
                   batch_size: int = 32, repeat: int = 3, warmup: int = 1, threads: int | None = None) -> StageProfile:
    """Time `repeat` calls of the task's verb over `texts` (default: 256 built-in texts of
    mixed length), after `warmup` untimed ones, split into STAGES."""
    if batch_size < 1 or repeat < 1 or warmup < 0:
        raise InputError("batch size and repeat must be at least 1, warmup at least 0")
    texts = list(texts) if texts is not None else builtin_texts(256)
    if not texts:
        raise InputError("no texts to profile with; give a file with one text per line")
    pipeline = load(artifact, model=model, threads=threads)
    if pipeline.artifact.task not in VERBS:
        raise InputError(f"stage profiles cover {', '.join(t.value for t in VERBS)} artifacts, "
                         f"not {pipeline.artifact.task.value}")
    items = verb_inputs(pipeline, texts)
    for _ in range(warmup):
        run_verb(pipeline, items, batch_size)
    spent = dict.fromkeys(STAGES, 0.0)
    timer = _Timer(spent)
    for name in ("tokenize", "tokenize_pairs", "tokenize_items", "windows"):  # whichever the verb goes through
        timer.wrap(pipeline, name, "tokenize")
    timer.wrap(pipeline.encoder, "question_windows", "tokenize")
    timer.wrap(pipeline.encoder, "pad", "pad")
    timer.wrap(pipeline.runner, "feed", "feed")
    timer.wrap(pipeline.runner.session, "run", "run")
    timer.wrap(pipeline, "rows", "pool")
    started = time.perf_counter()
    for _ in range(repeat):
        run_verb(pipeline, items, batch_size)
    wall = (time.perf_counter() - started) * 1000.0
    spent["other"] = max(wall - sum(spent.values()), 0.0)
    tokens = sum(len(e.ids) for e in pipeline.encoder.tokenize(texts))
    return StageProfile(model_file=pipeline.model_file, verb=VERBS[pipeline.artifact.task], texts=len(texts),
                        tokens=tokens, batch_size=batch_size, repeat=repeat, threads=threads, wall_ms=wall,
                        stage_ms=spent, calls=timer.calls)


class _Timer:
    """Wraps methods of single instances so their time adds to a stage; a stage already being
    timed (tokenize_items calling tokenize) is not counted twice."""

    def __init__(self, spent: dict[str, float]):
        self.spent = spent
        self.calls: dict[str, int] = {}
        self.open: set[str] = set()

    def wrap(self, owner, name: str, stage: str) -> None:
        inner = getattr(owner, name, None)
        if inner is None:
            return

        def timed(*args, **kwargs):
            if stage in self.open:
                return inner(*args, **kwargs)
            self.open.add(stage)
            self.calls[stage] = self.calls.get(stage, 0) + 1
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.spent[stage] += (time.perf_counter() - started) * 1000.0
                self.open.discard(stage)

        setattr(owner, name, timed)
