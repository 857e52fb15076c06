"""Quality of a reduced-precision file (int8, fp16, approximate GELU) against fp32, by task.

Embeddings: cosine per text and top-10 neighbour overlap. Sequence classifiers: label
agreement. Token classifiers: token label agreement and entity F1, with entities decoded
by `core.spans` exactly as the NER pipeline decodes them. Rerankers (text-ranking): the
texts become (query, document) groups, judged by rank correlation and top-1 agreement.
"""

from __future__ import annotations

import numpy as np

from ..core.messages import short
from ..core.spans import group_spans, label_name
from ..core.spec import Task
from .report import CheckResult

QUALITY_DEFAULTS = {
    "mean_cosine": 0.995,
    "min_cosine": 0.98,
    "top10_overlap": 0.8,
    "label_agreement": 0.99,
    "entity_f1": 0.95,
    "rank_agreement": 0.95,
    "top1_agreement": 0.9,
}
# A reranker's quality inputs: groups of this many (query, document) pairs sharing a query.
RANKING_GROUP = 8


def quality_inputs(task: Task, texts: list[str]) -> tuple[list, list[str]]:
    """(what to encode, one label per input for messages): the texts themselves, or for a
    reranker (query, document) pairs in groups of RANKING_GROUP, the group's first text as
    its query (so one pair per group is the query with itself)."""
    if task is not Task.TEXT_RANKING:
        return texts, texts
    pairs = [(texts[i - i % RANKING_GROUP], text) for i, text in enumerate(texts)]
    return pairs, [f"{query} | {document}" for query, document in pairs]


def length_order(encoder, inputs: list) -> list[int]:
    """Indices of `inputs` (texts or pairs) shortest first: batches of neighbours in this order
    are padded only to their own longest, where batches in the given order are mostly padding."""
    encodings = encoder.tokenize_pairs(inputs) if inputs and isinstance(inputs[0], tuple) else encoder.tokenize(inputs)
    return sorted(range(len(inputs)), key=lambda i: len(encodings[i].ids))


def by_length(task: Task, encoder, inputs: list, shown: list[str]) -> tuple[list, list[str]]:
    """`quality_inputs` reordered shortest first, for every task but text-ranking, whose
    (query, document) groups are judged by position. The checks do not depend on order."""
    if task is Task.TEXT_RANKING:
        return inputs, shown
    order = length_order(encoder, inputs)
    return [inputs[i] for i in order], [shown[i] for i in order]


def quality_checks(task: Task, output: str, got: list[dict], expected: list[dict], masks: list[np.ndarray],
                   texts: list[str], limits: dict[str, float], labels: dict[int, str] | None) -> list[CheckResult]:
    """Quality of a reduced-precision model against the fp32 one, by task. Non-finite
    outputs (NaN, inf) fail first: argmax and cosine would otherwise hide them."""
    finite = _finite_check(output, got, expected, masks, texts)
    if finite is not None:
        return [finite]
    if task in (Task.SEQUENCE_CLASSIFICATION,):
        a = np.concatenate([g[output] for g in got]).argmax(-1)
        b = np.concatenate([e[output] for e in expected]).argmax(-1)
        agreement = float((a == b).mean())
        worst = texts[int(np.argmax(a != b))] if agreement < 1 else None
        return [CheckResult("label agreement", output, agreement >= limits["label_agreement"],
                            {"label_agreement": agreement}, {"label_agreement": limits["label_agreement"]},
                            short(worst) if worst else None)]
    if task is Task.TEXT_RANKING:
        return _ranking_checks(output, np.concatenate([g[output] for g in got])[:, 0],
                               np.concatenate([e[output] for e in expected])[:, 0], texts, limits)
    if task is Task.TOKEN_CLASSIFICATION:
        a_tags = [g[output].argmax(-1) for g in got]
        b_tags = [e[output].argmax(-1) for e in expected]
        agree = np.concatenate([(x == y)[m] for x, y, m in zip(a_tags, b_tags, masks)])
        spans_a = entity_spans(a_tags, masks, labels)
        spans_b = entity_spans(b_tags, masks, labels)
        f1 = _f1(spans_a, spans_b)
        token_agreement = float(agree.mean())
        return [
            CheckResult("token label agreement", output, token_agreement >= limits["label_agreement"],
                        {"label_agreement": token_agreement}, {"label_agreement": limits["label_agreement"]}),
            CheckResult("entity agreement", output, f1 >= limits["entity_f1"], {"entity_f1": f1},
                        {"entity_f1": limits["entity_f1"]}),
        ]
    # Embeddings: one vector per text (pooled output, or the masked mean of token vectors).
    a = _vectors(got, output, masks)
    b = _vectors(expected, output, masks)
    cosines = row_cosines(a, b)
    overlap = top_k_overlap(a, b, k=10)
    worst = int(cosines.argmin())
    checks = [
        CheckResult("cosine to fp32", output,
                    cosines.mean() >= limits["mean_cosine"] and cosines.min() >= limits["min_cosine"],
                    {"mean_cosine": float(cosines.mean()), "min_cosine": float(cosines.min())},
                    {"mean_cosine": limits["mean_cosine"], "min_cosine": limits["min_cosine"]},
                    short(texts[worst])),
    ]
    if len(texts) > 10:
        checks.append(CheckResult("top-10 neighbour overlap", output, overlap >= limits["top10_overlap"],
                                  {"top10_overlap": overlap}, {"top10_overlap": limits["top10_overlap"]}))
    return checks


