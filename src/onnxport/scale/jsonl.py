"""Reading JSON Lines for a Ray job: line by line, so one bad line is one bad row.

Ray's own `read_json` infers one type per column and a block: a text that is a number, a
null, or a line that is not JSON fails the whole file (and Ray 2.50 and older read JSON
through pandas, where a column holding strings and numbers cannot even become Arrow). Here
each line is parsed on its own: the text column is always a string column, and a row whose
text is missing or not a string gets a null text and its reason in a hidden column, which
the worker turns into that row's `error`. Other fields keep their JSON type when a block's
values share one; ids mixing strings and integers become strings; anything else that does
not mix is kept as JSON text.
"""

from __future__ import annotations

import json
from typing import Any

from ..core.arrow_values import arrow_column, is_mixed_id
from .columns import text_problem

# Set by the reader, read and dropped by the worker (never written).
PROBLEM_COLUMN = "__onnxport_row_problem"


def read_jsonl(ray: Any, uris: list[str], text_column: str) -> Any:
    """A Dataset of the JSON objects in `uris`, one row per non-blank line."""
    lines = ray.data.read_text(uris, drop_empty_lines=True)
    return lines.map_batches(parse_lines, batch_format="pyarrow", fn_kwargs={"text_column": text_column})


def parse_lines(batch: Any, text_column: str) -> Any:
    """A block of lines (the `text` column of read_text) as a table of their fields."""
    import pyarrow as pa

    records: list[dict] = []
    problems: list[str | None] = []
    for line in batch.column("text").to_pylist():
        if not line.strip():  # a blank line is no row (read_text drops only empty ones)
            continue
        record, problem = _parse(line, text_column)
        records.append(record)
        problems.append(problem)
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    columns = {name: _column(pa, [record.get(name) for record in records]) for name in names if name != text_column}
    columns[text_column] = pa.array([record.get(text_column) for record in records], type=pa.string())
    columns[PROBLEM_COLUMN] = pa.array(problems, type=pa.string())
    return pa.table(columns)


def _parse(line: str, text_column: str) -> tuple[dict, str | None]:
    try:
        record = json.loads(line)
    except ValueError as error:
        return {}, f"not valid JSON ({getattr(error, 'msg', error)})"
    if not isinstance(record, dict):
        return {}, f"not a JSON object but {type(record).__name__}"
    if text_column not in record:
        return record, f"no {text_column!r} field"
    problem = text_problem(record[text_column], text_column)
    return (record, None) if problem is None else ({**record, text_column: None}, problem)


def _column(pa: Any, values: list) -> Any:
    """As the local engine writes fields: ids mixing strings and integers as strings, else
    `arrow_column` (native scalars; nested or clashing values as JSON text)."""
    if is_mixed_id(values):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
    return arrow_column(pa, values)


def first_record_fields(filesystem: Any, path: str) -> list[str] | None:
    """The fields of the first JSON object in a file, or None when its first line is not one
    (the job then reports that row; this is only for an early check of --text-field)."""
    with filesystem.open_input_stream(path) as stream:
        head = b""
        while b"\n" not in head:
            chunk = stream.read(65536)
            if not chunk:
                break
            head += chunk
    for line in head.decode("utf-8", errors="replace").splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError:
                return None
            return list(record) if isinstance(record, dict) else None
    return None
