"""onnxport.tools.textio: reading the texts of embed/ner/classify and writing their results.

Every expectation here is written out by hand from the input in the test; output files are
read back with json, np.load and pyarrow.parquet, never with textio itself.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onnxport.errors import InputError
from onnxport.tools.textio import Row, check_output, read_rows, write_results

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def rows_of(*items) -> list[Row]:
    return [Row(id=i, text=t, line=n) for i, t, n in items]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ----------------------------------------------------------------------------- reading: txt


def test_txt_skips_blank_lines_but_keeps_true_line_numbers_and_unicode(tmp_path):
    path = write(tmp_path / "in.txt", "first\n\n   \nnaïve café 日本 🙂\r\n  spaced  \nlast")
    assert read_rows([str(path)]) == rows_of(
        (0, "first", 1),
        (1, "naïve café 日本 🙂", 4),  # the \r of a CRLF line is not part of the text
        (2, "  spaced  ", 5),  # inner text is kept as written
        (3, "last", 6),  # no final newline
    )


def test_txt_with_utf8_bom_and_uppercase_suffix(tmp_path):
    path = tmp_path / "IN.TXT"
    path.write_bytes("\ufeffalpha\nbeta\n".encode("utf-8"))
    assert read_rows([str(path)]) == rows_of((0, "alpha", 1), (1, "beta", 2))


def test_txt_does_not_split_on_unicode_line_separators(tmp_path):
    path = write(tmp_path / "in.txt", "a\u2028b\x0cc\nd\n")
    assert [r.text for r in read_rows([str(path)])] == ["a\u2028b\x0cc", "d"]


def test_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"ok\nalso ok\ncaf\xe9\n")
    with pytest.raises(InputError, match=r"in\.txt line 3 is not valid UTF-8.*save the input as UTF-8"):
        read_rows([str(path)])


def test_empty_file_is_an_error(tmp_path):
    path = write(tmp_path / "in.txt", "\n  \n")
    with pytest.raises(InputError, match=r"no texts in .*in\.txt"):
        read_rows([str(path)])


# --------------------------------------------------------------------------- reading: jsonl


def test_jsonl_with_ids_keeps_their_type(tmp_path):
    path = write(
        tmp_path / "in.jsonl",
        '{"id": 7, "text": "seven"}\n'
        "\n"
        '{"id": "x-1", "text": "Москва — столица", "extra": [1, 2]}\n'
        '{"text": "no id here"}\n'
        '{"id": null, "text": "null id"}\n',
    )
    rows = read_rows([str(path)])
    assert rows == rows_of(
        (7, "seven", 1),
        ("x-1", "Москва — столица", 3),
        (2, "no id here", 4),  # no id: its 0-based position among the records
        (3, "null id", 5),
    )
    assert type(rows[0].id) is int and type(rows[1].id) is str


def test_jsonl_without_ids_and_custom_fields(tmp_path):
    path = write(
        tmp_path / "in.jsonl",
        '{"body": "first", "key": 10, "text": "ignored"}\n{"body": "", "key": "b"}\n{"body": "third"}\n',
    )
    assert read_rows([str(path)], text_field="body", id_field="key") == rows_of(
        (10, "first", 1), ("b", "", 2), (2, "third", 3)
    )
    plain = write(tmp_path / "plain.jsonl", '{"text": "a"}\n{"text": "b"}\n')
    assert read_rows([str(plain)]) == rows_of((0, "a", 1), (1, "b", 2))


def test_jsonl_keeps_u2028_inside_a_json_string(tmp_path):
    path = write(tmp_path / "in.jsonl", '{"text": "a\u2028b"}\n{"text": "c"}\n')
    assert read_rows([str(path)]) == rows_of((0, "a\u2028b", 1), (1, "c", 2))


JSONL_WITH_BAD_ROWS = (
    '{"id": 1, "text": "good one"}\n'  # 1
    "{not json}\n"  # 2
    '["an", "array"]\n'  # 3
    "\n"  # 4 blank: not a row
    '{"title": "no text"}\n'  # 5
    '{"text": 42}\n'  # 6
    '{"id": 1.5, "text": "float id"}\n'  # 7
    '{"text": "good two"}\n'  # 8
)


@pytest.mark.parametrize(
    "content, line, reason",
    [
        ("{not json}\n", 1, "not valid JSON"),
        ('{"text": "ok"}\n\n["x"]\n', 3, "not a JSON object but an array"),
        ('{"text": "ok"}\n{"title": "t", "id": 2}\n', 2, "no 'text' field (fields: 'title', 'id')"),
        ('{"text": null}\n', 1, "'text' is null, not a string"),
        ('{"text": ["a"]}\n', 1, "'text' is an array, not a string"),
        ('{"text": "a", "id": true}\n', 1, "'id' is a boolean; ids must be strings or integers"),
    ],
)
def test_jsonl_bad_row_names_file_line_and_skip_bad(tmp_path, content, line, reason):
    path = write(tmp_path / "in.jsonl", content)
    with pytest.raises(InputError) as caught:
        read_rows([str(path)])
    message = str(caught.value)
    assert message.startswith(f"{path} line {line}: {reason}")
    assert "--skip-bad" in message


def test_jsonl_skip_bad_skips_and_warns_with_line_numbers(tmp_path):
    path = write(tmp_path / "in.jsonl", JSONL_WITH_BAD_ROWS)
    warnings: list[str] = []
    rows = read_rows([str(path)], skip_bad=True, warn=warnings.append)
    # ids without an id field are positions among all records, skipped ones included,
    # so they are the same whether or not bad rows are skipped: "good two" is record 6.
    assert rows == rows_of((1, "good one", 1), (6, "good two", 8))
    assert [w.split(":")[0] for w in warnings] == [f"{path} line {n}" for n in (2, 3, 5, 6, 7)]
    assert all(w.endswith(", skipped") for w in warnings)
    assert warnings[2] == f"{path} line 5: no 'text' field (fields: 'title'), skipped"


def test_skip_bad_without_warn_prints_to_stderr(tmp_path, capsys):
    path = write(tmp_path / "in.jsonl", '{"text": "a"}\n[]\n')
    assert read_rows([str(path)], skip_bad=True) == rows_of((0, "a", 1))
    assert f"{path} line 2: not a JSON object but an array, skipped" in capsys.readouterr().err


def test_all_rows_bad_and_skipped_is_an_error(tmp_path):
    path = write(tmp_path / "in.jsonl", "[]\n{}\n")
    with pytest.raises(InputError, match=r"all 2 rows were bad and skipped"):
        read_rows([str(path)], skip_bad=True, warn=lambda message: None)


# ----------------------------------------------------------------------------- reading: csv


def test_csv_with_header_quoted_commas_and_newlines(tmp_path):
    path = write(
        tmp_path / "in.csv",
        'id,text,other\r\n'
        'a1,"Hello, world",x\r\n'
        'a2,"two\nlines, and ""quotes""",y\r\n'
        '\r\n'
        'a3,plain,z\r\n'
        ',no id,w\r\n',
    )
    assert read_rows([str(path)]) == rows_of(
        ("a1", "Hello, world", 2),
        ("a2", 'two\nlines, and "quotes"', 3),
        # row numbers count records, the header being 1; the blank line is record 4
        ("a3", "plain", 5),
        (3, "no id", 6),  # an empty id cell: the row's 0-based position
    )


