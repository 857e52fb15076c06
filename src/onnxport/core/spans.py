"""The one decoder from per-token BIO/BIOES tags to entity spans.

Used by the NER pipeline (character spans) and by the quality checks (token spans), so
the int8 guard's entity F1 measures exactly what `ner` returns. The rules follow
transformers' token-classification pipeline: `B-X` starts an entity, `I-X` (and `E-X`)
continue an open entity of type X or else start one, `S-X` is a one-unit entity, `E-`
and `S-` close it, `O` closes it. A tag without a prefix (`SRC`, IO tagging) counts as
`I-`, so consecutive units of the same type form one entity.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

OUTSIDE = "O"


def split_tag(label: str) -> tuple[str, str]:
    """'B-SRC' -> ('B', 'SRC'); 'O' -> ('O', ''); a bare 'SRC' -> ('I', 'SRC')."""
    if label == OUTSIDE or not label:
        return OUTSIDE, ""
    if len(label) > 2 and label[1] in "-_" and label[0] in "BIES":
        return label[0], label[2:]
    return "I", label


@dataclasses.dataclass
class Span:
    """One entity: its type, where it starts and ends (units of the caller's choosing), and
    the score of every unit it covers."""

    label: str
    start: int
    end: int
    scores: list[float]


def group_spans(units: Iterable[tuple[int, int, str, float]]) -> list[Span]:
    """Entities from consecutive units `(start, end, tag, score)`, in order."""
    spans: list[Span] = []
    current: Span | None = None
    for start, end, tag, score in units:
        prefix, kind = split_tag(tag)
        if prefix == OUTSIDE:
            current = None
            continue
        if current is not None and prefix in ("I", "E") and kind == current.label:
            current.end = end
            current.scores.append(score)
        else:
            current = Span(kind, start, end, [score])
            spans.append(current)
        if prefix in ("E", "S"):
            current = None
    return spans


def label_name(labels: dict[int, str] | None, label_id: int) -> str:
    """The tag of `label_id`; an id the label map lacks is named as transformers names it."""
    return (labels or {}).get(int(label_id), f"LABEL_{int(label_id)}")
