"""onnxport.scale on a local Ray (`ray.init(num_cpus=2)`): every row once, the same results
as `onnxport.load(...)` in this process (all-MiniLM-L6-v2 embeddings; NER and labels of
tiny random models), bad rows kept and counted, a killed actor replaced without losing or
repeating a row, and the CLI's `--engine ray`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import onnxport
from onnxport import scale
from onnxport.core.sample_texts import builtin_texts
from onnxport.errors import ArtifactError, InputError, MissingDependency
from onnxport.tools.cli import main

ray = pytest.importorskip("ray", reason="onnxport[ray] is part of the test install (onnxport[all])")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module, with the 2 CPUs the issue names; the test module's own
    worker subclass is pickled by value, since Ray's workers cannot import test files."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def corpus(count: int) -> list[str]:
    """`count` texts of mixed length: most cut to 40 words (so the test stays quick), plus
    the built-in ones past 512 tokens, which both sides must truncate alike."""
    texts = builtin_texts(count)
    return [text if len(text.split()) > 300 else " ".join(text.split()[:40]) for text in texts]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


# ------------------------------------------------------------------ results equal load()


def test_2000_texts_from_parquet_every_id_once_vectors_equal_load(tmp_path, minilm_artifact):
    texts = corpus(2000)
    ids = [f"doc-{i:05d}" for i in range(len(texts))]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))  # ids not in text order: nothing may rely on row position
    table = pa.table({"id": [ids[i] for i in order], "text": [texts[i] for i in order],
                      "source": [f"s{i % 7}" for i in order]})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=500)

    summary = scale.run(str(tmp_path / "in.parquet"), tmp_path / "out.parquet", minilm_artifact)

    assert (summary.rows, summary.failed) == (2000, 0)
    out = pq.read_table(tmp_path / "out.parquet")
    assert set(out.column_names) == {"id", "text", "source", "embedding", "error"}
    got_ids = out.column("id").to_pylist()
    assert len(got_ids) == len(set(got_ids)) == 2000 and set(got_ids) == set(ids)
    assert out.column("error").null_count == 2000
    position = {doc: i for i, doc in enumerate(ids)}
    rows = [position[doc] for doc in got_ids]
    assert out.column("text").to_pylist() == [texts[i] for i in rows]
    assert out.column("source").to_pylist() == [f"s{i % 7}" for i in rows]
    vectors = np.asarray(out.column("embedding").to_pylist(), dtype=np.float32)
    expected = onnxport.load(minilm_artifact).embed(texts)[rows]
    assert vectors.shape == expected.shape == (2000, 384)
    assert cosines(vectors, expected).min() >= 0.99999


def test_map_dataset_ner_equals_extract(tiny_ner_artifact):
    texts = corpus(300)
    dataset = ray.data.from_arrow(pa.table({"key": list(range(len(texts))), "body": texts}))
    result = scale.map_dataset(dataset, tiny_ner_artifact, task_fn="ner", text_column="body", aggregation="first",
                               rows_per_batch=64, actors=1).take_all()

    ner = onnxport.load(tiny_ner_artifact)
    expected = ner.extract(texts, aggregation="first")
    assert sorted(row["key"] for row in result) == list(range(len(texts)))
    assert sum(len(entities) for entities in expected) > 50  # the random model does find entities
    # the long texts run in several 64-token windows, and are labelled past the first ones
    past_first_window = [
        index for index, windows in enumerate(ner.windows(texts)) if len(windows) >= 3
        and any(e["start"] >= windows[1].offsets[-2][1] for e in expected[index])]
    assert past_first_window
    for row in result:
        want = expected[row["key"]]
        assert row["error"] is None
        assert [(e["label"], e["text"], e["start"], e["end"]) for e in row["entities"]] == \
               [(e["label"], e["text"], e["start"], e["end"]) for e in want]
        assert np.allclose([e["score"] for e in row["entities"]], [e["score"] for e in want], atol=1e-5)


class ReportsItsBudget(scale.ArtifactWorker):
    """Fails its actor unless the pipeline it opened batches with the budget the driver was given."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.pipeline.max_batch_tokens != 48:
            raise RuntimeError(f"the actor's pipeline batches with {self.pipeline.max_batch_tokens} tokens, not 48")


