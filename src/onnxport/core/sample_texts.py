"""Built-in varied texts for verification, calibration, profiling and benchmarks.

Deterministic: the same list every run. It mixes one-word inputs, queries, sentences in
several scripts, numbers and punctuation, and paragraphs far past any max length, so a
batch of them is padding-heavy and exercises truncation.
"""

from __future__ import annotations

import random
from typing import Iterable

from ..errors import InputError

_SHORT = [
    "hi", "Paris", "42", "?", "ok", "naïve café", "日本", "🙂", "C++", "e-mail",
]
_SENTENCES = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I export a transformer model to ONNX?",
    "AC sleeper bus from Bangalore to Mumbai tomorrow",
    "Book two tickets on the 9:45 pm Volvo to Chennai for next Friday.",
    "The meeting was moved to 3 p.m. on 2024-03-15 (room B-12).",
    "Prices rose 4.7% year over year, to $1,299.99 per unit.",
    "Is ONNX really faster than PyTorch on a CPU?",
    "Les modèles de langue sont entraînés sur de grands corpus.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El tren de alta velocidad llega a Madrid a las ocho.",
    "Москва — столица России.",
    "東京は日本の首都です。",
    "北京是中国的首都。",
    "서울은 대한민국의 수도입니다.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया, यह एक परीक्षण वाक्य है।",
    "Ελληνικά: η γρήγορη καφέ αλεπού.",
    "email me at someone@example.com or call +1 (555) 010-9999!!!",
    "C'est la vie... or is it?! — she asked; nobody answered.",
    "   leading and trailing spaces   ",
    "UPPER CASE SHOUTING ABOUT SEAT TYPES",
    "tabs\tand\nnewlines\nin one text",
    "😀😃😄 emoji-heavy text 🚌🚌",
    "Non-AC seater from Pune to Goa on Saturday night",
    "The Eiffel Tower is 330 metres tall.",
    "Neural networks approximate functions.",
    "Sentence embeddings map text to vectors.",
]
_WORDS = (
    "model export graph tensor batch token sequence runtime latency throughput accuracy "
    "bus ticket city river mountain music history science market weather travel quantum "
    "protein language vector cosine similarity kernel memory cache thread schedule"
).split()


def _paragraph(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def builtin_texts(count: int = 240, *, seed: int = 0) -> list[str]:
    """`count` varied texts: the fixed ones first, then seeded generated ones."""
    rng = random.Random(seed)
    texts = list(_SHORT) + list(_SENTENCES)
    # Very long texts (past 512 tokens) to exercise truncation.
    texts += [_paragraph(rng, 700), " ".join(_SENTENCES * 6)]
    while len(texts) < count:
        kind = len(texts) % 4
        if kind == 0:
            texts.append(rng.choice(_SENTENCES) + " " + rng.choice(_SENTENCES))
        elif kind == 1:
            texts.append(_paragraph(rng, rng.randint(3, 12)))
        elif kind == 2:
            texts.append(_paragraph(rng, rng.randint(40, 320)))
        else:
            texts.append(f"{rng.choice(_SHORT)} {rng.randint(0, 10_000)} {rng.choice(_WORDS)}")
    return texts[:count]


HELD_OUT_SEED = 7


def held_out_texts(count: int, seen: Iterable[str]) -> list[str]:
    """`count` generated texts of the same kinds as `builtin_texts`, from another seed, none of
    them in `seen`: for judging a file on texts its guard never measured."""
    seen = set(seen)
    fixed = len(_SHORT) + len(_SENTENCES)  # the same first texts in every seed's list
    size = count + fixed
    while True:
        texts = [t for t in builtin_texts(size, seed=HELD_OUT_SEED)[fixed:] if t not in seen]
        if len(texts) >= count or size > 50 * (count + fixed):
            return texts[:count]
        size *= 2


def _document(rng: random.Random, words: int) -> str:
    """Sentences and short paragraphs until about `words` words."""
    parts: list[str] = []
    total = 0
    while total < words:
        part = rng.choice(_SENTENCES) if rng.random() < 0.4 else _paragraph(rng, rng.randint(15, 60))
        parts.append(part)
        total += len(part.split())
    return " ".join(parts)


def length_mix_texts(count: int = 256, *, seed: int = 0) -> list[str]:
    """`count` texts with a realistic length mix for benchmarks, shuffled, reproducible per seed.

    Roughly: 35% search-style queries (1-8 words), 30% sentences (one or two), 20%
    paragraphs (40-150 words) and 15% documents of 350-600 words, past any 256/512-token
    max length, so truncation and padding cost are part of what is measured.
    """
    if count < 1:
        raise InputError(f"the generator needs a count of at least 1, not {count}")
    rng = random.Random(seed)
    texts = []
    for index in range(count):
        share = (index + 0.5) / count  # a fixed mix per count; the shuffle below mixes it
        if share < 0.35:
            words = rng.sample(_WORDS, rng.randint(1, 7))
            texts.append(" ".join([rng.choice(_SHORT)] + words) if rng.random() < 0.3 else " ".join(words))
        elif share < 0.65:
            texts.append(" ".join(rng.choice(_SENTENCES) for _ in range(rng.randint(1, 2))))
        elif share < 0.85:
            texts.append(_paragraph(rng, rng.randint(40, 150)))
        else:
            texts.append(_document(rng, rng.randint(350, 600)))
    rng.shuffle(texts)
    return texts
