"""Issue 14, the source side: every bad source or text is refused cleanly, and nothing
meaningless passes verification.

A folder without a usable tokenizer, damaged or truncated files, a model that needs its own
code, weights that do not cover the model: one `error:` line naming the problem and what to
do, exit 2, nothing on disk. Texts that are not a list of strings are an InputError; texts
that tokenize to mostly [UNK] (or to nothing) give "not verified", never "passed"; NaN or
inf outputs fail and say so. And the `--opset` advice names an opset the exporter can write.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import onnxport
from onnxport.checks.text_checks import checked_texts, unknown_token_id, unknown_token_problem
from onnxport.errors import InputError, ModelLoadError, ParityError
from onnxport.runtime.tokenization import TextEncoder
from onnxport.tools.cli import main

from conftest import save_tiny_model, tiny_bert_config

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "added_tokens.json")
# Scripts the BERT uncased vocabulary does not have: every word is [UNK].
UNKNOWN_TEXTS = ["ሰላም ዓለም", "ᚠᚢᚦ ᚨᚱᚲ", "ⴰⵣⵓⵍ ⴰⵣⵓⵍ", "ᐊᐃᔭᐅ"]


def run(*args):
    return CliRunner().invoke(main, [*map(str, args)], catch_exceptions=False)


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def assert_clean_failure(result, out: Path, *phrases, exit_code: int = 2) -> str:
    assert result.exit_code == exit_code, result.output
    line = one_error_line(result)
    for phrase in phrases:
        assert phrase in line, line
    assert not out.exists() or not any(out.iterdir())
    assert [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []
    return line


def without_tokenizer(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "no-tokenizer"
    shutil.copytree(folder, copy)
    for name in TOKENIZER_FILES:
        (copy / name).unlink(missing_ok=True)
    return copy


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory, tiny_bert_folder) -> Path:
    out = tmp_path_factory.mktemp("source-checks") / "artifact"
    onnxport.export(tiny_bert_folder, out=out)
    return out


@pytest.fixture()
def tiny_st_folder(tmp_path, tiny_bert_folder) -> Path:
    """The tiny BERT as a sentence-transformers folder (Transformer + mean Pooling)."""
    folder = tmp_path / "tiny-st"
    shutil.copytree(tiny_bert_folder, folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
         "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32, "do_lower_case": False}))
    return folder


# ---------------------------------------------------------------- tokenizers

def test_a_folder_without_tokenizer_files_really_gets_a_five_token_tokenizer(tmp_path, tiny_bert_folder):
    """What transformers does with such a folder (why onnxport must check): no error, 5 tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(without_tokenizer(tiny_bert_folder, tmp_path))
    assert len(tokenizer) == 5
    assert set(tokenizer("Paris is nice")["input_ids"][1:-1]) == {tokenizer.unk_token_id}


def test_folder_without_tokenizer_is_refused(tmp_path, tiny_bert_folder):
    folder = without_tokenizer(tiny_bert_folder, tmp_path)
    out = tmp_path / "out"
    assert_clean_failure(run("export", "--model", folder, "-o", out), out,
                         str(folder), "5 tokens", "30522 embedding rows", "tokenizer.save_pretrained",
                         "--tokenizer PATH", "tokenizer=PATH")
    with pytest.raises(ModelLoadError, match="5 tokens"):
        onnxport.export(folder, out=out)
    assert not out.exists()


def test_tokenizer_option_exports_a_folder_without_one_and_it_reverifies(tmp_path, tiny_bert_folder):
    folder = without_tokenizer(tiny_bert_folder, tmp_path)
    out = tmp_path / "out"
    result = run("export", "--model", folder, "--tokenizer", tiny_bert_folder, "-o", out)
    assert result.exit_code == 0, result.output
    artifact = onnxport.Artifact(out)
    assert artifact.verdict("model.onnx") == "passed"
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(vocab) == 30522
    # Re-verifying loads the source folder (still without a tokenizer) with the artifact's tokenizer.
    report = onnxport.verify(out)
    assert report.passed and report.reference.startswith("pytorch"), report.failure_summary()