def _ranking_checks(output: str, got: np.ndarray, expected: np.ndarray, texts: list[str],
                    limits: dict[str, float]) -> list[CheckResult]:
    """Per group of RANKING_GROUP pairs: Spearman correlation of the scores, and whether the
    best document is the same (the two things a reranker's user sees)."""
    groups = [slice(start, start + RANKING_GROUP) for start in range(0, len(got), RANKING_GROUP)]
    groups = [group for group in groups if len(got[group]) > 1]
    if not groups:
        return [CheckResult("rank agreement", output, False, {"rank_agreement": 0.0},
                            {"rank_agreement": limits["rank_agreement"]},
                            note="need at least two texts to rank; pass more texts")]
    correlations = [_spearman(got[group], expected[group]) for group in groups]
    same_best = [int(np.argmax(got[group])) == int(np.argmax(expected[group])) for group in groups]
    worst = groups[int(np.argmin(correlations))]
    rank, top1 = float(np.mean(correlations)), float(np.mean(same_best))
    return [
        CheckResult("rank agreement", output, rank >= limits["rank_agreement"], {"rank_agreement": rank},
                    {"rank_agreement": limits["rank_agreement"]}, short(texts[worst.start])),
        CheckResult("top-1 agreement", output, top1 >= limits["top1_agreement"], {"top1_agreement": top1},
                    {"top1_agreement": limits["top1_agreement"]}),
    ]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two score lists (ties broken by position; 1.0 for identical order)."""
    ranks_a = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    ranks_b = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    if ranks_a.std() == 0 or ranks_b.std() == 0:
        return 1.0
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def _finite_check(output: str, got: list[dict], expected: list[dict], masks: list[np.ndarray],
                  texts: list[str]) -> CheckResult | None:
    """A failed check naming the first text whose output holds NaN or inf, else None."""
    for side, results in (("the file", got), ("the reference", expected)):
        rows = np.concatenate([finite_rows(result[output], mask if result[output].ndim == 3 else None)
                               for result, mask in zip(results, masks)])
        if not rows.all():
            worst = int(np.argmin(rows))
            return CheckResult("finite outputs", output, False, {"non_finite_texts": float((~rows).sum())},
                               {"non_finite_texts": 0.0}, short(texts[worst]),
                               note=f"{side} outputs NaN or inf")
    return None


def finite_rows(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per text (first axis): are all its outputs finite? With a boolean [batch, tokens]
    `mask`, only the real (unpadded) tokens count."""
    finite = np.isfinite(values)
    if mask is not None:
        return np.array([finite[row][mask[row]].all() for row in range(values.shape[0])])
    return finite.reshape(values.shape[0], -1).all(axis=1)


def _vectors(results: list[dict], output: str, masks: list[np.ndarray]) -> np.ndarray:
    rows = []
    for result, mask in zip(results, masks):
        values = result[output]
        if values.ndim == 3:
            weights = mask[..., None].astype(values.dtype)
            values = (values * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        rows.append(values.reshape(values.shape[0], -1))
    return np.concatenate(rows).astype(np.float64)


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each text's k nearest neighbours (by cosine) that both models agree on."""
    k = min(k, len(a) - 1)
    if k < 1:
        return 1.0

    def neighbours(x: np.ndarray) -> np.ndarray:
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        similarity = unit @ unit.T
        np.fill_diagonal(similarity, -np.inf)
        return np.argsort(-similarity, axis=1)[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb)]))


def entity_spans(tag_batches, masks, labels: dict[int, str] | None) -> set[tuple]:
    """(text index, first token, end token, type) of every entity in argmax tag batches,
    decoded by `core.spans.group_spans` over the real (unmasked) tokens of each text."""
    spans = set()
    offset = 0
    for tags, mask in zip(tag_batches, masks):
        for row in range(tags.shape[0]):
            units = ((position, position + 1, label_name(labels, tags[row, position]), 1.0)
                     for position in range(tags.shape[1]) if mask[row, position])
            spans.update((offset + row, span.start, span.end, span.label) for span in group_spans(units))
        offset += tags.shape[0]
    return spans


def _f1(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    both = len(a & b)
    return 2 * both / (len(a) + len(b))


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of `a` with the same row of `b` (1.0 where both are zero, NaN where
    either holds NaN or inf, so a comparison with a limit fails)."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
        cosines = np.where(norms > 0, (a * b).sum(-1) / np.maximum(norms, 1e-30), 1.0)
    return np.where(np.isfinite(norms), cosines, np.nan)