def test_csv_without_id_column_uses_positions_and_custom_text_field(tmp_path):
    path = write(tmp_path / "in.csv", "label,sentence\npos,Ça va très bien\nneg,\"no, not at all\"\n")
    assert read_rows([str(path)], text_field="sentence") == rows_of(
        (0, "Ça va très bien", 2), (1, "no, not at all", 3)
    )


def test_csv_without_the_text_column_names_the_columns(tmp_path):
    path = write(tmp_path / "in.csv", "id,body\n1,hello\n")
    with pytest.raises(InputError) as caught:
        read_rows([str(path)])
    assert str(caught.value) == (
        f"{path} has no 'text' column; its columns are 'id', 'body': pass --text-field "
        "with one of them"
    )


def test_csv_bad_rows_and_skip_bad(tmp_path):
    path = write(tmp_path / "in.csv", "id,text\nr1,good\nr2\nr3,a,b\nr4,fine\n")
    with pytest.raises(InputError) as caught:
        read_rows([str(path)])
    assert str(caught.value).startswith(f"{path} line 3: no 'text' value")
    assert "--skip-bad" in str(caught.value)

    warnings: list[str] = []
    rows = read_rows([str(path)], skip_bad=True, warn=warnings.append)
    assert rows == rows_of(("r1", "good", 2), ("r4", "fine", 5))
    assert warnings == [
        f"{path} line 3: no 'text' value (1 values, the header has 2 columns), skipped",
        f"{path} line 4: 3 values but the header has 2 columns (quote values that contain "
        "commas), skipped",
    ]


