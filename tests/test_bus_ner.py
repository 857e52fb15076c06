"""The bus-ticket NER example (examples/bus_ner) end to end, and its parts.

Fast: the entity F1 function against hand-computed values, word spans from character
spans, the generator (seeded, aligned, multi-word entities tagged B- then I-), sub-token
label alignment on the real tokenizer. Slow: train a few steps on a small generated set,
export with labels and --quantize through the CLI, verify both files, and compare int8
with fp32 and the PyTorch backend with ONNX on held-out queries.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "bus_ner"
sys.path.insert(0, str(EXAMPLE))

import evaluate as bus_eval  # noqa: E402
import generate  # noqa: E402


# ---------------------------------------------------------------- metrics

def test_bio_spans_reads_tags_like_seqeval():
    tags = ["B-SRC", "I-SRC", "O", "B-DEST", "B-DEST", "I-DATE", "I-DATE", "I-SRC", "O", "B-PRICE"]
    assert bus_eval.bio_spans(tags) == {
        (0, 2, "SRC"), (3, 4, "DEST"), (4, 5, "DEST"),
        (5, 7, "DATE"),  # I- without B- starts an entity (seqeval's default mode)
        (7, 8, "SRC"),  # a different type ends the previous entity
        (9, 10, "PRICE"),  # an entity at the very end
    }
    assert bus_eval.bio_spans([]) == set()
    assert bus_eval.bio_spans(["O", "O"]) == set()


def test_prf_matches_hand_computed_values():
    gold = [{(0, 1, "SRC"), (2, 3, "DEST"), (4, 6, "DATE")}, {(0, 2, "SRC")}, set()]
    predicted = [
        {(0, 1, "SRC"), (2, 3, "SRC"), (4, 5, "DATE")},  # 1 right; wrong label; wrong boundary
        {(0, 2, "SRC")},  # right
        {(1, 2, "OPERATOR")},  # spurious
    ]
    # tp = 2, fp = 3, fn = 2 -> precision 2/5, recall 2/4, F1 = 2*0.4*0.5/0.9 = 4/9
    result = bus_eval.prf(gold, predicted)
    assert (result["tp"], result["fp"], result["fn"]) == (2, 3, 2)
    assert result["precision"] == pytest.approx(0.4)
    assert result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(4 / 9)
    # SRC: tp 2, fp 1 ((2,3,SRC)), fn 0 -> P 2/3, R 1, F1 0.8; DEST: fn 1 -> all zero
    assert result["per_label"]["SRC"]["f1"] == pytest.approx(0.8)
    assert result["per_label"]["DEST"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 1}
    assert result["per_label"]["OPERATOR"]["fp"] == 1
    perfect = bus_eval.prf(gold, gold)
    assert perfect["f1"] == 1.0 and perfect["fp"] == perfect["fn"] == 0
    with pytest.raises(ValueError):
        bus_eval.prf(gold, predicted[:2])


def test_word_spans_keep_misaligned_entities_unmatchable():
    tokens = ["Non-AC", "bus", "from", "New", "Delhi", "?"]
    text, offsets = generate.detokenize(tokens)
    assert text == "Non-AC bus from New Delhi?"
    entities = [
        {"label": "BUS_TYPE", "start": 0, "end": 6},  # the whole "Non-AC"
        {"label": "SRC", "start": 16, "end": 25},  # "New Delhi"
        {"label": "BUS_TYPE", "start": 0, "end": 3},  # "Non" alone: not a word span
    ]
    spans = bus_eval.word_spans(entities, offsets)
    assert (0, 1, "BUS_TYPE") in spans and (3, 5, "SRC") in spans
    assert ("chars", 0, 3, "BUS_TYPE") in spans
    gold = {(0, 1, "BUS_TYPE"), (3, 5, "SRC")}
    assert bus_eval.prf([gold], [spans])["fp"] == 1
    # two-word gold entities found whole: "New Delhi" yes, "next Friday" (7,9) no
    assert bus_eval.multi_word_recall([gold | {(7, 9, "DATE")}], [spans]) == pytest.approx(0.5)


# ---------------------------------------------------------------- generator

def test_generator_is_seeded_and_aligned():
    first = generate.generate(300, seed=7)
    assert first == generate.generate(300, seed=7)
    assert first != generate.generate(300, seed=8)
    for example in first:
        assert len(example["tokens"]) == len(example["tags"]) > 0
        assert all(tag in generate.TAGS for tag in example["tags"])
        text, offsets = generate.detokenize(example["tokens"])
        assert example["text"] == text
        assert [text[s:e] for s, e in offsets] == example["tokens"]
        for previous, tag in zip(["O"] + example["tags"], example["tags"]):
            if tag.startswith("I-"):  # I-X only continues an X entity
                assert previous in ("B-" + tag[2:], tag)
    assert any(not any(t != "O" for t in e["tags"]) for e in first), "some queries have no entities"
    assert any(e["text"] != e["text"].lower() and e["text"] != e["text"].upper() for e in first)
    assert any(e["text"] == e["text"].lower() for e in first), "some queries are all lower case"


def test_multi_word_values_are_tagged_b_then_i():
    """Without typos every entity is a pool value, and multi-word values get B- then I-."""
    pools = {"SRC": generate.CITIES, "DEST": generate.CITIES, "OPERATOR": generate.OPERATORS,
             "BUS_TYPE": generate.BUS_TYPES, "SEAT_TYPE": generate.SEAT_TYPES}
    seen_multi = set()
    for example in generate.generate(600, seed=3, typo_rate=0.0):
        for start, end, label in generate_spans(example["tags"]):
            value = " ".join(example["tokens"][start:end])
            if label in pools:
                assert value.lower() in {v.lower() for v in pools[label]}, (value, label)
            if end - start > 1:
                seen_multi.add(label)
                assert example["tags"][start] == f"B-{label}"
                assert example["tags"][start + 1:end] == [f"I-{label}"] * (end - start - 1)
    # "New Delhi", "next Friday", "Non AC", "semi sleeper", "VRL Travels", "Rs 500", "9:30 pm"
    assert seen_multi >= {"SRC", "DEST", "DATE", "BUS_TYPE", "SEAT_TYPE", "OPERATOR", "PRICE", "TIME"}


def generate_spans(tags):
    """Maximal B-X I-X... runs, read independently of evaluate.bio_spans."""
    spans, i = [], 0
    while i < len(tags):
        if tags[i].startswith("B-"):
            label, j = tags[i][2:], i + 1
            while j < len(tags) and tags[j] == f"I-{label}":
                j += 1
            spans.append((i, j, label))
            i = j
        else:
            i += 1
    return spans


def test_generate_cli_writes_three_splits(tmp_path, capsys):
    assert generate.main([str(tmp_path / "data"), "--n-train", "20", "--n-test", "5", "--seed", "1"]) == 0
    lines = {name: (tmp_path / "data" / f"{name}.jsonl").read_text().splitlines() for name in ("train", "dev", "test")}
    assert [len(v) for v in lines.values()] == [20, 5, 5]
    assert json.loads(lines["test"][0]) == generate.generate(1, seed=1002)[0]
    assert lines["train"][:5] != lines["test"]
    with pytest.raises(SystemExit) as error:
        generate.main([str(tmp_path / "x"), "--n-train", "0"])
    assert error.value.code == 2
    assert not list(tmp_path.glob("data/.*.tmp")), "no temp files left behind"


def test_sub_token_labels_follow_their_word(wordpiece_tokenizer):
    import train

    label2id = {tag: i for i, tag in enumerate(generate.TAGS)}
    tokens = ["Non-AC", "sleeper", "from", "Port", "Blaair", "?"]
    tags = ["B-BUS_TYPE", "B-SEAT_TYPE", "O", "B-SRC", "I-SRC", "O"]
    row = train.align_labels(tokens, tags, wordpiece_tokenizer, label2id)
    pieces = wordpiece_tokenizer.convert_ids_to_tokens(row["input_ids"])
    labels = [generate.TAGS[i] if i >= 0 else None for i in row["labels"]]
    assert list(zip(pieces, labels)) == [
        ("[CLS]", None), ("non", "B-BUS_TYPE"), ("-", "I-BUS_TYPE"), ("ac", "I-BUS_TYPE"),
        ("sleeper", "B-SEAT_TYPE"), ("from", "O"), ("port", "B-SRC"),
        ("b", "I-SRC"), ("##la", "I-SRC"), ("##air", "I-SRC"), ("?", "O"), ("[SEP]", None),
    ]
    assert row["first_token"] == [1, 4, 5, 6, 7, 10]


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def trained_ner(tmp_path_factory):
    """A model trained for a few steps on a small generated set (through the example's own
    command lines), and its held-out queries."""
    root = tmp_path_factory.mktemp("bus-ner")
    assert generate.main([str(root / "data"), "--n-train", "480", "--n-test", "80", "--seed", "11"]) == 0
    # A fresh process: train.py sets OMP_WAIT_POLICY before torch loads, which this process
    # cannot do any more; on a busy CPU spinning OpenMP threads made training several times slower.
    done = subprocess.run([sys.executable, str(EXAMPLE / "train.py"), str(root / "data"), str(root / "model"),
                           "--max-steps", "120", "--batch-size", "16", "--learning-rate", "2e-4"],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    report = json.loads((root / "model" / "training.json").read_text())
    return root, generate.read_jsonl(root / "data" / "test.jsonl"), report


@pytest.mark.slow
def test_train_export_quantize_verify_extract(trained_ner):
    from click.testing import CliRunner

    import onnxport
    from onnxport import Artifact
    from onnxport.tools.cli import main
    from onnxport.runtime.session import OnnxModel
    from onnxport.runtime.tokenization import TextEncoder

    root, test_examples, report = trained_ner
    model_dir, artifact_dir = root / "model", root / "artifact"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {str(i): tag for i, tag in enumerate(generate.TAGS)}
    assert report["steps"] == 120 and report["history"][-1]["loss"] < report["history"][0]["loss"]

    runner = CliRunner()
    texts_file = root / "data" / "dev.jsonl"  # calibration and quality texts: the model's own domain
    result = runner.invoke(main, ["export", "-m", str(model_dir), "--task", "token-classification", "--quantize",
                                  "--texts", str(texts_file), "-o", str(artifact_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    art = Artifact(artifact_dir)
    assert art.labels == {int(k): v for k, v in config["id2label"].items()}
    assert (artifact_dir / "model.int8.onnx").exists()

    # On the domain's own queries: int8 is judged by agreement with fp32, and off-domain text
    # (the built-in paragraphs, other scripts) is where a briefly trained NER model is least stable.
    for extra in ([], ["--model-file", "model.int8.onnx"]):
        result = runner.invoke(main, ["verify", str(artifact_dir), "--texts", str(texts_file), *extra],
                               catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "PASSED" in result.output

    # int8 against fp32 on held-out queries, token by token: the query's own tokens, not padding
    # and not [CLS]/[SEP], which training never labels (-100), so their argmax means nothing.
    held_out = [e["text"] for e in test_examples]
    encoder = TextEncoder.for_artifact(art)
    fp32, int8 = OnnxModel(artifact_dir / "model.onnx"), OnnxModel(artifact_dir / "model.int8.onnx")
    encodings = encoder.tokenize(held_out)
    agree = []
    for start in range(0, len(held_out), 16):
        batch = encodings[start:start + 16]
        arrays = encoder.pad(batch)
        a = fp32.run(arrays)["logits"].argmax(-1)
        b = int8.run(arrays)["logits"].argmax(-1)
        for row, encoding in enumerate(batch):
            real = [i for i, special in enumerate(encoding.special_tokens_mask) if not special]
            agree.append(a[row, real] == b[row, real])
    agree = np.concatenate(agree)
    assert agree.size > 300
    assert agree.mean() >= 0.99, f"int8 agrees with fp32 on {agree.mean():.4f} of tokens"

    # extract: the same API for PyTorch and ONNX, spans that are slices of the text
    onnx_ner = onnxport.load(artifact_dir, model="fp32")
    torch_ner = onnxport.load(artifact_dir, backend="torch")
    onnx_entities = onnx_ner.extract(held_out)
    assert sum(len(e) for e in onnx_entities) > 0, "a model trained for 120 steps finds entities"
    for text, entities in zip(held_out, onnx_entities):
        for entity in entities:
            assert entity["text"] == text[entity["start"]:entity["end"]]
            assert entity["label"] in generate.LABELS
    torch_entities = torch_ner.extract(held_out)
    assert [[(e["label"], e["start"], e["end"]) for e in row] for row in torch_entities] == \
        [[(e["label"], e["start"], e["end"]) for e in row] for row in onnx_entities]
