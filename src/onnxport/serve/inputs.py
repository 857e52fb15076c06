"""A request's `input`/`inputs` as a list of items, checked against the limits: an empty
list is a 400, too many items a 413, an empty text a 400 naming it."""

from __future__ import annotations

import base64

import numpy as np

from .limits import Limits
from .problems import Problem


def request_items(value, *, field: str, limits: Limits) -> tuple[list, bool]:
    """(items, single): one text (or one list of token ids) becomes a list of one."""
    single = isinstance(value, str) or (isinstance(value, list) and bool(value) and isinstance(value[0], int))
    items = [value] if single else list(value)
    if not items:
        raise Problem(400, f"{field} is an empty list; send at least one item", reason="empty_input", param=field)
    if len(items) > limits.max_client_batch_size:
        raise Problem(413, f"{field} has {len(items)} items, more than this server's limit of "
                           f"{limits.max_client_batch_size} per request; split it into smaller requests",
                      reason="too_many_items", param=field)
    for index, item in enumerate(items):
        if isinstance(item, str) and not item.strip():
            raise Problem(400, f"{field}[{index}] is an empty text; send text with at least one word, or leave "
                               "the item out", reason="empty_input", param=field)
        if isinstance(item, tuple) and not all(half.strip() for half in item):
            raise Problem(400, f"{field}[{index}] is a pair with an empty text; send both texts of the pair, or "
                               "the other one alone as a text", reason="empty_input", param=field)
    return items, single


def check_dimensions(dimensions: int | None, width: int) -> None:
    if dimensions is not None and not 1 <= dimensions <= width:
        raise Problem(400, f"dimensions must be between 1 and this model's {width}, not {dimensions}",
                      reason="bad_dimensions", param="dimensions")


def base64_vector(vector: np.ndarray) -> str:
    """What OpenAI sends for encoding_format=base64: little-endian float32 bytes, base64."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
