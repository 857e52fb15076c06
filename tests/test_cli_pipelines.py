"""`onnxport embed|ner|classify`: every input and output format round-trips, ids and
order are kept, and a bad row is reported with its line number."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import onnxport
from onnxport.tools.cli import main

TEXTS = ["AC sleeper bus from Bangalore to Mumbai tomorrow", "hello world", "東京は日本の首都です。", ""]


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def expected_vectors(minilm_artifact):
    return onnxport.load(minilm_artifact).embed(TEXTS)


def test_embed_text_arguments_to_stdout(minilm_artifact, expected_vectors):
    result = invoke("embed", minilm_artifact, *TEXTS[:3])
    assert result.exit_code == 0, result.output
    records = jsonl(result.stdout)
    assert [r["id"] for r in records] == [0, 1, 2]
    assert [r["text"] for r in records] == TEXTS[:3]
    np.testing.assert_allclose(np.array([r["embedding"] for r in records]), expected_vectors[:3], atol=1e-6)


def test_embed_txt_file_to_npy(tmp_path, minilm_artifact, expected_vectors):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    assert invoke("embed", minilm_artifact, source, "-o", out).exit_code == 0
    np.testing.assert_allclose(np.load(out), expected_vectors[:3], atol=1e-6)


def test_embed_jsonl_with_ids_to_parquet(tmp_path, minilm_artifact, expected_vectors):
    import pyarrow.parquet as pq

    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps({"id": f"doc-{i}", "body": t}, ensure_ascii=False)
                                for i, t in enumerate(TEXTS)) + "\n", encoding="utf-8")
    out = tmp_path / "out.parquet"
    result = invoke("embed", minilm_artifact, source, "--text-field", "body", "-o", out)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pydict()
    assert table["id"] == [f"doc-{i}" for i in range(len(TEXTS))]
    np.testing.assert_allclose(np.array(table["embedding"]), expected_vectors, atol=1e-6)


def test_embed_csv_and_stdin(tmp_path, minilm_artifact, expected_vectors):
    """CSV values are strings, so a CSV id is the string as written ("7", "009": never the
    int 7 or 9); only a row whose id cell is empty gets its 0-based row position, an int."""
    from onnxport.tools.textio import read_rows

    source = tmp_path / "in.csv"
    source.write_text('id,text\n7,"hello world"\n009,"AC sleeper bus from Bangalore to Mumbai tomorrow"\n'
                      ',東京は日本の首都です。\n', encoding="utf-8")
    rows = read_rows([str(source)])
    assert [row.id for row in rows] == ["7", "009", 2]
    assert [type(row.id) for row in rows] == [str, str, int]
    assert [row.line for row in rows] == [2, 3, 4]

    out = tmp_path / "out.jsonl"
    result = invoke("embed", minilm_artifact, source, "-o", out)
    assert result.exit_code == 0, result.output
    records = jsonl(out.read_text(encoding="utf-8"))
    # The written ids keep the reader's types exactly: JSON strings "7" and "009", the number 2.
    assert [r["id"] for r in records] == ["7", "009", 2]
    assert [type(r["id"]) for r in records] == [str, str, int]
    assert [r["text"] for r in records] == [TEXTS[1], TEXTS[0], TEXTS[2]]
    np.testing.assert_allclose(np.array(records[0]["embedding"]), expected_vectors[1], atol=1e-6)
    np.testing.assert_allclose(np.array(records[1]["embedding"]), expected_vectors[0], atol=1e-6)
    np.testing.assert_allclose(np.array(records[2]["embedding"]), expected_vectors[2], atol=1e-6)
    piped = invoke("embed", minilm_artifact, input="hello world\n")
    np.testing.assert_allclose(np.array(jsonl(piped.stdout)[0]["embedding"]), expected_vectors[1], atol=1e-6)


def test_csv_ids_in_parquet_are_one_string_column(tmp_path, minilm_artifact):
    """A parquet column has one type: string CSV ids mixed with a position become strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = tmp_path / "in.csv"
    source.write_text("id,text\n7,hello world\n,hi\n", encoding="utf-8")
    out = tmp_path / "out.parquet"
    result = invoke("embed", minilm_artifact, source, "-o", out)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.schema.field("id").type == pa.string()
    assert table.column("id").to_pylist() == ["7", "1"]