def test_csv_with_only_a_header_is_an_error(tmp_path):
    path = write(tmp_path / "in.csv", "id,text\n")
    with pytest.raises(InputError, match="no texts in"):
        read_rows([str(path)])


# ------------------------------------------------------------------------- reading: parquet


def test_parquet_with_int_ids(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [10, 20, None], "text": ["ten", "vingt 二十", "no id"], "n": [1, 2, 3]}), path)
    rows = read_rows([str(path)])
    assert rows == rows_of((10, "ten", 1), (20, "vingt 二十", 2), (2, "no id", 3))
    assert type(rows[0].id) is int


def test_parquet_without_ids_string_ids_and_custom_fields(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": ["a", "b"]}), plain)
    assert read_rows([str(plain)]) == rows_of((0, "a", 1), (1, "b", 2))

    custom = tmp_path / "custom.parquet"
    pq.write_table(pa.table({"doc": ["k1", "k2"], "body": pa.array(["x", "y"], type=pa.large_string())}), custom)
    assert read_rows([str(custom)], text_field="body", id_field="doc") == rows_of(("k1", "x", 1), ("k2", "y", 2))


def test_parquet_null_text_is_a_bad_row(tmp_path):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"]}), path)
    with pytest.raises(InputError) as caught:
        read_rows([str(path)])
    assert str(caught.value).startswith(f"{path} line 2: 'text' is null;")
    assert "--skip-bad" in str(caught.value)
    warnings: list[str] = []
    assert read_rows([str(path)], skip_bad=True, warn=warnings.append) == rows_of((0, "a", 1), (2, "c", 3))
    assert warnings == [f"{path} line 2: 'text' is null, skipped"]


def test_parquet_column_problems(tmp_path):
    missing = tmp_path / "missing.parquet"
    pq.write_table(pa.table({"id": [1], "body": ["x"]}), missing)
    with pytest.raises(InputError, match=r"has no 'text' column; its columns are 'id', 'body'"):
        read_rows([str(missing)])

    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), numbers)
    with pytest.raises(InputError, match=r"column 'text' holds int64, not strings"):
        read_rows([str(numbers)])

    float_ids = tmp_path / "float_ids.parquet"
    pq.write_table(pa.table({"id": [1.5], "text": ["x"]}), float_ids)
    with pytest.raises(InputError, match=r"column 'id' holds double; ids must be strings or integers"):
        read_rows([str(float_ids)])