def test_map_dataset_passes_the_token_budget_to_every_actor(tiny_ner_artifact):
    texts = corpus(30)
    dataset = ray.data.from_arrow(pa.table({"key": list(range(len(texts))), "text": texts}))
    result = scale.map_dataset(dataset, tiny_ner_artifact, task_fn="ner", max_batch_tokens=48, actors=1,
                               worker=ReportsItsBudget).take_all()
    expected = onnxport.load(tiny_ner_artifact).extract(texts)
    for row in result:
        assert [(e["label"], e["start"], e["end"]) for e in row["entities"]] == \
            [(e["label"], e["start"], e["end"]) for e in expected[row["key"]]]
    with pytest.raises(InputError, match="max_batch_tokens"):
        scale.map_dataset(dataset, tiny_ner_artifact, task_fn="ner", max_batch_tokens=0)


@pytest.fixture(scope="module")
def prompted_artifact(tmp_path_factory, tiny_bert_folder):
    """(sentence-transformers folder with a query prompt, normalized mean pooling; its artifact)."""
    from sentence_transformers import SentenceTransformer, models

    root = tmp_path_factory.mktemp("prompted")
    transformer = models.Transformer(str(tiny_bert_folder))
    modules = [transformer, models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean"),
               models.Normalize()]
    SentenceTransformer(modules=modules, prompts={"query": "query: "}, device="cpu").save(str(root / "st"))
    return root / "st", onnxport.export(root / "st", out=root / "artifact").path


def test_map_dataset_embeds_with_a_prompt_and_fewer_dimensions(prompted_artifact, tiny_cls_artifact, tmp_path):
    from sentence_transformers import SentenceTransformer

    folder, artifact = prompted_artifact
    texts = corpus(40)
    dataset = ray.data.from_arrow(pa.table({"key": list(range(len(texts))), "text": texts}))
    rows = scale.map_dataset(dataset, artifact, prompt_name="query", dimensions=16, actors=1).take_all()
    reference = SentenceTransformer(str(folder), device="cpu", truncate_dim=16)
    expected = reference.encode(texts, prompt_name="query", normalize_embeddings=True)
    got = np.array([row["embedding"] for row in sorted(rows, key=lambda row: row["key"])], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)

    # the CLI's --engine ray takes the same flags; a wrong one is exit 2 before Ray runs
    pq.write_table(pa.table({"text": texts[:5]}), tmp_path / "in.parquet")
    result = invoke("embed", artifact, tmp_path / "in.parquet", "--engine", "ray", "-o", tmp_path / "out.parquet",
                    "--prompt-name", "query", "--dimensions", "16")
    assert result.exit_code == 0, result.output
    vectors = np.asarray(pq.read_table(tmp_path / "out.parquet").column("embedding").to_pylist(), np.float32)
    np.testing.assert_allclose(vectors, expected[:5], atol=1e-5)
    for extra, message in ((["--prompt-name", "passage"], "no prompt named 'passage'"),
                           (["--dimensions", "4096"], "at most this model's")):
        result = invoke("embed", artifact, tmp_path / "in.parquet", "--engine", "ray", "-o", tmp_path / "bad.parquet",
                        *extra)
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "bad.parquet").exists()
    with pytest.raises(InputError, match="for task_fn='embed'"):
        scale.map_dataset(dataset, tiny_cls_artifact, task_fn="classify", prompt_name="query")


def test_map_dataset_ner_stride_and_classify_pairs(tiny_ner_artifact, tiny_cls_artifact):
    texts = corpus(40)
    dataset = ray.data.from_arrow(pa.table({"key": list(range(len(texts))), "text": texts}))
    ner = onnxport.load(tiny_ner_artifact)
    for stride in (0, None):
        result = scale.map_dataset(dataset, tiny_ner_artifact, task_fn="ner", stride=stride, actors=1).take_all()
        expected = ner.extract(texts, stride=stride)
        for row in result:
            assert [(e["label"], e["start"], e["end"]) for e in row["entities"]] == \
                [(e["label"], e["start"], e["end"]) for e in expected[row["key"]]]
    with pytest.raises(InputError, match="stride"):
        scale.map_dataset(dataset, tiny_ner_artifact, task_fn="ner", stride=10_000)

    # Rows with a text_pair value are sentence pairs, the others single texts, in one batch.
    seconds = [None if i % 3 else f"second text {i} " * (i % 7) + "end" for i in range(len(texts))]
    with_pairs = ray.data.from_arrow(pa.table({"key": list(range(len(texts))), "text": texts, "text_pair": seconds}))
    rows = scale.map_dataset(with_pairs, tiny_cls_artifact, task_fn="classify", top_k=3, actors=1).take_all()
    classifier = onnxport.load(tiny_cls_artifact)
    for row in rows:
        item = texts[row["key"]] if seconds[row["key"]] is None else (texts[row["key"]], seconds[row["key"]])
        assert row["error"] is None and row["text_pair"] == seconds[row["key"]]
        want = classifier.classify(item, top_k=3)
        assert [r["label"] for r in row["labels"]] == [r["label"] for r in want]
        np.testing.assert_allclose([r["score"] for r in row["labels"]], [r["score"] for r in want], atol=1e-6)
    # A named pair column: every row is a pair; one without its second text fails and says why.
    rows = scale.map_dataset(with_pairs, tiny_cls_artifact, task_fn="classify", pair_column="text_pair",
                             actors=1).take_all()
    for row in rows:
        assert (row["error"] is None) == (seconds[row["key"]] is not None)
        if row["error"]:
            assert "second text of the pair" in row["error"] and not row["labels"]
    with pytest.raises(InputError, match="no 'hypothesis' column"):
        scale.map_dataset(with_pairs, tiny_cls_artifact, task_fn="classify", pair_column="hypothesis")


