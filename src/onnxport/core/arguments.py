"""Checks for the arguments of the public API, so a wrong type is an InputError that says
what to pass, never a bare TypeError, AttributeError or KeyError from deep inside.

Plain Python only; every layer uses these for the arguments it takes from users.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError


def text_list(texts: Any, *, what: str = "a list of texts") -> list[str]:
    """`texts` as a list of str. One string (which would be read one character at a time),
    bytes, a mapping, None or a non-iterable is refused, as is any item that is not a str."""
    if isinstance(texts, str):
        raise InputError(f"texts is one str ({texts[:40]!r}), which would be read one character at a time; "
                         f"pass {what}, e.g. [text]")
    if isinstance(texts, (bytes, bytearray)):
        raise InputError(f"pass {what} (str), not {type(texts).__name__}; decode bytes first, e.g. "
                         "data.decode('utf-8')")
    if isinstance(texts, Mapping):
        raise InputError(f"texts is a mapping ({type(texts).__name__}); pass {what}, e.g. list(mapping.values())")
    if texts is None or not isinstance(texts, Iterable):
        raise InputError(f"pass {what} (str), not {'None' if texts is None else type(texts).__name__}")
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise InputError(f"text #{index} is {type(text).__name__}, not str; pass a list of strings")
    return items


PAIR_EXAMPLE = "('premise', 'hypothesis')"
# The field of a pair's second text in files and tables, as transformers' pipeline names it.
PAIR_FIELD = "text_pair"


def text_pair(item: Any, index: int = 0) -> tuple[str, str]:
    """`item` as a (first, second) pair of str: a tuple or list of exactly two texts, neither
    missing nor blank (a blank half would silently make the pair one text)."""
    if not isinstance(item, (tuple, list)):
        raise InputError(f"pair #{index} is {type(item).__name__}, not a (first, second) pair; "
                         f"pass pairs such as {PAIR_EXAMPLE}")
    if len(item) != 2:
        raise InputError(f"pair #{index} has {len(item)} item{'' if len(item) == 1 else 's'}, but a pair is "
                         "exactly (first, second); "
                         f"pass two texts per pair, e.g. {PAIR_EXAMPLE}, or a list of separate texts")
    for half, name in zip(item, ("first", "second")):
        if half is None or (isinstance(half, str) and not half.strip()):
            raise InputError(f"pair #{index} has no {name} text ({half!r}); give both texts of the pair, "
                             "or classify the other one alone as a single text")
        if not isinstance(half, str):
            raise InputError(f"pair #{index}: the {name} text is {type(half).__name__}, not str; "
                             "pass two strings per pair")
    return item[0], item[1]


def pair_list(pairs: Any) -> list[tuple[str, str]]:
    """`pairs` as a list of (first, second) str pairs (see `text_pair`)."""
    if isinstance(pairs, (str, bytes, bytearray, Mapping)) or pairs is None or not isinstance(pairs, Iterable):
        kind = "None" if pairs is None else type(pairs).__name__
        raise InputError(f"pass a list of (first, second) pairs, e.g. [{PAIR_EXAMPLE}], not {kind}")
    return [text_pair(item, index) for index, item in enumerate(pairs)]


def is_one_pair(value: Any) -> bool:
    """A tuple of texts (not of pairs) is one pair: classify(('a', 'b')) means the pair a/b."""
    return isinstance(value, tuple) and not any(isinstance(item, (tuple, list)) for item in value)


def texts_or_pairs(items: Any, *, what: str = "a list of texts or of (first, second) pairs"
                   ) -> tuple[list[str] | list[tuple[str, str]], bool]:
    """(items, are_pairs): a list of texts, or a list of pairs (tuples or 2-item lists).
    A list mixing the two is refused rather than guessed."""
    if isinstance(items, (str, bytes, bytearray, Mapping)) or items is None or not isinstance(items, Iterable):
        return text_list(items, what=what), False  # raises, saying what to pass
    items = list(items)
    pair_at = next((i for i, item in enumerate(items) if isinstance(item, (tuple, list))), None)
    if pair_at is None:
        return text_list(items, what=what), False
    text_at = next((i for i, item in enumerate(items) if isinstance(item, str)), None)
    if text_at is not None:
        raise InputError(f"the inputs mix texts and pairs (item #{text_at} is a text, item #{pair_at} a pair); "
                         f"pass only texts, or only (first, second) pairs such as {PAIR_EXAMPLE}")
    return pair_list(items), True


def positive_int(value: Any, name: str) -> int:
    """`value` as an int of at least 1, or InputError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a whole number of at least 1, not {value!r} ({type(value).__name__})")
    if value < 1:
        raise InputError(f"{name} must be at least 1, not {value}")
    return int(value)


def optional_positive_int(value: Any, name: str) -> int | None:
    return None if value is None else positive_int(value, name)


def choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """`value` if it is one of `choices` (strings), else InputError listing them."""
    options = list(choices)
    if not isinstance(value, str) or value not in options:
        raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(options)}")
    return value


def file_name(value: Any, name: str) -> str:
    """A file name inside an artifact (model.onnx, model.int8.onnx, ...)."""
    if not isinstance(value, str) or not value or Path(value).name != value:
        raise InputError(f"{name} must be the name of a file in the artifact, e.g. 'model.onnx', not {value!r}")
    return value


def path_arg(value: Any, name: str) -> Path:
    """A filesystem path given as str or pathlib.Path."""
    if isinstance(value, (str, Path)) and str(value):
        return Path(value)
    raise InputError(f"{name} must be a path (str or pathlib.Path), not {value!r} ({type(value).__name__})")


def string_list(value: Any, name: str) -> list[str]:
    """One string (as a one-item list) or a list of strings: patterns, provider names."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise InputError(f"{name} must be a string or a list of strings, not {type(value).__name__}")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise InputError(f"{name} must be a string or a list of strings, not {items!r}")
    return items


def limits(value: Any, name: str, known: Iterable[str]) -> dict[str, float]:
    """{metric: number} with known metric names, e.g. quality targets."""
    options = list(known)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"{name} must be a dict of {{metric: number}} with metrics from {', '.join(options)}, "
                         f"not {type(value).__name__}")
    result = {}
    for key, number in value.items():
        if key not in options:
            raise InputError(f"unknown metric {key!r} in {name}; choose from {', '.join(options)}")
        if isinstance(number, bool) or not isinstance(number, numbers.Real):
            raise InputError(f"{name}[{key!r}] must be a number, not {number!r}")
        result[key] = float(number)
    return result
