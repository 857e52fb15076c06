"""Each task's everyday verb run over sample texts: what `bench` times, `profile --stages`
breaks down and the cold-start script calls first. Texts become what the verb takes as
the quality checks build it (`checks.quality.quality_inputs`): (query, document) pairs for
a reranker, (question, context) pairs for a question answerer, texts with a masked word
for a fill-mask model."""

from __future__ import annotations

from typing import Any, Sequence

from ..checks.quality import quality_inputs
from ..core.spec import Task

# The pipeline verb each task is measured on.
VERBS = {
    Task.SENTENCE_EMBEDDING: "embed",
    Task.FEATURE_EXTRACTION: "embed",
    Task.TOKEN_CLASSIFICATION: "extract",
    Task.SEQUENCE_CLASSIFICATION: "classify",
    Task.TEXT_RANKING: "score",
    Task.QUESTION_ANSWERING: "answer",
    Task.FILL_MASK: "fill",
    Task.SPARSE_EMBEDDING: "embed",
}


def verb_inputs(pipeline, texts: Sequence[str]) -> list:
    """`texts` as the task's verb takes them (see the module docstring)."""
    mask_token = pipeline.encoder.special_token("mask_token")[0]
    return quality_inputs(pipeline.artifact.task, list(texts), mask_token)[0]


def run_verb(pipeline, items: list, batch_size: int) -> Any:
    """The task's verb over `verb_inputs` items."""
    verb = getattr(pipeline, VERBS[pipeline.artifact.task])
    if pipeline.artifact.task is Task.QUESTION_ANSWERING:
        return verb([question for question, _ in items], [context for _, context in items], batch_size=batch_size)
    return verb(items, batch_size=batch_size)


def run_task(pipeline, texts: Sequence[str], batch_size: int) -> Any:
    """`run_verb` over `texts` made into the verb's inputs."""
    return run_verb(pipeline, verb_inputs(pipeline, texts), batch_size)