def test_cli_classifies_pairs_on_ray_as_locally(tmp_path, tiny_cls_artifact):
    texts = corpus(30)
    lines = [{"id": i, "premise": text, "hypothesis": f"hypothesis number {i}"} for i, text in enumerate(texts)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = [tmp_path / "in.jsonl", "--text-field", "premise", "--pair-field", "hypothesis", "--top-k", 2]
    result = invoke("classify", tiny_cls_artifact, *args, "-o", tmp_path / "ray.parquet", "--engine", "ray",
                    "--actors", 1)
    assert result.exit_code == 0, result.output
    local = invoke("classify", tiny_cls_artifact, *args, "-o", tmp_path / "local.jsonl")
    assert local.exit_code == 0, local.output
    expected = {r["id"]: r["labels"] for r in map(json.loads, (tmp_path / "local.jsonl").read_text().splitlines())}
    table = pq.read_table(tmp_path / "ray.parquet").to_pylist()
    assert sorted(row["id"] for row in table) == list(range(len(texts)))
    for row in table:
        assert [r["label"] for r in row["labels"]] == [r["label"] for r in expected[row["id"]]]
        np.testing.assert_allclose([r["score"] for r in row["labels"]], [r["score"] for r in expected[row["id"]]],
                                   atol=1e-6)


def test_cli_classify_jsonl_on_ray_equals_classify(tmp_path, tiny_cls_artifact):
    texts = corpus(200)
    records = [{"id": 1000 + i, "text": text, "lang": "en"} for i, text in enumerate(texts)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    result = invoke("classify", tiny_cls_artifact, tmp_path / "in.jsonl", "-o", tmp_path / "out.parquet",
                    "--engine", "ray", "--top-k", "2", "--actors", "1")

    assert result.exit_code == 0, result.output
    assert "200 rows" in result.output and "0 failed" in result.output
    out = pq.read_table(tmp_path / "out.parquet").to_pylist()
    expected = onnxport.load(tiny_cls_artifact).classify(texts, top_k=2)
    assert sorted(row["id"] for row in out) == [r["id"] for r in records]
    for row in out:
        want = expected[row["id"] - 1000]
        assert row["lang"] == "en" and row["error"] is None
        assert [label["label"] for label in row["labels"]] == [label["label"] for label in want]
        assert np.allclose([label["score"] for label in row["labels"]], [label["score"] for label in want],
                           atol=1e-6)


# ------------------------------------------------------------------ bad rows, dead actors


def test_bad_rows_are_kept_counted_and_set_the_exit_code(tmp_path, tiny_cls_artifact):
    long_text = " ".join(["tokens"] * 200)  # the tiny model takes 64 tokens
    records = [{"id": 0, "text": "a fine sentence"}, {"id": 1, "text": None}, {"id": 2, "text": 42},
               {"id": 3, "text": long_text}, {"id": 4, "text": ""}, {"id": 5, "text": "another fine one"}]
    lines = [json.dumps(r) for r in records] + ["", "   ", "{not json", "[1, 2]"]  # blank lines are no rows
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    args = ["classify", tiny_cls_artifact, tmp_path / "in.jsonl", "--engine", "ray", "--no-truncate", "--actors", "1"]

    failed = invoke(*args, "-o", tmp_path / "out.parquet")
    skipped = invoke(*args, "-o", tmp_path / "skip.parquet", "--skip-bad")

    assert failed.exit_code == 1, failed.output
    assert "5 of 8 rows failed" in failed.output and "--skip-bad" in failed.output
    assert skipped.exit_code == 0, skipped.output
    for name in ("out.parquet", "skip.parquet"):  # written either way: nothing is lost
        table = pq.read_table(tmp_path / name).to_pylist()
        assert len(table) == 8
        broken = sorted(row["error"] for row in table if row["id"] is None)
        assert broken[0].startswith("not a JSON object but list") and broken[1].startswith("not valid JSON")
        rows = {row["id"]: row for row in table if row["id"] is not None}
        assert sorted(rows) == list(range(6))
        errors = {i: row["error"] for i, row in rows.items() if row["error"] is not None}
        assert sorted(errors) == [1, 2, 3]
        assert errors[1] == "'text' is null" and errors[2] == "'text' is int, not a string"
        assert "longer than the model's 64 tokens" in errors[3]
        assert all(row["labels"] == [] for row in table if row["error"] is not None)
        expected = onnxport.load(tiny_cls_artifact).classify(["a fine sentence", "", "another fine one"])
        for i, want in zip((0, 4, 5), expected):
            assert rows[i]["labels"][0]["label"] == want[0]["label"]
            assert rows[i]["labels"][0]["score"] == pytest.approx(want[0]["score"], abs=1e-6)


class DiesOnceWorker(scale.ArtifactWorker):
    """Kills its own process in the first batch it sees, once per test (a marker file says it
    happened), as an out-of-memory kill or a lost node would."""

    marker: str = ""

    def __call__(self, table):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().__call__(table)
        os._exit(1)


def test_a_killed_actor_is_replaced_and_no_row_is_lost_or_repeated(tmp_path, minilm_artifact):
    texts = [" ".join(text.split()[:12]) for text in builtin_texts(600)]
    dataset = ray.data.from_arrow(pa.table({"id": list(range(len(texts))), "text": texts}))
    worker = type("Dies", (DiesOnceWorker,), {"marker": str(tmp_path / "died")})

    result = scale.map_dataset(dataset, minilm_artifact, rows_per_batch=100, actors=1, worker=worker).take_all()

    assert (tmp_path / "died").exists()  # the actor did die
    assert sorted(row["id"] for row in result) == list(range(len(texts)))
    vectors = np.asarray([row["embedding"] for row in sorted(result, key=lambda row: row["id"])], dtype=np.float32)
    assert cosines(vectors, onnxport.load(minilm_artifact).embed(texts)).min() >= 0.99999


class RefusesToStart(scale.ArtifactWorker):
    """What a worker does when its copy of the model file is not the judged one."""

    def __init__(self, **options):
        raise ArtifactError("model.onnx in the copy shipped to this worker is 'modified since verified'")


def test_a_worker_refusing_the_artifact_fails_the_job_with_its_message(tmp_path, minilm_artifact):
    pq.write_table(pa.table({"text": ["a text", "another"]}), tmp_path / "in.parquet")
    with pytest.raises(ArtifactError, match="^model.onnx in the copy shipped to this worker is 'modified since"):
        scale.run(str(tmp_path / "in.parquet"), tmp_path / "out.parquet", minilm_artifact, worker=RefusesToStart)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]  # no output, no temp directory


# ------------------------------------------------------------------ mistakes, clear errors


def test_user_mistakes_exit_2_and_write_nothing(tmp_path, tiny_cls_artifact, minilm_artifact):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "in.parquet")
    (tmp_path / "taken.parquet").mkdir()
    cases = {
        "no text column": (["classify", tiny_cls_artifact, tmp_path / "in.parquet", "-o", tmp_path / "a.parquet",
                            "--engine", "ray"], "no 'text' column"),
        "output exists": (["classify", tiny_cls_artifact, tmp_path / "in.parquet", "-o", tmp_path / "taken.parquet",
                           "--engine", "ray", "--text-field", "body"], "already exists"),
        "no match": (["classify", tiny_cls_artifact, str(tmp_path / "none-*.parquet"), "-o", tmp_path / "b.parquet",
                      "--engine", "ray"], "no file matches"),
        "wrong task": (["ner", minilm_artifact, tmp_path / "in.parquet", "-o", tmp_path / "c.parquet",
                        "--engine", "ray", "--text-field", "body"], "token-classification"),
        "no output": (["classify", tiny_cls_artifact, tmp_path / "in.parquet", "--engine", "ray"], "-o OUT.parquet"),
        "bad suffix": (["classify", tiny_cls_artifact, tmp_path / "in.parquet", "-o", tmp_path / "d.csv",
                        "--engine", "ray"], "OUT.parquet or OUT.jsonl"),
        "ray flag alone": (["classify", tiny_cls_artifact, "a text", "--actors", "2"], "--engine ray"),
    }
    for name, (args, message) in cases.items():
        result = invoke(*args)
        assert result.exit_code == 2, (name, result.output)
        assert message in result.output, (name, result.output)
        assert "Traceback" not in result.output, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "taken.parquet"]
    assert list((tmp_path / "taken.parquet").iterdir()) == []


