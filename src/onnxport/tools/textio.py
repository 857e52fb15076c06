"""Reading the texts that `onnxport embed|ner|classify` process, and writing their results.

Inputs (`read_rows`):

    no INPUT (or "-")    stdin, one text per line
    one FILE.txt         one text per line; blank lines are skipped, line numbers stay true
    one FILE.jsonl       one JSON object per line with a text field and an optional id field
    one FILE.csv         a header row, then a text column and an optional id column
    one FILE.parquet     a text column and an optional id column (needs pyarrow)
    anything else        each argument is one text

Every row becomes a `Row(id, text, line, pair)`. With `pair_field`, the rows of .jsonl, .csv
and .parquet files are sentence pairs: `text` is the first text, `pair` the second (a row
without it is bad); with `pair_optional`, only the rows that have the field are pairs. A bad
row stops the run with its file and line number, or with `skip_bad` is skipped with a
warning. A directory, a binary file (NUL bytes) or one that is not UTF-8 is an InputError
naming it.

Outputs (`write_results`): JSON Lines on stdout, or a .jsonl, .npy or .parquet file written
atomically (a temp file in the same directory, then `os.replace`), so a failure never leaves
a half-written file behind.

All text is UTF-8. This module needs only numpy; pyarrow is imported when a parquet file
is read or written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..core.arrow_values import arrow_column, is_mixed_id
from ..core.files import atomic_path
from ..errors import InputError

__all__ = [
    "INPUT_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "Row",
    "check_output",
    "read_rows",
    "read_texts",
    "write_results",
]

INPUT_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")
OUTPUT_SUFFIXES = (".jsonl", ".npy", ".parquet")

_SKIP_HINT = "fix the row, or pass --skip-bad to skip such rows"


@dataclass(frozen=True)
class Row:
    """One input text.

    id: the --id-field value when the input has one, else the row's 0-based position.
    line: the 1-based line of the row in its file (csv: the row number, the header being
    line 1; parquet: the 1-based row index); for text arguments, the argument's position.
    pair: the second text of a sentence pair (read with `pair_field`), else None.
    """

    id: str | int
    text: str
    line: int
    pair: str | None = None

    @property
    def item(self) -> str | tuple[str, str]:
        """What a pipeline takes for this row: the text, or the (text, pair) tuple."""
        return self.text if self.pair is None else (self.text, self.pair)


# --------------------------------------------------------------------------- reading


def read_rows(
    inputs: Sequence[str],
    *,
    text_field: str = "text",
    id_field: str = "id",
    pair_field: str | None = None,
    pair_optional: bool = False,
    skip_bad: bool = False,
    warn: Callable[[str], None] | None = None,
    stdin: TextIO | None = None,
) -> list[Row]:
    """The rows to process, in input order.

    `inputs` are the command's INPUT arguments: none (or a single "-") reads stdin, one text
    per line; a single existing .txt, .jsonl, .csv or .parquet path reads that file; anything
    else makes each argument one text. A bad row raises InputError naming the file and line,
    unless `skip_bad`, which skips it and calls `warn` (default: print to stderr).
    `pair_field` reads sentence pairs from file rows (every row needs it, unless
    `pair_optional`: then rows without it are single texts).
    """
    if isinstance(inputs, str):
        raise TypeError("read_rows() takes a sequence of input arguments, not a single string")
    inputs = list(inputs)
    if warn is None:
        warn = _warn_stderr
    reader = _Reader(skip_bad=skip_bad, warn=warn, pair_field=pair_field, pair_optional=pair_optional)

    if not inputs or inputs == ["-"]:
        _check_rows_have_fields(reader, "the lines on stdin")
        rows = reader.lines(_read_stdin(stdin), "<stdin>")
        source = "stdin"
    else:
        path = _input_file(inputs)
        if path is None:
            _check_rows_have_fields(reader, "the text arguments")
            return [Row(id=i, text=text, line=i + 1) for i, text in enumerate(inputs)]
        if path.suffix.lower() not in _FIELD_SUFFIXES:
            _check_rows_have_fields(reader, f"the lines of {path}")
        rows = _read_file(reader, path, text_field, id_field)
        source = str(path)
    _check_not_empty(rows, reader, source)
    return rows


def read_texts(path: str | Path, *, text_field: str = "text") -> list[str]:
    """The texts of a `--texts FILE` (verify, export, optimize, quantize, profile, bench), read
    by the same rules as the inputs of embed/ner/classify: .jsonl and .csv by `text_field`,
    .parquet by column, anything else one text per line. A bad row is an error."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"texts file {path} does not exist")
    if path.is_dir():
        raise InputError(f"texts file {path} is a directory; pass a file with one text per line")
    reader = _Reader(skip_bad=False, warn=_warn_stderr, hint="fix the row")
    rows = _read_file(reader, path, text_field, "id")
    _check_not_empty(rows, reader, str(path))
    return [row.text for row in rows]


