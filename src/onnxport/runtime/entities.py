"""Entity spans from per-token label probabilities, over one window of a text or many.

The rules are those of transformers' `pipeline("token-classification")` (its
`gather_pre_entities`, `aggregate_words`, `group_entities` and, for texts run in overlapping
windows, `aggregate_overlapping_entities`), so onnxport finds the entities users check it
against, for WordPiece, byte-level BPE and Unigram/Metaspace tokenizers alike:

* Every non-special token counts, including tokens with empty offsets (a lone byte-level
  `Ġ`): the pipeline labels them, and they can join or split an entity.
* A token continues the word before it (first/max/average) when the tokenizer has a
  continuing-subword prefix (`##`) and the token's string is not the length of its text;
  otherwise when no space comes before it in the text. An unknown token starts a word.
* Each window is decoded alone; entities of all windows are then sorted by start and, where
  two overlap, the longer (at equal length the more confident) is kept, so each character
  belongs to at most one entity.

One difference, on purpose: an entity's start and end are trimmed to its characters (the
pipeline's spans keep the leading space a Metaspace `▁Paulo` token covers, `' Paulo'`), and
an entity with no character left is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.spans import group_spans, label_name
from ..errors import InputError

AGGREGATIONS = ("simple", "first", "max", "average")


@dataclass(frozen=True)
class WordRules:
    """What tells a token that continues a word from one that starts it, per tokenizer."""

    subword_prefix: str | None = None  # "##" for WordPiece; None for byte-level BPE, Unigram
    unk_id: int | None = None


@dataclass
class _Token:
    start: int
    end: int
    probabilities: np.ndarray
    is_subword: bool


def check_aggregation(aggregation: str) -> str:
    if aggregation not in AGGREGATIONS:
        raise InputError(f"unknown aggregation '{aggregation}'; choose one of {', '.join(AGGREGATIONS)}")
    return aggregation


def decode_entities(text: str, encoding, probabilities: np.ndarray, labels: dict[int, str],
                    aggregation: str, rules: WordRules | None = None) -> list[dict]:
    """Entity spans of `text` from one encoding and its [tokens, labels] probabilities.

    simple: token by token. first/max/average: one label per word (from its first token, its
    most confident token, or the mean of its tokens' probabilities), so a word is never cut in
    two. Units are grouped into entities by B-/I- tags (`core.spans.group_spans`)."""
    return window_entities(text, [encoding], [probabilities], labels, aggregation, rules)


def window_entities(text: str, windows: Sequence, probabilities: Sequence[np.ndarray], labels: dict[int, str],
                    aggregation: str, rules: WordRules | None = None) -> list[dict]:
    """Entity spans of `text` from its window encodings (`TextEncoder.windows`) and each
    window's probabilities, merged so no two entities overlap."""
    check_aggregation(aggregation)
    if len(windows) != len(probabilities):
        raise InputError(f"{len(windows)} window encodings but {len(probabilities)} probability arrays; "
                         "pass one array per window, in the same order")
    rules = rules or WordRules()
    found: list[dict] = []
    for encoding, window_probabilities in zip(windows, probabilities):
        tokens = _tokens(text, encoding, window_probabilities, rules)
        found.extend(_entities(tokens, labels, aggregation))
    if len(windows) > 1:
        found = merge_overlapping(found)
    return [entity for entity in (_trimmed(text, entity) for entity in found) if entity is not None]


def _tokens(text: str, encoding, probabilities: np.ndarray, rules: WordRules) -> list[_Token]:
    """The window's non-special tokens, each marked as starting or continuing a word."""
    tokens = []
    for index, (start, end) in enumerate(encoding.offsets[: len(probabilities)]):
        if encoding.special_tokens_mask[index]:
            continue
        if rules.unk_id is not None and encoding.ids[index] == rules.unk_id:
            is_subword = False
        elif rules.subword_prefix:
            # the prefix makes the token string longer than its text: `##lo` over `lo`
            is_subword = len(encoding.tokens[index]) != len(text[start:end])
        else:
            is_subword = start > 0 and " " not in text[start - 1:start + 1]
        tokens.append(_Token(start, end, probabilities[index], is_subword))
    return tokens


def _entities(tokens: list[_Token], labels: dict[int, str], aggregation: str) -> list[dict]:
    """One window's entities, spans as the tokens' offsets give them (not trimmed yet)."""
    units = _token_units(tokens) if aggregation == "simple" else _word_units(tokens, aggregation)
    spans = group_spans((start, end, label_name(labels, label_id), score) for start, end, label_id, score in units)
    return [{"label": span.label, "start": span.start, "end": span.end, "score": float(np.mean(span.scores))}
            for span in spans]


def _token_units(tokens: list[_Token]) -> list[tuple[int, int, int, float]]:
    return [(t.start, t.end, int(t.probabilities.argmax()), float(t.probabilities.max())) for t in tokens]


def _word_units(tokens: list[_Token], aggregation: str) -> list[tuple[int, int, int, float]]:
    words: list[list[_Token]] = []
    for token in tokens:
        if words and token.is_subword:
            words[-1].append(token)
        else:
            words.append([token])
    return [_word_unit(word, aggregation) for word in words]


def _word_unit(word: list[_Token], aggregation: str) -> tuple[int, int, int, float]:
    if aggregation == "first":
        p = word[0].probabilities
    elif aggregation == "max":
        p = max(word, key=lambda token: token.probabilities.max()).probabilities
    else:
        p = np.mean([token.probabilities for token in word], axis=0)
    return word[0].start, word[-1].end, int(p.argmax()), float(p.max())


def merge_overlapping(entities: list[dict]) -> list[dict]:
    """Entities of overlapping windows, sorted by start; of two that overlap, the longer one
    (at equal length, the higher score) stays. The pipeline's `aggregate_overlapping_entities`."""
    if not entities:
        return []
    ordered = sorted(entities, key=lambda entity: entity["start"])  # stable: earlier windows first
    kept: list[dict] = []
    previous = ordered[0]
    for entity in ordered:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or length == previous_length and entity["score"] > previous["score"]:
                previous = entity
        else:
            kept.append(previous)
            previous = entity
    kept.append(previous)
    return kept


def _trimmed(text: str, entity: dict) -> dict | None:
    """The entity with text, its span cut to its characters (no surrounding whitespace); None
    when nothing is left (e.g. a lone `▁` token labelled as an entity)."""
    start, end = entity["start"], entity["end"]
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end <= start:
        return None
    return {"label": entity["label"], "text": text[start:end], "start": start, "end": end, "score": entity["score"]}


def flat_windows(windows: Sequence[Sequence]) -> list:
    """Every text's window encodings in one list, text after text, for one model run."""
    return [window for text_windows in windows for window in text_windows]


def per_text(rows: Sequence, windows: Sequence[Sequence]) -> list[list]:
    """The results of `flat_windows(windows)`, given back to their texts."""
    grouped, start = [], 0
    for text_windows in windows:
        grouped.append(list(rows[start:start + len(text_windows)]))
        start += len(text_windows)
    return grouped
