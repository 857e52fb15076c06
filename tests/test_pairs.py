"""Sentence pairs for sequence classification (NLI: premise, hypothesis): tokenized with the
artifact's own pair template and cut longest_first, they score as transformers scores them;
the CLI reads them from two fields; verification runs pairs, truncated ones included."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import onnxport
from onnxport.errors import InputError
from onnxport.tools.cli import main

from conftest import save_tiny_model, tiny_bert_config

MAX_LENGTH = 24  # small, so that many pairs need truncation
LABELS = ["entailment", "neutral", "contradiction"]
PREMISES = [
    "A man is playing a guitar on stage.",
    "Two dogs run through a field of tall grass while their owner watches from the fence.",
    "The bus to Mumbai leaves at nine.",
    "A woman is slicing tomatoes in a small kitchen.",
    "Children are building a sandcastle on the beach near the old wooden pier, laughing loudly.",
    "The meeting was moved to Friday.",
    "Prices rose by four percent over the year, and the shop raised the cost of bread twice.",
    "A cyclist waits at a red light.",
    "Snow covers the mountain village.",
    "The orchestra tunes its instruments before the concert begins in the crowded hall tonight.",
]
HYPOTHESES = [
    "Someone is making music.",
    "The animals are asleep.",
    "A vehicle departs in the morning.",
    "Nobody is cooking.",
    "People are outdoors enjoying the sunny weather by the sea with friends and family all afternoon.",
    "The schedule changed.",
]
# 60 pairs: every premise with every hypothesis.
PAIRS = [(premise, hypothesis) for premise in PREMISES for hypothesis in HYPOTHESES]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def nli_folder(tmp_path_factory, minilm_path):
    """A tiny random 3-label BERT NLI classifier whose tokenizer takes 24 tokens."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)  # its own copy: the max length differs
    tokenizer.model_max_length = MAX_LENGTH
    torch.manual_seed(15)
    # Weights 25x the usual spread: with the default, a random model gives every input the
    # same near-uniform scores, and agreeing with transformers on those would prove little.
    config = tiny_bert_config(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                              label2id={label: i for i, label in enumerate(LABELS)}, initializer_range=0.5)
    model = BertForSequenceClassification(config).eval()
    return save_tiny_model(tmp_path_factory.mktemp("tiny-nli"), model, tokenizer)


@pytest.fixture(scope="module")
def nli_artifact(tmp_path_factory, nli_folder):
    out = tmp_path_factory.mktemp("tiny-nli-artifact") / "artifact"
    onnxport.export(nli_folder, out=out)
    return out


@pytest.fixture(scope="module")
def transformers_nli(nli_folder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(nli_folder)
    model = AutoModelForSequenceClassification.from_pretrained(nli_folder).eval()
    return tokenizer, model


def reference_scores(transformers_nli, pairs) -> np.ndarray:
    """What a transformers user gets: the pair template, longest_first truncation, softmax."""
    tokenizer, model = transformers_nli
    encoded = tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first",
                        max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**encoded).logits, dim=-1).numpy()


def as_matrix(results: list[list[dict]]) -> np.ndarray:
    return np.array([[{r["label"]: r["score"] for r in result}[label] for label in LABELS] for result in results])


@pytest.fixture(scope="module")
def classifier(nli_artifact):
    return onnxport.load(nli_artifact)


# ---------------------------------------------------------------- the Python API


def test_pairs_score_as_transformers_does_truncated_ones_included(classifier, transformers_nli):
    tokenizer, _ = transformers_nli
    truncated = [pair for pair in PAIRS if len(tokenizer(*pair)["input_ids"]) > MAX_LENGTH]
    assert len(PAIRS) >= 50 and len(truncated) >= 10, len(truncated)

    got = as_matrix(classifier.classify(PAIRS, top_k=len(LABELS), batch_size=8))
    expected = reference_scores(transformers_nli, PAIRS)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert len(set(expected.argmax(1))) > 1  # the labels really differ between pairs


def test_one_pair_is_one_result_and_not_two_texts(classifier, transformers_nli):
    premise, hypothesis = PAIRS[0]
    one = classifier.classify((premise, hypothesis), top_k=3)
    assert one == classifier.classify([(premise, hypothesis)], top_k=3)[0]
    assert one == classifier.classify([[premise, hypothesis]], top_k=3)[0]  # a 2-list is a pair too
    assert [r["label"] for r in one] and all(isinstance(r, dict) for r in one)
    np.testing.assert_allclose(as_matrix([one])[0], reference_scores(transformers_nli, [PAIRS[0]])[0], atol=1e-4)
    # The old behaviour (each sentence classified alone) gives other scores.
    separately = as_matrix(classifier.classify([premise, hypothesis], top_k=3))
    assert np.abs(separately - as_matrix([one])).max(axis=1).min() > 1e-3