_FIELD_SUFFIXES = (".jsonl", ".csv", ".parquet")


def _check_rows_have_fields(reader: "_Reader", source: str) -> None:
    """Pairs come from named fields: plain lines and text arguments have none."""
    if reader.pair_field is not None and not reader.pair_optional:
        raise InputError(f"sentence pairs are read from two fields of each row, but {source} give plain texts "
                         f"(one per line or argument); pass a {'/'.join(_FIELD_SUFFIXES)} file whose rows have the "
                         f"first text and a {reader.pair_field!r} field")


def _read_file(reader: "_Reader", path: Path, text_field: str, id_field: str) -> list[Row]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return reader.jsonl(_read_utf8(path), str(path), text_field, id_field)
    if suffix == ".csv":
        return reader.csv(_read_utf8(path), str(path), text_field, id_field)
    if suffix == ".parquet":
        return reader.parquet(path, text_field, id_field)
    return reader.lines(_read_utf8(path), str(path))


def _check_not_empty(rows: list[Row], reader: "_Reader", source: str) -> None:
    if not rows:
        if reader.skipped:
            raise InputError(
                f"no texts left in {source}: all {reader.skipped} rows were bad and skipped; "
                "fix the rows listed above"
            )
        if source == "stdin":
            raise InputError("no texts on stdin: pipe one text per line, or pass texts or a file")
        raise InputError(
            f"no texts in {source}: it is empty, or holds only blank lines or a header; give "
            "it at least one text"
        )


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _looks_like_path(arg: str) -> bool:
    """An argument meant as a file name rather than a text: one line, a file suffix, and no
    spaces unless it has a directory part ("my notes.txt" is taken as a text, "data/my
    notes.txt" as a path)."""
    if not arg or "\n" in arg or "\r" in arg or not Path(arg).suffix:
        return False
    return not any(c.isspace() for c in arg) or "/" in arg or os.sep in arg


def _existing_path(arg: str) -> Path | None:
    """The file or folder `arg` names when it is written as a path ("data/in", "in.txt", "."),
    else None: a plain word stays a text even when a folder has that name."""
    if not arg or "\n" in arg or "\r" in arg:
        return None
    if not (_looks_like_path(arg) or "/" in arg or os.sep in arg or arg in (".", "..")):
        return None
    path = Path(arg).expanduser()
    return path if path.exists() else None


def _input_file(inputs: list[str]) -> Path | None:
    """The one input file named by `inputs`, or None when the arguments are texts."""
    known = INPUT_SUFFIXES
    for arg in inputs:
        path = _existing_path(arg)
        if path is not None and path.is_dir():
            raise InputError(f"input {arg} is a directory; pass a {'/'.join(known)} file, or pipe texts on stdin")
    candidates = [a for a in inputs if _looks_like_path(a)]
    for arg in candidates:
        path = Path(arg).expanduser()
        if path.suffix.lower() in known and not path.exists():
            raise InputError(
                f"input file {arg} does not exist; check the path, or to process it as a text "
                f"pipe it on stdin (echo '{arg}' | onnxport ...)"
            )
    if len(inputs) > 1:
        files = [a for a in candidates if Path(a).suffix.lower() in known]
        if files:
            raise InputError(
                f"{', '.join(files)}: read one input file at a time; run once per file, or "
                "concatenate them into one file"
            )
        return None
    if not candidates:
        path = _existing_path(inputs[0])
        if path is not None and path.is_file():  # "data/texts": a file, but no suffix says how to read it
            raise InputError(
                f"input file {inputs[0]} has no suffix; onnxport reads {', '.join(known)} files: rename "
                "it, or pipe its lines on stdin"
            )
        return None
    arg = candidates[0]
    path = Path(arg).expanduser()
    if path.suffix.lower() in known:
        if path.is_dir():
            raise InputError(f"input {arg} is a directory; pass a {'/'.join(known)} file")
        return path
    if path.is_file():
        raise InputError(
            f"input file {arg} has an unsupported suffix {path.suffix!r}; onnxport reads "
            f"{', '.join(known)} files: convert or rename it, or pipe its lines on stdin"
        )
    return None