def test_tokenizer_with_more_tokens_than_embedding_rows_is_refused(tmp_path, wordpiece_tokenizer):
    from transformers import BertModel

    folder = save_tiny_model(tmp_path / "small-vocab", BertModel(tiny_bert_config(vocab_size=1000)),
                             wordpiece_tokenizer)
    out = tmp_path / "out"
    assert_clean_failure(run("export", "--model", folder, "-o", out), out,
                         "30522 tokens", "only 1000 embedding rows", "past the embedding table")


def test_in_memory_module_with_a_tokenizer_that_is_not_its_own(tmp_path, wordpiece_tokenizer):
    from transformers import BertModel

    module = BertModel(tiny_bert_config(vocab_size=1000)).eval()
    with pytest.raises(ModelLoadError, match="30522 tokens but the model has only 1000 embedding rows"):
        onnxport.export(module, tokenizer=wordpiece_tokenizer, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tokenizer, error, message", [
    (12, InputError, "not int"),
    ("{missing}", ModelLoadError, "does not exist"),
    ("{file}", ModelLoadError, "is not a folder"),
])
def test_bad_tokenizer_argument(tmp_path, tiny_bert_folder, tokenizer, error, message):
    if isinstance(tokenizer, str):
        tokenizer = tokenizer.format(missing=tmp_path / "nope", file=tiny_bert_folder / "config.json")
    with pytest.raises(error, match=message):
        onnxport.export(tiny_bert_folder, tokenizer=tokenizer, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- texts

@pytest.mark.parametrize("texts, message", [
    ("one string", "pass a list of texts"),
    (b"bytes", "pass a list of texts"),
    (["fine", 3], "text #1 is int"),
    (["", "  ", "\n"], "empty or whitespace"),
    ([], "at least one text"),
    ({"a": 1}, "mapping"),
    (7, "not int"),
])
def test_texts_that_are_not_a_list_of_texts(tmp_path, tiny_bert_folder, tiny_artifact, texts, message):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=message):
        onnxport.export(tiny_bert_folder, out=out, texts=texts)
    assert not out.exists()
    with pytest.raises(InputError, match=message):
        onnxport.verify(tiny_artifact, texts=texts)
    assert onnxport.Artifact(tiny_artifact).verdict("model.onnx") == "passed"


def test_checked_texts_keeps_good_texts():
    assert checked_texts(("a", "", "b")) == ["a", "", "b"]
    assert checked_texts(text for text in ["x"]) == ["x"]


