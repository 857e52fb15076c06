"""Answer spans from a question-answering model's start/end logits, decided exactly as
transformers' question-answering pipeline (5.2, the last release that had it) decides them.

Per window of the context: logits outside the context (question, separators, padding)
are set to -10000 except the first token and any [CLS] (where models say "no answer"),
each side is softmaxed, the first token's score becomes the "no answer" score and is then
zeroed, and the best (start, end) pairs with start <= end < start + max_answer_length
are taken by start probability x end probability. Spans are widened to whole words, the
same answer text (ignoring case) found in several windows adds up its scores, and the
best `top_k` over all windows win. No torch here: numpy and tokenizers encodings only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# transformers' fill for tokens that cannot be part of an answer
_OUTSIDE = -10000.0


@dataclass(frozen=True)
class SpanOptions:
    top_k: int = 1
    max_answer_length: int = 30
    handle_impossible_answer: bool = False
    align_to_words: bool = True


def answer_positions(encoding, context_sequence: int, cls_id: int | None) -> np.ndarray:
    """1 where a token may start or end an answer: the context's tokens, and [CLS]."""
    allowed = np.array([sequence == context_sequence for sequence in encoding.sequence_ids], dtype=np.int64)
    if cls_id is not None:
        allowed[np.asarray(encoding.ids) == cls_id] = 1
    return allowed


def window_candidates(start_logits: np.ndarray, end_logits: np.ndarray, allowed: np.ndarray, count: int,
                      max_answer_length: int) -> tuple[list[tuple[int, int, float]], float]:
    """([(start token, end token, score)] best first, at most `count`; the no-answer score)
    of one window, from its logits over its own tokens (no padding)."""
    start = _softmax(np.where(allowed == 0, _OUTSIDE, start_logits.astype(np.float32)))
    end = _softmax(np.where(allowed == 0, _OUTSIDE, end_logits.astype(np.float32)))
    null_score = float(start[0] * end[0])
    start[0] = end[0] = 0.0
    scores = np.tril(np.triu(np.outer(start, end)), max_answer_length - 1)
    flat = scores.ravel()
    if count == 1:
        best = np.array([np.argmax(flat)])
    elif len(flat) < count:
        best = np.argsort(-flat)
    else:
        best = np.argpartition(-flat, count)[:count]
        best = best[np.argsort(-flat[best])]
    starts, ends = np.unravel_index(best, scores.shape)
    # transformers tests membership against both index arrays of a [1, tokens] mask, so the
    # first position (row index 0) always counts as allowed; kept, to give the same answers.
    usable = set(np.flatnonzero(allowed).tolist()) | ({0} if allowed.any() else set())
    return [(int(s), int(e), float(scores[s, e])) for s, e in zip(starts, ends)
            if int(s) in usable and int(e) in usable], null_score


def char_span(encoding, start: int, end: int, sequence: int, align_to_words: bool) -> tuple[int, int]:
    """Character offsets in the context of tokens start..end: widened to the words they are
    in (align_to_words), or the tokens' own offsets where a token belongs to no word."""
    if align_to_words:
        try:
            first = encoding.word_to_chars(encoding.token_to_word(start), sequence_index=sequence)
            last = encoding.word_to_chars(encoding.token_to_word(end), sequence_index=sequence)
            return first[0], last[1]
        except Exception:  # noqa: BLE001 - a special token has no word (None); transformers falls back too
            pass
    return encoding.offsets[start][0], encoding.offsets[end][1]


def best_answers(context: str, windows: Sequence, logits: Sequence[tuple[np.ndarray, np.ndarray]],
                 options: SpanOptions, *, context_sequence: int, cls_id: int | None) -> list[dict]:
    """[{answer, start, end, score}] best first (top_k of them) over all windows of one
    (question, context): `logits` holds each window's (start, end) logits over its tokens."""
    count = options.top_k * 2 + 10 if options.align_to_words else options.top_k  # widening merges some
    answers: list[dict] = []
    null_score = 1000000.0
    for encoding, (start_logits, end_logits) in zip(windows, logits):
        allowed = answer_positions(encoding, context_sequence, cls_id)
        candidates, null = window_candidates(start_logits, end_logits, allowed, count, options.max_answer_length)
        null_score = min(null_score, null)
        for start, end, score in candidates:
            first, last = char_span(encoding, start, end, context_sequence, options.align_to_words)
            text = context[first:last]
            same = next((answer for answer in answers if answer["answer"].lower() == text.lower()), None)
            if same is not None:
                same["score"] += score
            else:
                answers.append({"answer": text, "start": first, "end": last, "score": score})
    if options.handle_impossible_answer:
        answers.append({"answer": "", "start": 0, "end": 0, "score": null_score})
    return sorted(answers, key=lambda answer: answer["score"], reverse=True)[:options.top_k]


def _softmax(values: np.ndarray) -> np.ndarray:
    exp = np.exp(values - values.max())
    return exp / exp.sum()
