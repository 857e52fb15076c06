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

from ..core.arguments import PAIR_FIELD

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


# The second text of a sentence pair when no pair column is named, as the CLI calls it.
PAIR_COLUMN = PAIR_FIELD


def check_pair_column(names: list[str], task_fn: str, pair_column: str | None, text_column: str,
                      source: str) -> None:
    """InputError for a named pair column on a task that takes single texts, or one the input lacks."""
    from ..errors import InputError

    if pair_column is None:
        return
    if task_fn != "classify":
        raise InputError(f"pair_column (--pair-field) is for classify; {task_fn} takes single texts")
    if pair_column == text_column:
        raise InputError(f"the pair column and the text column are both {pair_column!r}; name the column of the "
                         "pair's second text")
    if pair_column not in names:
        raise InputError(f"{source} has no {pair_column!r} column for the pairs' second texts (columns: "
                         f"{', '.join(names) or 'none'}); pass the right --pair-field / pair_column=")


def row_pairs(table: Any, task_fn: str, pair_column: str | None) -> tuple[list, list]:
    """(per row its pair's second text or None for a single text, per row why it is bad or
    None). A named `pair_column`: every row is a pair and needs both texts. Otherwise a
    `text_pair` column, where a batch has one, makes the rows with a value pairs (classify
    only): never a pair whose second text is silently dropped."""
    rows = table.num_rows
    column = pair_column or (PAIR_COLUMN if task_fn == "classify" else None)
    if column is None or column not in table.column_names:
        return [None] * rows, [None] * rows
    seconds, problems = table.column(column).to_pylist(), []
    for second in seconds:
        if second is None:
            problems.append(f"no {column!r} value, the second text of the pair" if pair_column else None)
        elif not isinstance(second, str) or not second.strip():
            kind = "empty" if isinstance(second, str) else type(second).__name__
            problems.append(f"{column!r} (the second text of the pair) is {kind}; a pair needs both texts")
        else:
            problems.append(None)
    return seconds, problems


def text_problem(value: Any, text_column: str) -> str | None:
    """Why `value` cannot be a row's text (None when it is a string)."""
    if isinstance(value, str):
        return None
    return f"{text_column!r} is {'null' if value is None else type(value).__name__ + ', not a string'}"