def test_missing_ray_says_how_to_install(monkeypatch, tmp_path, tiny_cls_artifact):
    for module in [name for name in sys.modules if name == "ray" or name.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as without the extra
    with pytest.raises(MissingDependency, match=r'pip install "onnxport\[ray\]"'):
        scale.import_ray()
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "in.parquet")
    result = invoke("classify", tiny_cls_artifact, tmp_path / "in.parquet", "-o", tmp_path / "o.parquet",
                    "--engine", "ray")
    assert result.exit_code == 2 and 'pip install "onnxport[ray]"' in result.output


# ------------------------------------------------------------------ Ray versions, shipping


def test_jsonl_lines_are_parsed_one_by_one():
    from onnxport.scale.jsonl import PROBLEM_COLUMN, parse_lines

    lines = ['{"id": 1, "text": "ok", "meta": {"a": 1}, "n": 1}', '{"id": "two", "text": 3, "n": 2.5}',
             '{"id": 3}', "nope", '"just a string"', "  ", '{"id": 5, "text": null, "n": null}']
    table = parse_lines(pa.table({"text": lines}), "text")

    assert table.num_rows == 6  # the blank line is no row
    assert table.schema.field("text").type == pa.string()
    assert table.column("text").to_pylist() == ["ok", None, None, None, None, None]
    assert table.column(PROBLEM_COLUMN).to_pylist() == [
        None, "'text' is int, not a string", "no 'text' field", "not valid JSON (Expecting value)",
        "not a JSON object but str", "'text' is null"]
    assert table.column("id").to_pylist() == ["1", "two", "3", None, None, "5"]  # mixed types: as JSON text
    assert table.column("n").to_pylist() == [1.0, 2.5, None, None, None, None]
    assert table.column("meta").to_pylist() == ['{"a": 1}', None, None, None, None, None]