def test_texts_of_unknown_tokens_are_not_verified(tiny_artifact, tmp_path):
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("\n".join(UNKNOWN_TEXTS) + "\n")
    result = run("verify", tiny_artifact, "--texts", texts_file, "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "not verified" and not data["passed"]
    assert all(check["passed"] for check in data["checks"])  # PyTorch and ONNX agree... on [UNK]s
    assert "7 of the 7 tokens" in data["unverified_reason"] and "100%" in data["unverified_reason"]
    assert "model's language" in data["unverified_reason"]
    # The export's verdict, made with meaningful texts, stays.
    assert onnxport.Artifact(tiny_artifact).verdict("model.onnx") == "passed"


def test_mostly_known_texts_still_pass(tiny_artifact):
    report = onnxport.verify(tiny_artifact, texts=["the quick brown fox", UNKNOWN_TEXTS[0]], record=False)
    assert report.passed, report.failure_summary()


def test_texts_without_any_real_token_are_not_verified(tiny_artifact):
    report = onnxport.verify(tiny_artifact, texts=["\u200b", "\u200b\u200b"], record=False)
    assert report.verdict == "not verified"
    assert "no tokens besides special ones" in report.unverified_reason


def test_export_with_unknown_texts_says_why_it_is_not_verified(tmp_path, tiny_bert_folder):
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("\n".join(UNKNOWN_TEXTS) + "\n")
    out = tmp_path / "out"
    result = run("export", "--model", tiny_bert_folder, "-o", out, "--texts", texts_file)
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert "could not be verified" in line and "unknown token" in line and "100%" in line, line
    assert "does not match" not in line
    assert onnxport.Artifact(out).verdict("model.onnx") == "not verified"


def test_unknown_token_id_of_each_tokenizer_model(tmp_path, minilm_path):
    from tokenizers import Tokenizer, models

    assert unknown_token_id(minilm_path / "tokenizer.json") == 100  # WordPiece [UNK]
    unigram = tmp_path / "unigram.json"
    Tokenizer(models.Unigram([("<pad>", 0.0), ("<unk>", 0.0), ("a", -1.0)], unk_id=1, byte_fallback=False)
              ).save(str(unigram))
    assert unknown_token_id(unigram) == 1
    byte_bpe = tmp_path / "bpe.json"
    Tokenizer(models.BPE()).save(str(byte_bpe))
    assert unknown_token_id(byte_bpe) is None  # byte-level BPE has no unknown token


def test_unknown_share_threshold(tiny_artifact):
    encoder = TextEncoder.for_artifact(onnxport.Artifact(tiny_artifact))
    assert unknown_token_problem(encoder, ["hello world"], tiny_artifact) is None
    # Exactly half unknown (2 of 4) is still allowed; more than half is not.
    assert unknown_token_problem(encoder, ["hello world", UNKNOWN_TEXTS[0]], tiny_artifact) is None
    problem = unknown_token_problem(encoder, ["hello " + UNKNOWN_TEXTS[1] + " " + UNKNOWN_TEXTS[2]], tiny_artifact)
    assert problem is not None and "4 of the 5 tokens" in problem and "80%" in problem


# ---------------------------------------------------------------- NaN and inf

@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_nan_or_inf_outputs_fail_and_say_so(tmp_path, tiny_bert_folder, wordpiece_tokenizer, kind):
    import torch
    from transformers import AutoModel

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = AutoModel.from_pretrained(tiny_bert_folder)

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]
            return torch.log(hidden - 1e6) if kind == "nan" else hidden.abs() / 0.0

    out = tmp_path / "out"
    with pytest.raises(ParityError, match="NaN or inf"):
        onnxport.export(Broken().eval(), tokenizer=wordpiece_tokenizer, out=out)
    report = onnxport.Artifact(out).files["model.onnx"]["verification"]
    parity = [check for check in report["checks"] if check["name"].startswith("pytorch parity")]
    assert parity and not any(check["passed"] for check in parity)
    assert all(check["note"] == "the file and the reference output NaN or inf" for check in parity)
    assert onnxport.Artifact(out).verdict("model.onnx") == "failed"


# ---------------------------------------------------------------- damaged files

def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "config-garbage": ("config.json", lambda p: p.write_text("not json {"), ["not valid JSON", "save the model again"]),
    "config-truncated": ("config.json", _cut, ["not valid JSON", "save the model again"]),
    "config-a-list": ("config.json", lambda p: p.write_text("[1, 2]"), ["holds a JSON list, not an object"]),
    "weights-truncated": ("model.safetensors", _cut, ["not a readable safetensors file", "again"]),
    "weights-garbage": ("model.safetensors", lambda p: p.write_bytes(b"\x07garbage" * 40),
                        ["not a readable safetensors file", "again"]),
    "weights-empty": ("model.safetensors", lambda p: p.write_bytes(b""), ["not a readable safetensors file"]),
    "tokenizer-truncated": ("tokenizer.json", _cut, ["not valid JSON", "save the tokenizer again"]),
    "tokenizer-config-garbage": ("tokenizer_config.json", lambda p: p.write_text("{'a': 1}"),
                                 ["not valid JSON", "save the tokenizer again"]),
    "modules-garbage": ("modules.json", lambda p: p.write_text("[{"), ["not valid JSON", "SentenceTransformer.save"]),
    "modules-not-a-list": ("modules.json", lambda p: p.write_text('{"type": "Pooling"}'),
                           ["holds a JSON dict, not a list", "SentenceTransformer.save"]),
    "modules-entry-without-type": ("modules.json", lambda p: p.write_text('[{"path": ""}]'),
                                   ["module #0", "SentenceTransformer.save"]),
    "pooling-truncated": ("1_Pooling/config.json", _cut, ["not valid JSON", "SentenceTransformer.save"]),
    "pooling-missing": ("1_Pooling/config.json", lambda p: p.unlink(), ["is missing", "SentenceTransformer.save"]),
    "st-config-garbage": ("sentence_bert_config.json", lambda p: p.write_text("max_seq_length=32"),
                          ["not valid JSON", "SentenceTransformer.save"]),
    "st-config-bad-length": ("sentence_bert_config.json", lambda p: p.write_text('{"max_seq_length": "long"}'),
                             ["max_seq_length 'long'", "positive integer"]),
}


