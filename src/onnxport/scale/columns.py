"""The result columns a Ray job adds, as Arrow types: one fixed type per task, so every
block (and every Parquet file written from one) has the same schema, and a failed row has
an empty result instead of a null that a reader could mistake for a value.

    embed     embedding  list<float32>
    ner       entities   list<struct<label, text, start, end, score>>
    classify  labels     list<struct<label, score>>
    (all)     error      string, null when the row succeeded
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# task_fn -> the pipeline method that does it, and the default name of its result column
TASK_METHODS = {"embed": "embed", "ner": "extract", "classify": "classify"}
DEFAULT_COLUMNS = {"embed": "embedding", "ner": "entities", "classify": "labels"}
ERROR_COLUMN = "error"


def result_type(task_fn: str) -> Any:
    import pyarrow as pa

    if task_fn == "embed":
        return pa.list_(pa.float32())
    if task_fn == "ner":
        return pa.list_(pa.struct([("label", pa.string()), ("text", pa.string()), ("start", pa.int64()),
                                   ("end", pa.int64()), ("score", pa.float64())]))
    return pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))


def embedding_column(vectors: Sequence[np.ndarray | None]) -> Any:
    """list<float32> from one vector per row (None: a failed row, an empty list), built from
    one flat buffer rather than row by row."""
    import pyarrow as pa

    lengths = np.array([0 if v is None else len(v) for v in vectors], dtype=np.int32)
    offsets = np.zeros(len(vectors) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    present = [np.asarray(v, dtype=np.float32) for v in vectors if v is not None]
    flat = np.concatenate(present) if present else np.zeros(0, dtype=np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=pa.float32()))


def records_column(task_fn: str, results: Sequence[list[dict] | None]) -> Any:
    """entities or labels (a list of records per row; None: a failed row, an empty list)."""
    import pyarrow as pa

    return pa.array([[] if r is None else r for r in results], type=result_type(task_fn))


def error_column(errors: Sequence[str | None]) -> Any:
    import pyarrow as pa

    return pa.array(list(errors), type=pa.string())


def check_columns(names: list[str], text_column: str, output_column: str, error_column: str, source: str) -> None:
    """InputError unless `names` has the text column and neither result column yet."""
    from ..errors import InputError

    if text_column not in names:
        raise InputError(f"{source} has no {text_column!r} column (columns: {', '.join(names) or 'none'}); pass the "
                         "text column's name (--text-field / text_column=)")
    for name in (output_column, error_column):
        if name in names:
            raise InputError(f"{source} already has a {name!r} column; rename it, or choose another output column "
                             "(output_column= / error_column=)")


# The second text of a sentence pair, as the CLI (and transformers' pipeline) names it.
PAIR_COLUMN = "text_pair"


def check_no_pairs(names: list[str], task_fn: str, source: str) -> None:
    """InputError for pairs given to classify: the workers classify single texts, and
    ignoring the pair's second text would be a silent wrong answer."""
    from ..errors import InputError

    if task_fn == "classify" and PAIR_COLUMN in names:
        raise InputError(f"{source} has a {PAIR_COLUMN!r} column (sentence pairs), but Ray jobs classify single "
                         f"texts; classify pairs without --engine ray, or drop the {PAIR_COLUMN!r} column to classify "
                         "the texts alone")


def pair_problems(table: Any, task_fn: str) -> list[str | None] | None:
    """Per row, why it cannot be classified here (it holds a pair's second text), or None when
    the batch has no pairs: a row whose second text were ignored would be a silent wrong answer.
    The driver checks the first record (`check_no_pairs`); this catches pairs further on."""
    if task_fn != "classify" or PAIR_COLUMN not in table.column_names:
        return None
    return [None if value is None else f"the row has a {PAIR_COLUMN!r} (a sentence pair), but Ray jobs classify "
            "single texts; classify pairs without --engine ray" for value in table.column(PAIR_COLUMN).to_pylist()]


def text_problem(value: Any, text_column: str) -> str | None:
    """Why `value` cannot be a row's text (None when it is a string)."""
    if isinstance(value, str):
        return None
    return f"{text_column!r} is {'null' if value is None else type(value).__name__ + ', not a string'}"
