"""Short text for messages and reports: the first line of an error, a text cut to fit."""

from __future__ import annotations


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first non-empty line of `error`'s message (its type name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def short(text: str | None, limit: int = 60) -> str | None:
    """`text` on one line, cut with an ellipsis past `limit` characters."""
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
