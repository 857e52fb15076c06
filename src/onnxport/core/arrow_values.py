"""Python values as Arrow columns, for every writer of result tables (the local engine's
.parquet output, the Ray jobs' JSON Lines reader). The caller passes the `pyarrow` module:
core never imports it, so the runtime install needs no pyarrow.
"""

from __future__ import annotations

import json
from typing import Any


def arrow_column(pa: Any, values: list[Any]) -> Any:
    """Scalars as a native column; nested values (or types that do not mix) as JSON strings."""
    if not any(isinstance(v, (dict, list)) for v in values):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return pa.array(
        [None if v is None else json.dumps(v, ensure_ascii=False) for v in values],
        type=pa.string(),
    )


def is_mixed_id(values: list[Any]) -> bool:
    """True when the values mix strings and integers, as ids from hand-made files do; one
    column holds one type, so such ids are written as strings."""
    kinds = {type(v) for v in values if v is not None}
    return kinds == {str, int}