def test_single_texts_still_score_as_before(classifier, transformers_nli):
    tokenizer, model = transformers_nli
    texts = PREMISES[:4]
    encoded = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(model(**encoded).logits, dim=-1).numpy()
    np.testing.assert_allclose(as_matrix(classifier.classify(texts, top_k=3)), expected, atol=1e-4)
    assert classifier.classify(texts[0]) == classifier.classify([texts[0]])[0]


@pytest.mark.parametrize("bad, message", [
    (["a text", ("a", "pair")], "mix texts and pairs"),
    (("premise", None), "pair #0 has no second text"),
    ([("premise", "")], "pair #0 has no second text"),
    ([("ok", "pair"), ("  ", "hypothesis")], "pair #1 has no first text"),
    ([("premise", 3)], "second text is int, not str"),
    (("a", "b", "c"), "3 items, but a pair is exactly"),
    ([("a",)], "1 item, but a pair is exactly"),
    ([("a", "b"), "c"], "mix texts and pairs"),
    ([("a", "b"), None], "pair #1 is NoneType"),
])
def test_bad_pairs_are_refused_with_what_to_do(classifier, bad, message):
    with pytest.raises(InputError, match=message) as caught:
        classifier.classify(bad)
    assert any(hint in str(caught.value) for hint in ("pass", "give")), caught.value


def test_no_truncate_refuses_a_pair_too_long_together(nli_artifact):
    strict = onnxport.load(nli_artifact, truncate=False)
    short = ("A man sings.", "Someone makes music.")
    assert strict.classify(short) == onnxport.load(nli_artifact).classify(short)
    with pytest.raises(InputError, match=r"pair #1 .* longer than the model's 24 tokens; shorten it or allow"):
        strict.classify([short, (PREMISES[1], HYPOTHESES[4])])


def test_a_tokenizer_without_a_pair_template_refuses_pairs(nli_artifact, tmp_path):
    from onnxport.runtime.tokenization import TextEncoder

    data = json.loads((nli_artifact / "tokenizer.json").read_text(encoding="utf-8"))
    data["post_processor"] = None  # pairs would run together with no separator
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    plain = TextEncoder(tmp_path, max_length=MAX_LENGTH, pad_id=0, pad_token="[PAD]")
    assert not plain.takes_pairs and TextEncoder(nli_artifact, max_length=MAX_LENGTH, pad_id=0,
                                                 pad_token="[PAD]").takes_pairs
    with pytest.raises(InputError, match="no pair template"):
        plain.tokenize_pairs([("a", "b")])


def test_pairs_are_refused_when_the_graph_zeroes_token_type_ids(nli_artifact, tmp_path, classifier):
    """An export without token_type_ids (zeros inside the graph) cannot tell a BERT pair's
    texts apart: refused, not answered wrongly."""
    copy = shutil.copytree(nli_artifact, tmp_path / "artifact")
    manifest = json.loads((copy / "onnxport.json").read_text())
    manifest["inputs"] = [i for i in manifest["inputs"] if i["name"] != "token_type_ids"]
    (copy / "onnxport.json").write_text(json.dumps(manifest))
    from onnxport.runtime.pipelines import load

    pipeline = load(copy, runner=classifier.runner)  # the graph itself is not what this is about
    with pytest.raises(InputError, match="without token_type_ids.*--token-type-ids"):
        pipeline.classify(PAIRS[:2])
    assert pipeline.classify(PREMISES[:2])  # single texts are fine


# ---------------------------------------------------------------- verification


def test_the_export_verified_pairs_truncated_longest_first(nli_artifact, transformers_nli):
    from onnxport.checks.parity import pair_matrix
    from onnxport.core.sample_texts import builtin_texts
    from onnxport.runtime.tokenization import TextEncoder

    report = onnxport.Artifact(nli_artifact).files["model.onnx"]["verification"]
    assert report["verdict"] == "passed" and report["reference"].startswith("pytorch")
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("pytorch parity (pairs) b7", "pytorch parity (truncated pairs) b3", "padding invariance (pairs) b7",
                 "pytorch parity b16"):
        assert checks[name]["passed"], checks.get(name)
    # The truncated batch really needs truncation, as transformers counts the pairs' tokens.
    tokenizer, _ = transformers_nli
    encoder = TextEncoder.for_artifact(onnxport.Artifact(nli_artifact))
    kinds = dict(pair_matrix(builtin_texts(), encoder, None))
    assert all(len(tokenizer(*pair)["input_ids"]) > MAX_LENGTH for pair in kinds["truncated pairs"])
    assert [len(kinds["truncated pairs"]), MAX_LENGTH] in report["shapes"]