def test_the_undamaged_sentence_transformers_folder_exports(tmp_path, tiny_st_folder):
    artifact = onnxport.export(tiny_st_folder, out=tmp_path / "out", verify=False)
    assert artifact.task is onnxport.Task.SENTENCE_EMBEDDING and artifact.spec.max_length == 32


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_source_file(tmp_path, tiny_st_folder, damage):
    name, spoil, phrases = DAMAGE[damage]
    spoil(tiny_st_folder / name)
    out = tmp_path / "out"
    assert_clean_failure(run("export", "--model", tiny_st_folder, "-o", out), out,
                         str(tiny_st_folder / name), *phrases)


def test_weights_that_do_not_cover_the_model(tmp_path, tiny_bert_folder):
    """A config claiming a token classifier over base-model weights: the head would be random."""
    folder = tmp_path / "headless"
    shutil.copytree(tiny_bert_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(architectures=["BertForTokenClassification"], id2label={"0": "O", "1": "B-X"},
                  label2id={"O": 0, "B-X": 1})
    (folder / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert_clean_failure(run("export", "--model", folder, "-o", out), out,
                         str(folder), "lack 2 of the model's tensors", "classifier", "random")


# ---------------------------------------------------------------- remote code

@pytest.mark.parametrize("model_type", ["onnxport-test-custom", "bert"])
def test_a_model_that_needs_its_own_code(tmp_path, tiny_bert_folder, model_type):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_bert_folder, folder)
    marker = tmp_path / "code-ran"
    # Would leave a marker if anything imported it; nothing may.
    (folder / "modeling_custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (folder / "configuration_custom.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, architectures=["CustomModel"],
                  auto_map={"AutoConfig": "configuration_custom.CustomConfig", "AutoModel": "modeling_custom.CustomModel"})
    (folder / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert_clean_failure(run("export", "--model", folder, "-o", out), out,
                         str(folder), "AutoModel -> modeling_custom.CustomModel", "--trust-remote-code",
                         "trust_remote_code=True", "runs on this machine")
    with pytest.raises(ModelLoadError, match="trust_remote_code=True"):
        onnxport.export(folder, out=out)
    assert not marker.exists()


def test_a_tokenizer_that_needs_its_own_code(tmp_path, tiny_bert_folder):
    folder = tmp_path / "custom-tokenizer"
    shutil.copytree(tiny_bert_folder, folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings["auto_map"] = {"AutoTokenizer": ["tokenization_custom.CustomTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    out = tmp_path / "out"
    assert_clean_failure(run("export", "--model", folder, "-o", out), out,
                         "tokenizer_config.json auto_map", "--trust-remote-code")


# ---------------------------------------------------------------- opset advice

@pytest.mark.parametrize("args, phrases, absent", [
    # Above what onnxruntime 1.22 runs (23): the advice is what TorchScript writes (20), not 23.
    (["--target-ort", "1.22", "--opset", "24"], ["opset 24", "newest is opset 23", "--opset 20 or lower"],
     ["--opset 23", "newer --target-ort"]),
    (["--target-ort", "1.14", "--opset", "19"], ["opset 19", "1.14", "--opset 18 or lower", "newer --target-ort"],
     []),
    (["--target-ort", "1.22", "--opset", "22"], ["writes at most opset 20", "--opset 20 or lower",
                                                 "--exporter dynamo"], []),
    (["--target-ort", "1.22", "--opset", "12"], ["opset 12 is too old", "--opset 14 to 20"], []),
    (["--target-ort", "1.5"], ["runs at most opset 12", "need opset 14", "--target-ort 1.8"], []),
])
def test_opset_advice_names_an_opset_the_exporter_writes(tmp_path, tiny_bert_folder, args, phrases, absent):
    out = tmp_path / "out"
    line = assert_clean_failure(run("export", "--model", tiny_bert_folder, *args, "-o", out), out, *phrases)
    for phrase in absent:
        assert phrase not in line, line