def test_not_a_parquet_file(tmp_path):
    path = write(tmp_path / "in.parquet", "text\nhello\n")
    with pytest.raises(InputError, match=r"cannot read .*in\.parquet as parquet"):
        read_rows([str(path)])


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a"]}), path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(InputError, match="pip install pyarrow"):
        read_rows([str(path)])
    with pytest.raises(InputError, match="pip install pyarrow"):
        write_results(rows_of((0, "a", 1)), [np.ones(2)], tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


# -------------------------------------------------------------- reading: arguments and stdin


def test_text_arguments_are_one_text_each(in_tmp):
    rows = read_rows(["hello", "wörld 🙂", "", "see notes.txt", "3.14"])
    assert rows == rows_of(
        (0, "hello", 1), (1, "wörld 🙂", 2), (2, "", 3), (3, "see notes.txt", 4), (4, "3.14", 5)
    )


def test_a_single_text_argument(in_tmp):
    assert read_rows(["What is ONNX?"]) == rows_of((0, "What is ONNX?", 1))


def test_missing_input_file_is_named(in_tmp):
    with pytest.raises(InputError) as caught:
        read_rows(["nope.jsonl"])
    assert str(caught.value).startswith("input file nope.jsonl does not exist;")
    with pytest.raises(InputError, match=r"input file data/missing\.CSV does not exist"):
        read_rows(["hello", "data/missing.CSV"])


def test_several_files_or_an_unsupported_file_are_errors(in_tmp):
    write(in_tmp / "a.txt", "a\n")
    write(in_tmp / "b.txt", "b\n")
    write(in_tmp / "c.json", '{"text": "c"}')
    with pytest.raises(InputError, match=r"a\.txt, b\.txt: read one input file at a time"):
        read_rows(["a.txt", "b.txt"])
    with pytest.raises(InputError, match=r"unsupported suffix '\.json'; onnxport reads \.txt, \.jsonl, \.csv, \.parquet"):
        read_rows(["c.json"])


def test_stdin_one_text_per_line():
    stdin = io.StringIO("first line\n\nsecond, ünïcode\n")
    expected = rows_of((0, "first line", 1), (1, "second, ünïcode", 3))
    assert read_rows([], stdin=stdin) == expected
    assert read_rows(["-"], stdin=io.StringIO("first line\n\nsecond, ünïcode\n")) == expected


def test_stdin_bytes_are_read_as_utf8():
    raw = io.TextIOWrapper(io.BytesIO("日本\nnaïve\n".encode("utf-8")), encoding="latin-1")
    assert read_rows((), stdin=raw) == rows_of((0, "日本", 1), (1, "naïve", 2))


def test_stdin_tty_and_empty_stdin_are_errors():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with pytest.raises(InputError) as caught:
        read_rows([], stdin=Terminal("typed"))
    assert str(caught.value) == "no input: pass texts, a file, or pipe text on stdin"
    with pytest.raises(InputError, match="no texts on stdin"):
        read_rows([], stdin=io.StringIO("\n\n"))


def test_row_is_frozen():
    row = Row(id=1, text="a", line=1)
    with pytest.raises(AttributeError):
        row.text = "b"  # type: ignore[misc]


# ----------------------------------------------------------------------------------- writing

ROWS = rows_of((7, "naïve café", 1), ("x-1", "日本", 3))
EMBEDDINGS = [np.array([0.5, -1.25, 3.0], dtype=np.float32), np.array([0.0, 2.5, -0.125], dtype=np.float64)]
DICTS = [
    {"label": "pos", "score": np.float32(0.75), "entities": [{"word": "café", "start": 6}]},
    {"label": "neg", "score": 0.5, "entities": []},
]


def test_jsonl_on_stdout_embeddings_dicts_and_lists():
    out = io.StringIO()
    write_results(ROWS, EMBEDDINGS, None, stdout=out)
    lines = out.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": 7, "text": "naïve café", "embedding": [0.5, -1.25, 3.0]},
        {"id": "x-1", "text": "日本", "embedding": [0.0, 2.5, -0.125]},
    ]
    assert "日本" in lines[1]  # ensure_ascii=False: readable unicode

    out = io.StringIO()
    write_results(ROWS, [DICTS[0], [{"word": "日本", "score": np.float64(0.25)}]], None, stdout=out)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"id": 7, "text": "naïve café", "label": "pos", "score": 0.75, "entities": [{"word": "café", "start": 6}]},
        {"id": "x-1", "text": "日本", "result": [{"word": "日本", "score": 0.25}]},
    ]


def test_default_stdout_is_sys_stdout(capsys):
    write_results(rows_of((0, "a", 1)), [{"label": "ü"}], None)
    assert capsys.readouterr().out == '{"id": 0, "text": "a", "label": "ü"}\n'


def test_jsonl_file_round_trip(tmp_path):
    out = tmp_path / "out.jsonl"
    write_results(ROWS, DICTS, out)
    raw = out.read_bytes()
    assert "café".encode("utf-8") in raw and b"\r\n" not in raw
    records = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    assert records == [
        {"id": 7, "text": "naïve café", "label": "pos", "score": 0.75, "entities": [{"word": "café", "start": 6}]},
        {"id": "x-1", "text": "日本", "label": "neg", "score": 0.5, "entities": []},
    ]
    assert type(records[0]["id"]) is int


def test_npy_round_trip(tmp_path):
    out = tmp_path / "out.npy"
    write_results(ROWS, EMBEDDINGS, out)
    matrix = np.load(out, allow_pickle=False)
    assert matrix.dtype == np.float32 and matrix.shape == (2, 3)
    np.testing.assert_array_equal(matrix, [[0.5, -1.25, 3.0], [0.0, 2.5, -0.125]])
    assert sorted(os.listdir(tmp_path)) == ["out.npy"]  # no temp file left behind


def test_parquet_round_trip_embeddings(tmp_path):
    out = tmp_path / "out.parquet"
    write_results(ROWS[:1], EMBEDDINGS[:1], out)
    table = pq.read_table(out)
    assert table.column_names == ["id", "text", "embedding"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32())
    assert table.to_pylist() == [{"id": 7, "text": "naïve café", "embedding": [0.5, -1.25, 3.0]}]