def _read_stdin(stdin: TextIO | None) -> str:
    stream = sys.stdin if stdin is None else stdin
    if stream is None or _isatty(stream):
        raise InputError("no input: pass texts, a file, or pipe text on stdin")
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:  # a real stdin: decode as UTF-8 whatever the locale says
        return _decode(buffer.read(), "<stdin>")
    return stream.read()


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _read_utf8(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read input file {path}: {error.strerror or error}") from None
    return _decode(data, str(path))


def _decode(data: bytes, source: str) -> str:
    if b"\0" in data:  # valid UTF-8 allows NUL, but no text file has one: binary or UTF-16
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise InputError(
            f"{source} is not a text file: line {line} holds a NUL byte, as binary files and "
            "UTF-16 text do; pass a text file saved as UTF-8"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InputError(
            f"{source} line {line} is not valid UTF-8 (byte {error.start}); save the input "
            "as UTF-8"
        ) from None


def _split_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) for each line, split on \\n only (a JSON string may hold
    U+2028, which str.splitlines would split on), without its \\r\\n or \\n."""
    for number, line in enumerate(text.split("\n"), 1):
        yield number, line[:-1] if line.endswith("\r") else line


class _BadRow(Exception):
    """A row that cannot be used; the message is the reason."""


class _Reader:
    def __init__(self, *, skip_bad: bool, warn: Callable[[str], None], hint: str = _SKIP_HINT,
                 pair_field: str | None = None, pair_optional: bool = False) -> None:
        self.skip_bad = skip_bad
        self.warn = warn
        self.hint = hint
        self.skipped = 0
        self.pair_field = pair_field
        self.pair_optional = pair_optional

    def pair(self, text: str, value: Any, present: bool, text_field: str) -> str | None:
        """The row's second text, None for a single text, or _BadRow: a pair needs both texts."""
        field = self.pair_field
        if field is None or (self.pair_optional and not present):
            return None
        if not present:
            raise _BadRow(f"no {field!r} field, the second text of the pair")
        if not isinstance(value, str):
            raise _BadRow(f"{field!r} (the second text of the pair) is {_json_kind(value)}, not a string")
        for name, half in ((text_field, text), (field, value)):
            if not half.strip():
                raise _BadRow(f"{name!r} is empty, and a pair needs both texts")
        return value

    def bad(self, source: str, line: int, reason: str) -> None:
        if not self.skip_bad:
            raise InputError(f"{source} line {line}: {reason}; {self.hint}")
        self.skipped += 1
        self.warn(f"{source} line {line}: {reason}, skipped")

    def lines(self, text: str, source: str) -> list[Row]:
        rows: list[Row] = []
        for number, line in _split_lines(text):
            if line.strip():
                rows.append(Row(id=len(rows), text=line, line=number))
        return rows

    def jsonl(self, text: str, source: str, text_field: str, id_field: str) -> list[Row]:
        rows: list[Row] = []
        position = 0  # counts every record, bad ones too, so ids do not depend on skip_bad
        for number, line in _split_lines(text):
            if not line.strip():
                continue
            try:
                try:
                    record = json.loads(line)
                except ValueError as error:
                    raise _BadRow(f"not valid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise _BadRow(f"not a JSON object but {_json_kind(record)}")
                if text_field not in record:
                    raise _BadRow(f"no {text_field!r} field (fields: {_names(record)})")
                value = record[text_field]
                if not isinstance(value, str):
                    raise _BadRow(f"{text_field!r} is {_json_kind(value)}, not a string")
                pair = self.pair(value, record.get(self.pair_field), self.pair_field in record, text_field)
                row_id = _check_id(record.get(id_field), id_field, position)
            except _BadRow as error:
                self.bad(source, number, str(error))
            else:
                rows.append(Row(id=row_id, text=value, line=number, pair=pair))
            position += 1
        return rows

    def csv(self, text: str, source: str, text_field: str, id_field: str) -> list[Row]:
        records = csv.reader(io.StringIO(text, newline=""))
        number = 0  # the row number; with no quoted line breaks, also the line number
        try:
            header: list[str] = []
            for header in records:
                number += 1
                if header:
                    break
            if not header:
                return []
            if text_field not in header:
                raise InputError(
                    f"{source} has no {text_field!r} column; its columns are "
                    f"{_names(header)}: pass --text-field with one of them"
                )
            self._check_pair_column(source, header)
            text_at = header.index(text_field)
            id_at = header.index(id_field) if id_field in header else None
            pair_at = header.index(self.pair_field) if self.pair_field in header else None
            rows: list[Row] = []
            position = 0
            for record in records:
                number += 1
                if not record:  # a blank line
                    continue
                if len(record) > len(header):
                    self.bad(
                        source, number,
                        f"{len(record)} values but the header has {len(header)} columns "
                        "(quote values that contain commas)",
                    )
                elif text_at >= len(record):
                    self.bad(
                        source, number,
                        f"no {text_field!r} value ({len(record)} values, the header has "
                        f"{len(header)} columns)",
                    )
                else:
                    row_id: str | int = position
                    if id_at is not None and id_at < len(record) and record[id_at] != "":
                        row_id = record[id_at]
                    try:
                        # a short row lacks its last columns: for a pair, no second text
                        pair = self.pair(record[text_at], record[pair_at] if pair_at is not None and
                                         pair_at < len(record) else None, pair_at is not None, text_field)
                    except _BadRow as error:
                        self.bad(source, number, str(error))
                    else:
                        rows.append(Row(id=row_id, text=record[text_at], line=number, pair=pair))
                position += 1
        except csv.Error as error:
            raise InputError(f"{source} line {number + 1}: not valid CSV ({error}); fix the file") from None
        return rows

    def parquet(self, path: Path, text_field: str, id_field: str) -> list[Row]:
        pa, pq = _pyarrow()
        source = str(path)
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as error:
            raise InputError(f"cannot read {source} as parquet ({error}); check the file") from None
        names = list(schema.names)
        if text_field not in names:
            raise InputError(
                f"{source} has no {text_field!r} column; its columns are {_names(names)}: "
                "pass --text-field with one of them"
            )
        if not _is_string_type(pa, schema.field(text_field).type):
            raise InputError(
                f"{source} column {text_field!r} holds {schema.field(text_field).type}, not "
                "strings; pass --text-field with a string column"
            )
        self._check_pair_column(source, names)
        columns = [text_field]
        pair_column = self.pair_field if self.pair_field in names else None
        if pair_column is not None:
            if not _is_string_type(pa, schema.field(pair_column).type):
                raise InputError(
                    f"{source} column {pair_column!r} holds {schema.field(pair_column).type}, not strings; "
                    "pass --pair-field with a string column"
                )
            if pair_column != text_field:
                columns.append(pair_column)
        if id_field in names and id_field not in columns:
            id_type = schema.field(id_field).type
            if not (_is_string_type(pa, id_type) or pa.types.is_integer(_value_type(pa, id_type))):
                raise InputError(
                    f"{source} column {id_field!r} holds {id_type}; ids must be strings or "
                    "integers: pass --id-field with another column"
                )
            columns.append(id_field)
        try:
            table = pq.read_table(path, columns=columns)
        except (pa.ArrowException, OSError) as error:
            raise InputError(f"cannot read {source} as parquet ({error}); check the file") from None
        texts = table.column(text_field).to_pylist()
        if id_field == text_field:
            ids = list(texts)
        elif id_field in names:
            ids = table.column(id_field).to_pylist()
        else:
            ids = [None] * len(texts)
        seconds = table.column(pair_column).to_pylist() if pair_column is not None else [None] * len(texts)
        rows: list[Row] = []
        for position, (value, row_id, second) in enumerate(zip(texts, ids, seconds)):
            if value is None:
                self.bad(source, position + 1, f"{text_field!r} is null")
                continue
            try:
                pair = self.pair(value, second, pair_column is not None, text_field)
            except _BadRow as error:
                self.bad(source, position + 1, str(error))
                continue
            rows.append(Row(id=position if row_id is None else row_id, text=value, line=position + 1, pair=pair))
        return rows

    def _check_pair_column(self, source: str, names: list[str]) -> None:
        if self.pair_field is not None and not self.pair_optional and self.pair_field not in names:
            raise InputError(
                f"{source} has no {self.pair_field!r} column for the pairs' second texts; its columns are "
                f"{_names(names)}: pass --pair-field with one of them"
            )


def _check_id(value: Any, id_field: str, position: int) -> str | int:
    if value is None:
        return position
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _BadRow(f"{id_field!r} is {_json_kind(value)}; ids must be strings or integers")
    return value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _names(names: Any) -> str:
    names = list(names)
    return ", ".join(repr(str(n)) for n in names) if names else "none"


def _value_type(pa: Any, arrow_type: Any) -> Any:
    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


def _is_string_type(pa: Any, arrow_type: Any) -> bool:
    arrow_type = _value_type(pa, arrow_type)
    checks = [pa.types.is_string, pa.types.is_large_string]
    if hasattr(pa.types, "is_string_view"):
        checks.append(pa.types.is_string_view)
    return any(check(arrow_type) for check in checks)


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            "reading and writing .parquet files needs pyarrow: pip install pyarrow "
            "(or use .jsonl)"
        ) from None
    return pa, pq


# --------------------------------------------------------------------------- writing


def check_output(output: Path | None) -> None:
    """Raise InputError now if `output` cannot be written, so a command can fail before it
    runs the model: an unknown suffix, a missing directory, or .parquet without pyarrow."""
    if output is None:
        return
    output = Path(output)
    suffix = output.suffix.lower()
    if output.is_dir():
        raise InputError(f"output {output} is a directory; give a file name in it ending in .jsonl, .npy or .parquet")
    if suffix not in OUTPUT_SUFFIXES:
        raise InputError(
            f"cannot write {output}: unknown output suffix {output.suffix or '(none)'!r}; use "
            ".jsonl (JSON Lines), .npy (embeddings only) or .parquet"
        )
    parent = output.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {output}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):  # read-only disk or no permission: fail before the model runs
        raise InputError(
            f"cannot write {output}: directory {parent} is not writable (read-only, or no "
            "permission); choose another output path, or fix the directory's permissions"
        )
    if suffix == ".parquet":
        _pyarrow()