def test_pair_checks_catch_a_model_that_ignores_the_second_segment(nli_artifact, transformers_nli):
    """A reference that drops token_type_ids agrees on single texts but not on pairs: the
    pair checks are what would see a graph that lost its segment embeddings."""
    _, model = transformers_nli

    class Reference:
        def __init__(self, zero_types: bool):
            self.zero_types = zero_types
            self.name = f"transformers{' without segments' if zero_types else ''}"

        def run(self, arrays):
            types = np.zeros_like(arrays["token_type_ids"]) if self.zero_types else arrays["token_type_ids"]
            with torch.no_grad():
                logits = model(input_ids=torch.as_tensor(arrays["input_ids"]),
                               attention_mask=torch.as_tensor(arrays["attention_mask"]),
                               token_type_ids=torch.as_tensor(types)).logits
            return {"logits": logits.numpy()}

    from onnxport.checks.parity import verify

    assert verify(nli_artifact, reference=Reference(False), record=False).passed
    report = verify(nli_artifact, reference=Reference(True), record=False)
    failed = {c.name for c in report.failures()}
    assert failed and all("pairs" in name for name in failed), failed


# ---------------------------------------------------------------- the CLI


def test_cli_reads_pairs_from_two_fields(nli_artifact, classifier, tmp_path):
    source = tmp_path / "nli.jsonl"
    source.write_text("".join(json.dumps({"key": f"p{i}", "premise": a, "hypothesis": b}) + "\n"
                              for i, (a, b) in enumerate(PAIRS[:8])), encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    result = invoke("classify", nli_artifact, source, "--text-field", "premise", "--pair-field", "hypothesis",
                    "--id-field", "key", "--top-k", "3", "-o", out)
    assert result.exit_code == 0, result.output
    rows = records(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(8)]
    assert [(r["text"], r["text_pair"]) for r in rows] == PAIRS[:8]
    assert [r["labels"] for r in rows] == json.loads(json.dumps(classifier.classify(PAIRS[:8], top_k=3)))


def test_cli_classifies_a_text_pair_field_as_a_pair_by_default(nli_artifact, classifier, tmp_path):
    source = tmp_path / "mixed.jsonl"
    lines = [{"text": PAIRS[0][0], "text_pair": PAIRS[0][1]}, {"text": PREMISES[3]},
             {"text": PAIRS[7][0], "text_pair": PAIRS[7][1]}]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    result = invoke("classify", nli_artifact, source, "--top-k", "3")
    assert result.exit_code == 0, result.output
    rows = records(result.stdout)
    assert [r["id"] for r in rows] == [0, 1, 2]
    assert "text_pair" not in rows[1] and rows[2]["text_pair"] == PAIRS[7][1]
    expected = [classifier.classify(PAIRS[0], top_k=3), classifier.classify(PREMISES[3], top_k=3),
                classifier.classify(PAIRS[7], top_k=3)]
    assert [r["labels"] for r in rows] == json.loads(json.dumps(expected))
    assert "'text_pair'" in invoke("classify", "--help").stdout  # the convention is stated


def test_cli_pairs_from_csv_and_parquet(nli_artifact, classifier, tmp_path):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    expected = json.loads(json.dumps(classifier.classify(PAIRS[:3])))
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("a", "b"), *PAIRS[:3]])
    pq.write_table(pa.table({"a": [a for a, _ in PAIRS[:3]], "b": [b for _, b in PAIRS[:3]]}), tmp_path / "in.parquet")
    for name in ("in.csv", "in.parquet"):
        result = invoke("classify", nli_artifact, tmp_path / name, "--text-field", "a", "--pair-field", "b",
                        "-o", tmp_path / f"{name}.parquet")
        assert result.exit_code == 0, result.output
        table = pq.read_table(tmp_path / f"{name}.parquet").to_pydict()
        assert list(zip(table["text"], table["text_pair"])) == PAIRS[:3]
        assert [json.loads(v) if isinstance(v, str) else v for v in table["labels"]] == expected