def test_actor_pool_argument_follows_the_ray_version():
    from ray.data import ActorPoolStrategy

    from onnxport.scale.compat import actor_pool_args, version_tuple

    assert actor_pool_args("2.9.3", 3) == {"concurrency": 3}
    assert actor_pool_args("2.50.1", 3) == {"concurrency": 3}
    for version in ("2.51.0", "2.60.0", "3.0.0rc1"):
        compute = actor_pool_args(version, 3)["compute"]
        assert isinstance(compute, ActorPoolStrategy) and compute.min_size == compute.max_size == 3
    assert version_tuple("2.10.0") > version_tuple("2.9.3")


def test_shipped_artifact_is_checked_against_the_drivers_verdict(tmp_path, minilm_artifact):
    from onnxport.core.artifact import Artifact
    from onnxport.scale.shipping import open_shipped, pack_artifact

    artifact = Artifact(minilm_artifact)
    files = pack_artifact(artifact, "model.onnx")
    assert "model.onnx" in files and "tokenizer.json" in files and "hierarchy.json" not in files

    same_disk = open_shipped(str(minilm_artifact), files, "model.onnx", "passed")
    elsewhere = open_shipped(str(tmp_path / "not-on-this-node"), files, "model.onnx", "passed")
    assert same_disk.path == Path(minilm_artifact)
    assert elsewhere.path != same_disk.path and elsewhere.verdict("model.onnx", deep=True) == "passed"

    damaged = dict(files)
    model = bytearray(damaged["model.onnx"])
    model[-100] ^= 0xFF  # one flipped byte in the weights
    damaged["model.onnx"] = bytes(model)
    with pytest.raises(ArtifactError, match="modified since verified"):
        open_shipped(str(tmp_path / "not-on-this-node"), damaged, "model.onnx", "passed")