def write_results(
    rows: Sequence[Row],
    results: Sequence[Any],
    output: Path | None,
    *,
    stdout: TextIO | None = None,
) -> None:
    """Write `results[i]` (a 1-D float array, a dict or a list) for `rows[i]`.

    None writes JSON Lines to `stdout` (default sys.stdout); a .jsonl, .npy or .parquet
    path is written atomically.
    """
    if len(rows) != len(results):
        raise ValueError(f"{len(rows)} rows but {len(results)} results; give one result per row")
    kinds = [_kind(result, i) for i, result in enumerate(results)]
    for row, result, kind in zip(rows, results, kinds):
        if kind == "dict" and any(k in result for k in _ROW_FIELDS):
            clash = [k for k in _ROW_FIELDS if k in result]
            raise ValueError(f"result for row {row.id!r} has field(s) {clash}, which clash with the row's own")

    if output is None:
        stream = sys.stdout if stdout is None else stdout
        _write_stream(stream, (_json_line(r, x, k) for r, x, k in zip(rows, results, kinds)))
        return

    output = Path(output)
    check_output(output)
    suffix = output.suffix.lower()
    if suffix == ".jsonl":
        lines = (_json_line(r, x, k) for r, x, k in zip(rows, results, kinds))
        _atomic_write(output, lambda f: f.writelines(line.encode("utf-8") for line in lines))
    elif suffix == ".npy":
        matrix = _embedding_matrix(results, kinds, output)
        _atomic_write(output, lambda f: np.save(f, matrix, allow_pickle=False))
    else:
        table = _arrow_table(rows, results, kinds)
        pq = _pyarrow()[1]
        _atomic_write(output, lambda f: pq.write_table(table, f))