def test_parquet_round_trip_dicts_with_nested_values_as_json(tmp_path):
    out = tmp_path / "out.parquet"
    write_results(ROWS, DICTS, out)
    table = pq.read_table(out)
    assert table.column_names == ["id", "text", "label", "score", "entities"]
    assert table.schema.field("id").type == pa.string()  # mixed int/str ids become strings
    assert table.schema.field("entities").type == pa.string()
    assert table.to_pylist() == [
        {"id": "7", "text": "naïve café", "label": "pos", "score": 0.75, "entities": '[{"word": "café", "start": 6}]'},
        {"id": "x-1", "text": "日本", "label": "neg", "score": 0.5, "entities": "[]"},
    ]


def test_parquet_list_results_are_json_strings(tmp_path):
    out = tmp_path / "out.parquet"
    write_results(rows_of((0, "a", 1)), [[{"entity": "LOC", "word": "Paris"}]], out)
    assert pq.read_table(out).to_pylist() == [
        {"id": 0, "text": "a", "result": '[{"entity": "LOC", "word": "Paris"}]'}
    ]


def test_unknown_output_suffix(tmp_path):
    for name in ("out.csv", "out"):
        with pytest.raises(InputError) as caught:
            write_results(ROWS, EMBEDDINGS, tmp_path / name)
        message = str(caught.value)
        assert ".jsonl" in message and ".npy" in message and ".parquet" in message
    assert os.listdir(tmp_path) == []


def test_output_in_missing_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist; create it first"):
        check_output(tmp_path / "no" / "out.jsonl")


def test_npy_needs_embeddings_of_one_size(tmp_path):
    out = tmp_path / "out.npy"
    with pytest.raises(InputError, match=r"\.npy holds embeddings only.*use \.jsonl or \.parquet"):
        write_results(ROWS, DICTS, out)
    with pytest.raises(InputError, match=r"different sizes \[2, 3\].*use \.jsonl or \.parquet"):
        write_results(ROWS, [np.ones(3, np.float32), np.ones(2, np.float32)], out)
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_no_output_and_keeps_an_old_one(tmp_path):
    out = tmp_path / "out.jsonl"
    bad = [{"label": "ok"}, {"label": object()}]  # the second row cannot be serialized
    with pytest.raises(TypeError):
        write_results(ROWS, bad, out)
    assert os.listdir(tmp_path) == []

    out.write_text("old\n", encoding="utf-8")
    with pytest.raises(TypeError):
        write_results(ROWS, bad, out)
    assert out.read_text(encoding="utf-8") == "old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_failed_replace_leaves_no_output_and_no_temp_file(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    for name in ("out.npy", "out.parquet", "out.jsonl"):
        with pytest.raises(OSError):
            write_results(ROWS, EMBEDDINGS, tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_new_output_gets_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_results(ROWS, EMBEDDINGS, tmp_path / "out.npy")
    finally:
        os.umask(old)
    assert (tmp_path / "out.npy").stat().st_mode & 0o777 == 0o644


def test_results_must_match_rows_and_be_known_kinds(tmp_path):
    with pytest.raises(ValueError, match="2 rows but 1 results"):
        write_results(ROWS, EMBEDDINGS[:1], None, stdout=io.StringIO())
    with pytest.raises(TypeError, match="1-D float array"):
        write_results(ROWS[:1], [np.ones((2, 3))], None, stdout=io.StringIO())
    with pytest.raises(ValueError, match="clash"):
        write_results(ROWS[:1], [{"text": "x"}], None, stdout=io.StringIO())


def test_importing_textio_imports_neither_torch_transformers_nor_pyarrow():
    code = (
        "import sys, onnxport.tools.textio\n"
        "print(sorted(m for m in ('torch', 'transformers', 'pyarrow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_json_embeddings_keep_their_own_precision():
    out = io.StringIO()
    rows = rows_of((0, "a", 1), (1, "b", 2))
    write_results(rows, [np.array([0.1], dtype=np.float64), np.array([0.1], dtype=np.float32)], None, stdout=out)
    first, second = (json.loads(line)["embedding"][0] for line in out.getvalue().splitlines())
    assert first == 0.1
    assert second == float(np.float32(0.1)) == 0.10000000149011612  # exact float32 value