def test_cli_a_pair_with_a_missing_half_is_a_bad_row(nli_artifact, tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps({"p": "A man sings.", "h": "Music."}) + "\n" + json.dumps({"p": "Alone."}) + "\n"
                      + json.dumps({"p": "Empty.", "h": " "}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    failed = invoke("classify", nli_artifact, source, "--text-field", "p", "--pair-field", "h", "-o", out)
    assert failed.exit_code == 2 and not out.exists()
    error = [line for line in failed.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"{source} line 2: no 'h' field" in error[0] and "--skip-bad" in error[0], error

    skipped = invoke("classify", nli_artifact, source, "--text-field", "p", "--pair-field", "h", "-o", out,
                     "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    assert "line 2" in skipped.output and "line 3: 'h' is empty" in skipped.output
    assert [(r["text"], r["text_pair"]) for r in records(out.read_text())] == [("A man sings.", "Music.")]

    default = tmp_path / "null.jsonl"  # the text_pair convention is as strict about a present field
    default.write_text(json.dumps({"text": "A man sings.", "text_pair": None}) + "\n", encoding="utf-8")
    refused = invoke("classify", nli_artifact, default, "-o", out)
    assert refused.exit_code == 2 and "'text_pair' (the second text of the pair) is null" in refused.output


def test_cli_pairs_only_where_they_make_sense(nli_artifact, tmp_path):
    source = tmp_path / "nli.jsonl"
    source.write_text(json.dumps({"text": "A man sings.", "hypothesis": "Music."}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    for command in ("embed", "ner"):
        result = invoke(command, nli_artifact, source, "--pair-field", "hypothesis", "-o", out)
        assert result.exit_code == 2 and "--pair-field is for `onnxport classify`" in result.output
    args = invoke("classify", nli_artifact, "A man sings.", "Music.", "--pair-field", "hypothesis", "-o", out)
    assert args.exit_code == 2 and "pass a .jsonl/.csv/.parquet file" in args.output
    ray = invoke("classify", nli_artifact, source, "--pair-field", "nothing", "--engine", "ray", "-o",
                 tmp_path / "out.parquet")
    assert ray.exit_code == 2 and "no 'nothing' column" in ray.output  # checked before Ray starts
    long_pair = tmp_path / "long.jsonl"
    long_pair.write_text(json.dumps({"text": PREMISES[1], "text_pair": HYPOTHESES[4]}) + "\n", encoding="utf-8")
    strict = invoke("classify", nli_artifact, long_pair, "--no-truncate", "-o", out)
    assert strict.exit_code == 2 and "longer than the model's 24 tokens" in strict.output
    assert not out.exists()


def test_cli_pair_option_classifies_one_pair_from_the_command_line(nli_artifact, classifier, tmp_path):
    premise, hypothesis = PAIRS[7]
    out = tmp_path / "one.jsonl"
    result = invoke("classify", nli_artifact, premise, "--pair", hypothesis, "--top-k", 3, "-o", out)
    assert result.exit_code == 0, result.output
    [record] = records(out.read_text(encoding="utf-8"))
    assert (record["text"], record["text_pair"]) == (premise, hypothesis)
    assert record["labels"] == json.loads(json.dumps(classifier.classify((premise, hypothesis), top_k=3)))
    # Two arguments stay two texts, and the command says how to make them one pair.
    two = invoke("classify", nli_artifact, premise, hypothesis)
    assert two.exit_code == 0 and "--pair" in two.output
    assert len(records(two.output)) == 2
    for args, message in [((premise, "other", "--pair", hypothesis), "only INPUT"),
                          (("--pair", hypothesis), "only INPUT"),
                          ((premise, "--pair", " "), "no second text")]:
        bad = CliRunner().invoke(main, ["classify", str(nli_artifact), *args, "-o", str(tmp_path / "bad.jsonl")])
        assert bad.exit_code == 2 and message in bad.output, bad.output
        assert not (tmp_path / "bad.jsonl").exists()


# ---------------------------------------------------------------- the HTTP server


def test_server_classifies_pairs(nli_artifact, classifier):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from onnxport.serve import create_app

    with TestClient(create_app([nli_artifact], api_key="")) as client:
        answer = client.post("/classify", json={"inputs": [list(pair) for pair in PAIRS[:6]], "top_k": 3})
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(as_matrix(answer.json()), as_matrix(classifier.classify(PAIRS[:6], top_k=3)),
                                   atol=1e-6)
        texts = client.post("/classify", json={"inputs": list(PAIRS[0]), "top_k": 3})  # two texts, not a pair
        np.testing.assert_allclose(as_matrix(texts.json()), as_matrix(classifier.classify(list(PAIRS[0]), top_k=3)),
                                   atol=1e-6)

        half = client.post("/classify", json={"inputs": [["A man sings."]]})
        assert half.status_code == 422 and "[first, second] sentence pairs; inputs[0] is ['A man sings.']" \
            in half.json()["error"]
        blank = client.post("/classify", json={"inputs": [["A man sings.", " "]]})
        assert blank.status_code == 400 and "inputs[0] is a pair with an empty text" in blank.json()["error"]
        long = client.post("/classify", json={"inputs": [[PREMISES[1], HYPOTHESES[4]]], "truncate": False})
        assert long.status_code == 422 and "inputs[0] is longer than" in long.json()["error"]
