"""Quality of a reduced-precision file (int8, fp16, approximate GELU) against fp32, by task.

Embeddings: cosine per text and top-10 neighbour overlap. Sequence classifiers: label
agreement. Token classifiers: token label agreement and entity F1, with entities decoded
by `core.spans` exactly as the NER pipeline decodes them. Rerankers (text-ranking): the
texts become (query, document) groups, judged by rank correlation and top-1 agreement.
Question answerers: the texts become (question, context) pairs, judged by whether the best
answer span is the same (exact match) and by the token overlap of the two spans (F1).
Fill-mask models: a word of each text is masked, judged by top-1 and top-5 agreement of
the predicted tokens there. Sparse (SPLADE) embeddings: cosine of the dense form, as for
embeddings, and the overlap of each text's ten heaviest terms.
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
    "exact_match": 0.9,
    "answer_f1": 0.95,
    "top5_agreement": 0.8,
    "top10_term_overlap": 0.8,
}
# A reranker's quality inputs: groups of this many (query, document) pairs sharing a query.
RANKING_GROUP = 8
# The longest answer (in tokens) the question-answering checks consider, as the pipeline's default.
ANSWER_TOKENS = 30


def quality_inputs(task: Task, texts: list[str], mask_token: str | None = None) -> tuple[list, list[str]]:
    """(what to encode, one label per input for messages): the texts themselves; for a
    reranker (query, document) pairs in groups of RANKING_GROUP, the group's first text as
    its query (so one pair per group is the query with itself); for a question answerer
    (question, context) pairs, each text the context of a question made of the next text's
    first words; for a fill-mask model each text with its middle word masked."""
    if task is Task.TEXT_RANKING:
        pairs = [(texts[i - i % RANKING_GROUP], text) for i, text in enumerate(texts)]
        return pairs, [f"{query} | {document}" for query, document in pairs]
    if task is Task.QUESTION_ANSWERING:
        usable = [text for text in texts if text.strip()] or ["(no text)"]
        pairs = [(" ".join(usable[(i + 1) % len(usable)].split()[:8]) + "?", text) for i, text in enumerate(usable)]
        return pairs, [f"{question} | {context}" for question, context in pairs]
    if task is Task.FILL_MASK:
        masked = mask_words([text for text in texts if text.strip()] or ["(no text)"], mask_token or "[MASK]")
        return masked, masked
    return texts, texts


def mask_words(texts: list[str], mask_token: str) -> list[str]:
    """Each text with a word replaced by `mask_token` (what a fill-mask model is asked): the
    middle one of its first 12 words, so the mask is inside the window of any model."""
    masked = []
    for text in texts:
        words = text.split(" ")
        spoken = [i for i, word in enumerate(words) if word.strip()][:12]
        words[spoken[len(spoken) // 2]] = mask_token
        masked.append(" ".join(words))
    return masked


def judged_positions(task: Task, encodings: list, arrays: dict[str, np.ndarray], mask_id: int | None = None,
                     padding_side: str = "right") -> np.ndarray:
    """[batch, tokens] booleans for `arrays` padded from `encodings`: the tokens a quality
    check compares. The real tokens, except for a question answerer given (question, context)
    pairs (the context's tokens, where answers can be) and a fill-mask model (the mask tokens)."""
    real = arrays["attention_mask"].astype(bool)
    if task is Task.FILL_MASK and mask_id is not None:
        return real & (arrays["input_ids"] == mask_id)
    if task is not Task.QUESTION_ANSWERING or not encodings or encodings[0].n_sequences < 2:
        return real
    judged = np.zeros_like(real)
    width = real.shape[1]
    for row, encoding in enumerate(encodings):
        context = np.array([sequence == 1 for sequence in encoding.sequence_ids], dtype=bool)
        start = width - len(context) if padding_side == "left" else 0
        judged[row, start:start + len(context)] = context
    return judged


def judged_batches(task: Task, encoder, inputs: list, size: int) -> tuple[list[dict[str, np.ndarray]],
                                                                       list[np.ndarray]]:
    """(input arrays, `judged_positions`) of `inputs` (texts or pairs) in runs of `size`,
    each run tokenized once."""
    mask_id = encoder.special_token("mask_token")[1]
    batches, masks = [], []
    for start in range(0, len(inputs), size):
        part = inputs[start:start + size]
        encodings = encoder.tokenize_pairs(part) if isinstance(part[0], tuple) else encoder.tokenize(part)
        batches.append(encoder.pad(encodings))
        masks.append(judged_positions(task, encodings, batches[-1], mask_id, encoder.padding_side))
    return batches, masks


def length_order(encoder, inputs: list) -> list[int]:
    """Indices of `inputs` (texts or pairs) shortest first: batches of neighbours in this order
    are padded only to their own longest, where batches in the given order are mostly padding."""
    encodings = encoder.tokenize_pairs(inputs) if inputs and isinstance(inputs[0], tuple) else encoder.tokenize(inputs)
    return sorted(range(len(inputs)), key=lambda i: len(encodings[i].ids))


def judged_inputs(task: Task, encoder, texts: list[str]) -> tuple[list, list[str]]:
    """`quality_inputs` for an artifact's encoder (its mask token), shortest first (`by_length`)."""
    return by_length(task, encoder, *quality_inputs(task, texts, encoder.special_token("mask_token")[0]))


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
    if task is Task.QUESTION_ANSWERING:
        return _answer_checks(got, expected, masks, texts, limits)
    if task is Task.FILL_MASK:
        return _fill_checks(output, got, expected, masks, texts, limits)
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
    if task is Task.SPARSE_EMBEDDING:  # what a sparse index looks up: the heaviest terms of each text
        terms = top_term_overlap(a, b, k=10)
        checks.append(CheckResult("top-10 term overlap", output, terms >= limits["top10_term_overlap"],
                                  {"top10_term_overlap": terms}, {"top10_term_overlap": limits["top10_term_overlap"]}))
    return checks


def top_term_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each text's k heaviest terms (vocabulary ids with the largest weights,
    non-zero ones only) that both sparse vectors name; 1.0 for a text both leave empty."""
    shares = []
    for x, y in zip(a, b):
        heavy_x = {int(i) for i in np.argsort(-x, kind="stable")[:k] if x[i] > 0}
        heavy_y = {int(i) for i in np.argsort(-y, kind="stable")[:k] if y[i] > 0}
        shares.append(len(heavy_x & heavy_y) / max(len(heavy_x), len(heavy_y)) if heavy_x or heavy_y else 1.0)
    return float(np.mean(shares))


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


def best_spans(results: list[dict], masks: list[np.ndarray]) -> list[tuple[int, int] | None]:
    """Per input: the (start, end) token span with the highest start + end logit among the
    judged tokens, end - start < ANSWER_TOKENS (the pipeline's choice before word alignment);
    None when no token is judged."""
    spans: list[tuple[int, int] | None] = []
    for result, mask in zip(results, masks):
        for start_row, end_row, judged in zip(result["start_logits"], result["end_logits"], mask):
            positions = np.flatnonzero(judged)
            if not positions.size:
                spans.append(None)
                continue
            scores = start_row[positions][:, None].astype(np.float64) + end_row[positions][None, :]
            gap = positions[None, :] - positions[:, None]
            scores[(gap < 0) | (gap >= ANSWER_TOKENS)] = -np.inf
            first, last = np.unravel_index(int(np.argmax(scores)), scores.shape)
            spans.append((int(positions[first]), int(positions[last])))
    return spans


def _answer_checks(got: list[dict], expected: list[dict], masks: list[np.ndarray], texts: list[str],
                   limits: dict[str, float]) -> list[CheckResult]:
    """Same best answer span (exact match), and the token overlap F1 of the two spans."""
    a, b = best_spans(got, masks), best_spans(expected, masks)
    same = [x == y for x, y in zip(a, b)]
    f1 = [_span_f1(x, y) for x, y in zip(a, b)]
    exact, overlap = float(np.mean(same)), float(np.mean(f1))
    worst = texts[int(np.argmin(f1))] if overlap < 1 else None
    return [
        CheckResult("answer exact match", "start_logits", exact >= limits["exact_match"], {"exact_match": exact},
                    {"exact_match": limits["exact_match"]}, short(worst) if worst else None),
        CheckResult("answer token F1", "end_logits", overlap >= limits["answer_f1"], {"answer_f1": overlap},
                    {"answer_f1": limits["answer_f1"]}),
    ]


def _span_f1(a: tuple[int, int] | None, b: tuple[int, int] | None) -> float:
    if a is None or b is None:
        return float(a == b)
    both = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    return 2 * both / ((a[1] - a[0] + 1) + (b[1] - b[0] + 1))


def _fill_checks(output: str, got: list[dict], expected: list[dict], masks: list[np.ndarray], texts: list[str],
                 limits: dict[str, float]) -> list[CheckResult]:
    """At every judged (mask) token: the same best token (top-1) and the share of the five
    best tokens both models name (top-5)."""
    a = np.concatenate([g[output][m] for g, m in zip(got, masks)])
    b = np.concatenate([e[output][m] for e, m in zip(expected, masks)])
    if not len(a):
        return [CheckResult("top-1 agreement", output, False, {"top1_agreement": 0.0},
                            {"top1_agreement": limits["top1_agreement"]},
                            note="no mask token among the inputs; pass texts with words in them")]
    top_a, top_b = np.argsort(-a, axis=1)[:, :5], np.argsort(-b, axis=1)[:, :5]
    top1 = float(np.mean(top_a[:, 0] == top_b[:, 0]))
    top5 = float(np.mean([len(set(x) & set(y)) / 5 for x, y in zip(top_a, top_b)]))
    owners, offset = [], 0  # the input each judged token belongs to
    for mask in masks:
        owners += [offset + row for row in range(len(mask)) for _ in range(int(mask[row].sum()))]
        offset += len(mask)
    worst = texts[owners[int(np.argmax(top_a[:, 0] != top_b[:, 0]))]] if top1 < 1 else None
    return [
        CheckResult("top-1 agreement", output, top1 >= limits["top1_agreement"], {"top1_agreement": top1},
                    {"top1_agreement": limits["top1_agreement"]}, short(worst) if worst else None),
        CheckResult("top-5 agreement", output, top5 >= limits["top5_agreement"], {"top5_agreement": top5},
                    {"top5_agreement": limits["top5_agreement"]}),
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
