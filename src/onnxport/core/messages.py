"""Short text for messages and reports: the first line of an error, a text cut to fit, and
the notices users should see without configuring logging."""

from __future__ import annotations

import logging
import os
import sys

LOGGER = "onnxport"
QUIET_ENV = "ONNXPORT_QUIET"


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


def notice(message: str) -> None:
    """Tell the user a fact worth one line (which model file `load` picked), as an INFO record
    of the "onnxport" logger.

    While the application has configured no logging (no handler on the way to the root
    logger, and no level set on "onnxport"), nothing would show that record, so the line goes
    to stderr as it is, the way a CLI prints. Once the application configures logging, its
    handlers and levels decide, and the line is never printed twice. Silence it with
    ONNXPORT_QUIET=1 or `logging.getLogger("onnxport").setLevel(logging.WARNING)`."""
    if os.environ.get(QUIET_ENV, "").strip() not in ("", "0"):
        return
    logger = logging.getLogger(LOGGER)
    if logger.hasHandlers():
        logger.info(message)
    elif logger.level == logging.NOTSET or logger.isEnabledFor(logging.INFO):
        print(message, file=sys.stderr, flush=True)