def test_bad_row_is_reported_with_its_line_and_skippable(tmp_path, minilm_artifact):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "fine"}\n{"txt": "no text field"}\n{"text": "also fine"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    failed = invoke("embed", minilm_artifact, source, "-o", out)
    assert failed.exit_code == 2 and "line 2" in failed.output and "--skip-bad" in failed.output
    assert not out.exists()
    skipped = invoke("embed", minilm_artifact, source, "-o", out, "--skip-bad")
    assert skipped.exit_code == 0 and "line 2" in skipped.output
    assert [r["text"] for r in jsonl(out.read_text())] == ["fine", "also fine"]


def test_unknown_output_suffix_fails_before_running(tmp_path, minilm_artifact):
    result = invoke("embed", minilm_artifact, "x", "-o", tmp_path / "out.xlsx")
    assert result.exit_code == 2 and ".jsonl" in result.output


def test_no_truncate_refuses_a_text_over_the_models_length(tmp_path, minilm_artifact):
    long_text = " ".join(["word"] * 400)  # 402 tokens; all-MiniLM-L6-v2 takes 256
    refused = invoke("embed", minilm_artifact, "short", long_text, "--no-truncate", "-o", tmp_path / "a.jsonl")
    cut = invoke("embed", minilm_artifact, "short", long_text, "-o", tmp_path / "b.jsonl")

    assert refused.exit_code == 2 and "longer than the model's 256 tokens" in refused.output
    assert not (tmp_path / "a.jsonl").exists()
    assert cut.exit_code == 0, cut.output
    vectors = [json.loads(line)["embedding"] for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert np.allclose(vectors, onnxport.load(minilm_artifact).embed(["short", long_text]), atol=1e-5)


def test_ner_and_classify_round_trip(tmp_path, tiny_ner_artifact):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "ner.jsonl"
    result = invoke("ner", tiny_ner_artifact, source, "-o", out, "--aggregation", "first")
    assert result.exit_code == 0, result.output
    expected = onnxport.load(tiny_ner_artifact).extract(TEXTS[:3], aggregation="first")
    records = jsonl(out.read_text(encoding="utf-8"))
    assert [r["entities"] for r in records] == json.loads(json.dumps(expected))
    wrong = invoke("classify", tiny_ner_artifact, "x")
    assert wrong.exit_code == 2 and "classify" in wrong.output


def test_ner_stride_option_is_the_pipelines(tmp_path, tiny_ner_artifact):
    long_text = " ".join(["Bangalore to Mumbai on Friday by the night bus"] * 20)  # several 64-token windows
    ner = onnxport.load(tiny_ner_artifact)
    for flag, stride in (("0", 0), ("9", 9), ("none", None), ("auto", "auto")):
        out = tmp_path / f"ner-{flag}.jsonl"
        result = invoke("ner", tiny_ner_artifact, long_text, "--stride", flag, "-o", out)
        assert result.exit_code == 0, result.output
        assert jsonl(out.read_text(encoding="utf-8"))[0]["entities"] == \
            json.loads(json.dumps(ner.extract(long_text, stride=stride)))
    assert ner.extract(long_text, stride=None) != ner.extract(long_text)  # the option changes something
    for bad in ("-1", "x", "10000"):
        result = CliRunner().invoke(main, ["ner", str(tiny_ner_artifact), long_text, "--stride", bad])
        assert result.exit_code == 2 and "stride" in result.output and "Traceback" not in result.output
    cut = CliRunner().invoke(main, ["ner", str(tiny_ner_artifact), long_text, "--stride", "none", "--no-truncate"])
    assert cut.exit_code == 2 and "longer than" in cut.output


def test_classify_to_parquet(tmp_path, tiny_bert_folder, wordpiece_tokenizer):
    import pyarrow.parquet as pq
    import torch
    from transformers import BertForSequenceClassification

    from conftest import save_tiny_model, tiny_bert_config

    torch.manual_seed(2)
    config = tiny_bert_config(num_labels=2, id2label={0: "no", 1: "yes"}, label2id={"no": 0, "yes": 1})
    folder = save_tiny_model(tmp_path / "cls", BertForSequenceClassification(config).eval(), wordpiece_tokenizer)
    artifact = tmp_path / "artifact"
    onnxport.export(folder, out=artifact)
    out = tmp_path / "labels.parquet"
    result = invoke("classify", artifact, *TEXTS[:3], "--top-k", "2", "-o", out)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out).to_pydict()
    expected = onnxport.load(artifact).classify(TEXTS[:3], top_k=2)
    stored = [json.loads(v) if isinstance(v, str) else v for v in table["labels"]]
    assert [[x["label"] for x in row] for row in stored] == [[x["label"] for x in row] for row in expected]