_ROW_FIELDS = ("id", "text", "text_pair")


def _kind(result: Any, index: int) -> str:
    if isinstance(result, np.ndarray):
        if result.ndim == 1 and np.issubdtype(result.dtype, np.floating):
            return "embedding"
        raise TypeError(
            f"result {index} is a {result.ndim}-D {result.dtype} array; an embedding must be a "
            "1-D float array"
        )
    if isinstance(result, dict):
        return "dict"
    if isinstance(result, (list, tuple)):
        return "list"
    raise TypeError(
        f"result {index} is {type(result).__name__}; a result must be a 1-D float array, a dict "
        "or a list"
    )


def _plain(value: Any) -> Any:
    """`value` with numpy scalars and arrays turned into Python ones, recursively."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    return value


def _record(row: Row, result: Any, kind: str) -> dict[str, Any]:
    record: dict[str, Any] = {"id": row.id, "text": row.text}
    if row.pair is not None:
        record["text_pair"] = row.pair
    if kind == "embedding":
        record["embedding"] = result.tolist()
    elif kind == "dict":
        record.update(_plain(result))
    else:
        record["result"] = _plain(result)
    return record


def _json_line(row: Row, result: Any, kind: str) -> str:
    return json.dumps(_record(row, result, kind), ensure_ascii=False) + "\n"


def _write_stream(stream: TextIO, lines: Iterator[str]) -> None:
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:  # a real stdout: write UTF-8 whatever the locale says
        stream.flush()
        for line in lines:
            buffer.write(line.encode("utf-8"))
        buffer.flush()
    else:
        for line in lines:
            stream.write(line)
        stream.flush()


def _atomic_write(output: Path, write: Callable[[Any], None]) -> None:
    """Call `write` with a binary file beside `output`, then move it onto `output` (synced).
    On any failure the temp file is removed and `output` is left as it was."""
    try:
        with atomic_path(output, fsync=True) as temp:
            with open(temp, "wb") as handle:
                write(handle)
    except OSError as error:
        # Name the output, not the temp file beside it (or nothing, as a failed write() does).
        if error.errno is not None and (error.filename is None or Path(error.filename).name.startswith(".")):
            error.filename, error.filename2 = str(output), None
        raise


def _embedding_matrix(results: Sequence[Any], kinds: list[str], output: Path) -> np.ndarray:
    if not results:
        raise InputError(f"cannot write {output}: there are no results; use .jsonl")
    if any(kind != "embedding" for kind in kinds):
        raise InputError(
            f"cannot write {output}: .npy holds embeddings only, and these results are entities "
            "or labels; use .jsonl or .parquet"
        )
    sizes = sorted({len(result) for result in results})
    if len(sizes) > 1:
        raise InputError(
            f"cannot write {output}: the embeddings have different sizes {sizes}, so they do not "
            "stack into one array; use .jsonl or .parquet"
        )
    return np.stack([np.asarray(result, dtype=np.float32) for result in results])


def _arrow_table(rows: Sequence[Row], results: Sequence[Any], kinds: list[str]) -> Any:
    pa = _pyarrow()[0]
    if len(set(kinds)) > 1:
        raise ValueError(f"results mix {sorted(set(kinds))}; a parquet file needs one kind")
    ids = [row.id for row in rows]
    if is_mixed_id(ids):
        ids = [str(i) for i in ids]  # a column has one type: mixed ids become strings
    columns: dict[str, Any] = {
        "id": pa.array(ids, type=pa.string() if ids and isinstance(ids[0], str) else pa.int64()),
        "text": pa.array([row.text for row in rows], type=pa.string()),
    }
    if any(row.pair is not None for row in rows):
        columns["text_pair"] = pa.array([row.pair for row in rows], type=pa.string())
    kind = kinds[0] if kinds else "embedding"
    if kind == "embedding":
        columns["embedding"] = pa.array(
            [np.asarray(r, dtype=np.float32) for r in results], type=pa.list_(pa.float32())
        )
    elif kind == "list":
        columns["result"] = pa.array(
            [json.dumps(_plain(r), ensure_ascii=False) for r in results], type=pa.string()
        )
    else:
        plain = [_plain(r) for r in results]
        names: dict[str, None] = {}
        for record in plain:
            names.update(dict.fromkeys(record))
        for name in names:
            columns[name] = arrow_column(pa, [record.get(name) for record in plain])
    return pa.table(columns)
