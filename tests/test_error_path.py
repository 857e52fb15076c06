"""One error path (issue 14): every user mistake, in the CLI or the API, is an onnxport.errors
exception; the CLI prints one `error:` line, exits 2 (1 for a failed check, 3 for a bug, 130
for Ctrl-C) and leaves nothing half-written: no new files, no empty folders, the artifact's
files byte-identical."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import onnxport
from onnxport.core.artifact import staging_dir
from onnxport.errors import ArtifactError, InputError, NotForThisTask, OnnxportError
from onnxport.tools.cli import main


def run_cli(*args, env=None):
    # catch_exceptions=False: an unexpected exception fails the test with its traceback.
    return CliRunner(env={"COLUMNS": "400", **(env or {})}).invoke(main, [str(a) for a in args],
                                                                   catch_exceptions=False)


def snapshot(root: Path) -> dict[str, str]:
    """Every file (its sha256) and folder under `root`."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            for path in sorted(root.rglob("*"))}


def error_line(result, *must_mention: str) -> str:
    """The one `error:` line on stderr, which names the problem; no traceback anywhere."""
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for text in must_mention:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv("ONNXPORT_DEBUG", raising=False)


@pytest.fixture
def artifact(tmp_path, minilm_artifact) -> Path:
    """A copy of the MiniLM artifact that a test may damage."""
    return Path(shutil.copytree(minilm_artifact, tmp_path / "artifact"))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(4096))


# ------------------------------------------------------------------ CLI: bad input, exit 2

def _binary(tmp: Path, name: str = "texts.txt") -> Path:
    (tmp / name).write_bytes(b"hello\n\x00\x01\x02\xff binary\n")
    return tmp / name


def _latin1(tmp: Path, name: str = "texts.jsonl") -> Path:
    (tmp / name).write_bytes('{"text": "café"}\n'.encode("latin-1"))
    return tmp / name


def _folder(tmp: Path) -> Path:
    (tmp / "folder").mkdir()
    return tmp / "folder"


def _file(tmp: Path, name: str, content: str) -> Path:
    (tmp / name).write_text(content, encoding="utf-8")
    return tmp / name


def on_model(damage):
    return lambda artifact: damage(artifact / "model.onnx")


def delete(name: str):
    return lambda artifact: (artifact / name).unlink()


def overwrite(name: str, content: bytes):
    return lambda artifact: (artifact / name).write_bytes(content)


# (id, how to damage the artifact, args from (tmp_path, artifact), words the error line must hold)
CLI_CASES = [
    ("embed-binary-input", None, lambda t, a: ["embed", a, _binary(t)], ["texts.txt", "not a text file"]),
    ("embed-folder-input", None, lambda t, a: ["embed", a, str(_folder(t)) + "/"], ["folder/", "is a directory"]),
    ("ner-undecodable-input", None, lambda t, a: ["ner", a, _latin1(t)], ["texts.jsonl", "not valid UTF-8"]),
    ("verify-binary-texts", None, lambda t, a: ["verify", a, "--texts", _binary(t, "t.bin")],
     ["t.bin", "not a text file"]),
    ("verify-folder-texts", None, lambda t, a: ["verify", a, "--texts", _folder(t)], ["folder", "is a directory"]),
    ("export-undecodable-texts", None, lambda t, a: ["export", "-o", t / "new" / "out", "--texts", _latin1(t)],
     ["texts.jsonl", "not valid UTF-8"]),
    ("embed-output-in-missing-folder", None, lambda t, a: ["embed", a, "hi", "-o", t / "nope" / "out.jsonl"],
     ["nope", "does not exist"]),
    ("embed-batch-size-0", None, lambda t, a: ["embed", a, "hi", "--batch-size", "0"], ["batch_size", "at least 1"]),
    ("classify-on-embedder", None, lambda t, a: ["classify", a, "hi"], ["sentence-embedding", "classify"]),
    ("inspect-truncated", on_model(truncate), lambda t, a: ["inspect", a], ["model.onnx", "damaged or not an ONNX file"]),
    ("inspect-garbage-file", on_model(garbage), lambda t, a: ["inspect", a / "model.onnx"],
     ["model.onnx", "damaged or not an ONNX file", "re-export"]),
    ("verify-truncated", on_model(truncate), lambda t, a: ["verify", a], ["model.onnx", "damaged or not an ONNX file"]),
    ("optimize-garbage", on_model(garbage), lambda t, a: ["optimize", a], ["model.onnx", "damaged or not an ONNX file"]),
    ("quantize-truncated", on_model(truncate), lambda t, a: ["quantize", a], ["model.onnx", "damaged or not an ONNX file"]),
    ("embed-fp32-garbage", on_model(garbage), lambda t, a: ["embed", a, "--model", "fp32", "hi"],
     ["model.onnx", "damaged or not an ONNX file"]),
    # export: every refusal comes before the model is exported
    ("export-missing-model", None, lambda t, a: ["export", "-m", t / "nope", "-o", t / "out"],
     ["nope", "does not exist"]),
    ("export-model-is-a-file", None, lambda t, a: ["export", "-m", a / "config.json", "-o", t / "out"],
     ["config.json", "is a file"]),
    ("export-out-is-a-file", None, lambda t, a: ["export", "-o", a / "config.json"], ["config.json", "is a file"]),
    ("export-out-not-empty", None, lambda t, a: ["export", "-o", a], ["not empty", "--force"]),
    ("export-out-under-a-file", None, lambda t, a: ["export", "-o", a / "config.json" / "out"],
     ["config.json", "not a directory"]),
    ("export-missing-texts", None, lambda t, a: ["export", "-o", t / "out", "--texts", t / "missing.txt"],
     ["missing.txt", "does not exist"]),
    ("export-opset-too-old", None, lambda t, a: ["export", "-o", t / "out", "--opset", "9"], ["opset 9", "too old"]),
    ("export-output-names-not-custom", None,
     lambda t, a: ["export", "-o", t / "out", "--output-names", "a,b", "--no-verify"], ["--output-names", "custom"]),
    ("export-pooling-for-feature-extraction", None,
     lambda t, a: ["export", "-o", t / "out", "--task", "feature-extraction", "--pooling", "cls"],
     ["--pooling", "sentence-embedding"]),
    # verify
    ("verify-missing-artifact", None, lambda t, a: ["verify", t / "nope"], ["nope", "does not exist"]),
    ("verify-folder-not-an-artifact", None, lambda t, a: ["verify", _folder(t)], ["onnxport.json", "not an onnxport"]),
    ("verify-file-not-an-artifact", None, lambda t, a: ["verify", a / "config.json"], ["config.json", "is a file"]),
    ("verify-missing-model-file", None, lambda t, a: ["verify", a, "--model-file", "model.int8.onnx"],
     ["model.int8.onnx", "missing"]),
    ("verify-corrupt-manifest", overwrite("onnxport.json", b'{"spec": '), lambda t, a: ["verify", a],
     ["onnxport.json", "corrupt"]),
    ("verify-missing-texts", None, lambda t, a: ["verify", a, "--texts", t / "missing.txt"],
     ["missing.txt", "does not exist"]),
    ("verify-blank-texts", None, lambda t, a: ["verify", a, "--texts", _file(t, "blank.txt", "\n  \n")],
     ["blank.txt"]),
    ("verify-missing-reference", None, lambda t, a: ["verify", a, "--reference", t / "gone"], ["gone"]),
    # inspect
    ("inspect-missing", None, lambda t, a: ["inspect", t / "nope.onnx"], ["nope.onnx", "does not exist"]),
    ("inspect-not-onnx", None, lambda t, a: ["inspect", a / "tokenizer.json"], ["tokenizer.json", "not an .onnx"]),
    ("inspect-corrupt-manifest", overwrite("onnxport.json", b"[1, 2"), lambda t, a: ["inspect", a],
     ["onnxport.json", "corrupt"]),
    ("inspect-hierarchy-of-untagged-file", None, lambda t, a: ["inspect", _file(t, "x.onnx", "junk"), "--hierarchy"],
     ["x.onnx"]),
    # optimize / quantize / profile / bench
    ("optimize-missing-config", delete("config.json"), lambda t, a: ["optimize", a], ["config.json", "missing"]),
    ("optimize-not-an-artifact", None, lambda t, a: ["optimize", _folder(t)], ["onnxport.json"]),
    ("quantize-missing-input-file", None, lambda t, a: ["quantize", a, "--input-file", "model.opt.onnx"],
     ["model.opt.onnx", "missing"]),
    ("quantize-one-text", None, lambda t, a: ["quantize", a, "--texts", _file(t, "one.txt", "only one\n")],
     ["at least 2 texts"]),
    ("quantize-missing-texts", None, lambda t, a: ["quantize", a, "--texts", t / "missing.txt"],
     ["missing.txt", "does not exist"]),
    ("profile-missing-int8", None, lambda t, a: ["profile", a, "--model", "int8"], ["model.int8.onnx"]),
    ("profile-missing-artifact", None, lambda t, a: ["profile", t / "nope"], ["nope", "does not exist"]),
    ("bench-missing-artifact", None, lambda t, a: ["bench", t / "nope", "-o", t / "report"],
     ["nope", "does not exist"]),
    ("bench-missing-texts", None, lambda t, a: ["bench", a, "--texts", t / "missing.txt", "-o", t / "report"],
     ["missing.txt"]),
    # embed / ner / classify
    ("embed-missing-artifact", None, lambda t, a: ["embed", t / "nope", "hi"], ["nope", "does not exist"]),
    ("ner-on-embedder", None, lambda t, a: ["ner", a, "hi"], ["sentence-embedding", "ner"]),
    ("embed-empty-file", None, lambda t, a: ["embed", a, _file(t, "empty.txt", "")], ["empty.txt"]),
    ("embed-jsonl-missing-field", None, lambda t, a: ["embed", a, _file(t, "rows.jsonl", '{"body": "x"}\n')],
     ["rows.jsonl", "text"]),
    ("embed-jsonl-not-json", None, lambda t, a: ["embed", a, _file(t, "rows.jsonl", '{"text": "x"\n')],
     ["rows.jsonl", "line 1"]),
    ("embed-jsonl-text-not-a-string", None, lambda t, a: ["embed", a, _file(t, "rows.jsonl", '{"text": 5}\n')],
     ["rows.jsonl", "line 1"]),
    ("embed-csv-missing-column", None, lambda t, a: ["embed", a, _file(t, "rows.csv", "body\nx\n")],
     ["rows.csv", "text"]),
    ("embed-output-unknown-suffix", None, lambda t, a: ["embed", a, "hi", "-o", t / "out.xyz"], ["out.xyz"]),
    ("embed-output-is-a-folder", None, lambda t, a: ["embed", a, "hi", "-o", _folder(t)], ["folder", "directory"]),
    ("embed-missing-int8", None, lambda t, a: ["embed", a, "hi", "--model", "int8"],
     ["model.int8.onnx", "onnxport quantize"]),
    ("embed-deleted-tokenizer", delete("tokenizer.json"), lambda t, a: ["embed", a, "hi"], ["tokenizer.json"]),
    ("embed-corrupt-tokenizer", overwrite("tokenizer.json", b"{not json"), lambda t, a: ["embed", a, "hi"],
     ["tokenizer.json"]),
]

# click's own refusals: a bad option value is one `Error:` line naming the option, exit 2.
USAGE_CASES = [
    ("export-negative-atol", ["export", "-o", "x", "--atol", "-1"], "--atol"),
    ("verify-negative-atol", ["verify", "x", "--atol", "-1"], "--atol"),
    ("export-bad-static-shape", ["export", "-o", "x", "--static-shape", "1x2"], "BATCH,SEQUENCE"),
    ("export-unknown-task", ["export", "-o", "x", "--task", "translation"], "--task"),
    ("export-missing-out", ["export"], "--out"),
    ("inspect-depth-without-hierarchy", ["inspect", "x.onnx", "--depth", "2"], "--hierarchy"),
    ("quantize-unknown-target", ["quantize", "x", "--target", "bogus=1"], "bogus"),
    ("quantize-target-not-a-number", ["quantize", "x", "--target", "mean_cosine=high"], "METRIC=NUMBER"),
    ("bench-bad-batch-sizes", ["bench", "x", "--batch-sizes", "0,a"], "--batch-sizes"),
    ("profile-batch-size-0", ["profile", "x", "--batch-size", "0"], "--batch-size"),
    ("embed-unknown-model-kind", ["embed", "x", "hi", "--model", "bf17"], "--model"),
    ("optimize-unknown-level", ["optimize", "x", "--level", "turbo"], "--level"),
]


@pytest.mark.parametrize("args, mentions", [c[1:] for c in USAGE_CASES], ids=[c[0] for c in USAGE_CASES])
def test_cli_bad_option_value_is_a_usage_error(tmp_path, monkeypatch, args, mentions):
    monkeypatch.chdir(tmp_path)
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and mentions in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage, make_args, mentions", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_user_error_is_one_line_exit_2_and_writes_nothing(tmp_path, artifact, damage, make_args, mentions):
    if damage:
        damage(artifact)
    args = make_args(tmp_path, artifact)
    before = snapshot(tmp_path)
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    error_line(result, *mentions)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ CLI: OS errors, exit 2

def test_full_disk_while_writing_output_names_the_file(tmp_path, artifact, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "out.jsonl"
    before = snapshot(tmp_path)
    monkeypatch.setattr(os, "fsync", disk_full)
    result = run_cli("embed", artifact, "hello", "-o", out)
    assert result.exit_code == 2, result.output
    error_line(result, str(out), "No space left on device", "free some space")
    assert snapshot(tmp_path) == before  # no out.jsonl, no temp file beside it


def test_full_disk_during_export_leaves_no_out_and_no_parents(tmp_path, tiny_bert_folder, monkeypatch):
    from onnxport.convert import exporter

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(exporter, "_write_artifact_files", disk_full)
    out = tmp_path / "new" / "deep" / "out"
    result = run_cli("export", "-m", tiny_bert_folder, "-o", out, "--no-verify", "--no-hierarchy")
    assert result.exit_code == 2, result.output
    error_line(result, str(out), "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_read_only_output_folder(tmp_path, artifact, monkeypatch):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        (read_only / "probe").touch()
    except PermissionError:
        pass  # a normal user: the folder really is read-only
    else:  # root writes anyway: refuse the way the OS would, at the output's temp file
        (read_only / "probe").unlink()
        real_mkstemp = tempfile.mkstemp

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == read_only:
                raise PermissionError(errno.EACCES, "Permission denied", str(Path(dir) / ".out.jsonl.x.partial"))
            return real_mkstemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        before = snapshot(tmp_path)
        result = run_cli("embed", artifact, "hello", "-o", read_only / "out.jsonl")
        assert result.exit_code == 2, result.output
        line = error_line(result, str(read_only / "out.jsonl"))
        assert "not writable" in line or "Permission denied" in line
        assert snapshot(tmp_path) == before
    finally:
        read_only.chmod(0o755)


# ------------------------------------------------------------------ CLI: Ctrl-C and bugs

def test_ctrl_c_during_export_exits_130_and_leaves_nothing(tmp_path, tiny_bert_folder, monkeypatch):
    from onnxport.convert import exporter

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "finalize_graph", interrupt)
    result = run_cli("export", "-m", tiny_bert_folder, "-o", tmp_path / "a" / "b" / "out", "--no-verify")
    assert result.exit_code == 130, result.output
    assert result.stderr.splitlines()[-1] == "interrupted" and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # no half-written OUT, no empty a/b


def test_internal_error_exits_3_and_asks_for_a_report(artifact, monkeypatch):
    from onnxport.graph import inspection

    def bug(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(inspection, "inspect", bug)
    result = run_cli("inspect", artifact)
    assert result.exit_code == 3, result.output
    assert "internal error: RuntimeError: boom" in result.stderr and "second line" not in result.stderr
    assert "please report" in result.stderr and "--debug" in result.stderr
    assert "Traceback" not in result.output and "error:" not in result.stderr.replace("internal error:", "")
    # --debug (or ONNXPORT_DEBUG=1) re-raises it whole, so developers and tests see where it came from.
    with pytest.raises(RuntimeError, match="boom"):
        run_cli("--debug", "inspect", artifact)
    with pytest.raises(RuntimeError, match="boom"):
        run_cli("inspect", artifact, env={"ONNXPORT_DEBUG": "1"})


def test_click_usage_errors_keep_exit_2():
    assert run_cli("no-such-command").exit_code == 2
    assert run_cli("embed").exit_code == 2


def test_help_lists_the_exit_codes():
    result = run_cli("--help")
    assert result.exit_code == 0
    for code in ("0 ", "1 ", "2 ", "3 ", "130"):
        assert f"\n    {code}" in result.output, code
    assert "--debug" in result.output


# ------------------------------------------------------------------ Python API

@pytest.fixture(scope="module")
def pipelines(minilm_artifact, tmp_path_factory, tiny_token_classifier_folder, tiny_sequence_classifier_folder):
    folder = tmp_path_factory.mktemp("error-path")
    ner = onnxport.export(tiny_token_classifier_folder, out=folder / "ner", hierarchy=False, verify=False)
    classifier = onnxport.export(tiny_sequence_classifier_folder, out=folder / "cls", hierarchy=False, verify=False)
    return {"embedder": onnxport.load(minilm_artifact), "ner": onnxport.load(ner, model="fp32"),
            "classifier": onnxport.load(classifier, model="fp32")}


TEXTS = ["a text", "another"]
# (id, call on the pipelines dict, error class, words the message must hold)
API_CASES = [
    ("load-None", lambda p: onnxport.load(None), InputError, ["onnxport.load()", "NoneType"]),
    ("load-int", lambda p: onnxport.load(123), InputError, ["artifact directory", "int"]),
    ("inspect-None", lambda p: onnxport.inspect(None), InputError, [".onnx file or an artifact directory"]),
    ("verify-None", lambda p: onnxport.verify(None), InputError, ["onnxport.verify()"]),
    ("Artifact-int", lambda p: onnxport.Artifact(42), InputError, ["Artifact()", "str or pathlib.Path", "int"]),
    ("embed-None", lambda p: p["embedder"].embed(None), InputError, ["list of texts", "None"]),
    ("embed-int", lambda p: p["embedder"].embed(5), InputError, ["list of texts", "int"]),
    ("embed-one-string", lambda p: p["embedder"].embed("a text"), InputError, ["[text]"]),
    ("embed-non-str-item", lambda p: p["embedder"].embed(["a", 3]), InputError, ["text #1 is int"]),
    ("embed-batch-size-str", lambda p: p["embedder"].embed(TEXTS, batch_size="8"), InputError,
     ["batch_size", "whole number", "'8'"]),
    ("embed-batch-size-0", lambda p: p["embedder"].embed(TEXTS, batch_size=0), InputError,
     ["batch_size", "at least 1"]),
    ("classify-top-k-0", lambda p: p["classifier"].classify(TEXTS, top_k=0), InputError, ["top_k", "at least 1"]),
    ("classify-top-k-str", lambda p: p["classifier"].classify(TEXTS, top_k="x"), InputError, ["top_k", "'x'"]),
    ("extract-bogus-aggregation", lambda p: p["ner"].extract(TEXTS, aggregation="bogus"), InputError,
     ["bogus", "simple, first, max, average"]),
    ("extract-None", lambda p: p["ner"].extract(None), InputError, ["a text or a list of texts"]),
    ("embedder-extract", lambda p: p["embedder"].extract(TEXTS), NotForThisTask,
     ["extract()", "token-classification", "sentence-embedding", "embed()"]),
    ("ner-embed", lambda p: p["ner"].embed(TEXTS), NotForThisTask,
     ["embed()", "token-classification artifact", "extract()"]),
    ("classifier-embed", lambda p: p["classifier"].embed, NotForThisTask, ["embed()", "classify()"]),
    ("embed-mapping", lambda p: p["embedder"].embed({"a": "text"}), InputError, ["mapping", "list of texts"]),
    ("export-out-None", lambda p: onnxport.export(out=None), InputError, ["out must be a path", "None"]),
    ("export-opset-str", lambda p: onnxport.export(out="x", opset="17"), InputError, ["opset", "'17'"]),
    ("export-target-ort-float", lambda p: onnxport.export(out="x", target_ort=1.16), InputError,
     ["target_ort", "'1.16'"]),
    ("load-model-list", lambda p: onnxport.load(art_of(p), model=["fp32"]), InputError, ["unknown model", "fp32"]),
    ("load-threads-0", lambda p: onnxport.load(art_of(p), threads=0), InputError, ["threads", "at least 1"]),
    ("verify-model-file-None", lambda p: onnxport.verify(art_of(p), model_file=None), InputError,
     ["model_file", "'model.onnx'"]),
    ("verify-thresholds-list", lambda p: onnxport.verify(art_of(p), thresholds=[0.9]), InputError,
     ["thresholds", "mean_cosine"]),
    ("quantize-unknown-target", lambda p: onnxport.quantize(art_of(p), targets={"bogus": 1}), InputError,
     ["bogus", "mean_cosine"]),
    ("quantize-one-string", lambda p: onnxport.quantize(art_of(p), texts="two words"), InputError,
     ["one character at a time"]),
    ("quantize-isa-list", lambda p: onnxport.quantize(art_of(p), isa=["avx2"]), InputError, ["ISA", "avx2"]),
    ("optimize-level-None", lambda p: onnxport.optimize(art_of(p), level=None), InputError, ["level", "fused"]),
]


def art_of(pipelines) -> Path:
    """The (shared, read-only here) MiniLM artifact: every call above fails before writing."""
    return pipelines["embedder"].artifact.path


@pytest.mark.parametrize("call, error, mentions", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_arguments_raise_onnxport_errors(pipelines, call, error, mentions):
    with pytest.raises(error) as caught:
        call(pipelines)
    assert isinstance(caught.value, OnnxportError)
    for text in mentions:
        assert text in str(caught.value), (text, str(caught.value))


def test_a_verb_the_task_lacks_is_also_an_attribute_error(pipelines):
    assert not hasattr(pipelines["embedder"], "classify") and hasattr(pipelines["embedder"], "embed")
    assert not hasattr(pipelines["classifier"], "extract") and hasattr(pipelines["ner"], "extract")
    with pytest.raises(AttributeError) as caught:
        pipelines["ner"].no_such_thing  # noqa: B018
    assert not isinstance(caught.value, OnnxportError)  # only the known verbs get the task message


@pytest.mark.parametrize("damage", [truncate, garbage])
@pytest.mark.parametrize("verb", ["load", "inspect", "verify"])
def test_api_damaged_model_file_is_an_artifact_error(artifact, damage, verb):
    damage(artifact / "model.onnx")
    before = snapshot(artifact)
    call = {"load": lambda: onnxport.load(artifact, model="fp32"), "inspect": lambda: onnxport.inspect(artifact),
            "verify": lambda: onnxport.verify(artifact)}[verb]
    with warnings.catch_warnings(), pytest.raises(ArtifactError) as caught:
        warnings.simplefilter("ignore")  # load() may warn that the file changed since it was verified
        call()
    assert str(caught.value).startswith(f"{artifact / 'model.onnx'} is damaged or not an ONNX file (")
    assert str(caught.value).endswith("re-export the artifact")
    assert snapshot(artifact) == before


# ------------------------------------------------------------------ staging_dir

def test_staging_dir_removes_only_the_parents_it_created(tmp_path):
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "file").write_text("x")
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)):
            with staging_dir(tmp_path / "kept" / "new" / "deeper" / "out", force=False) as staging:
                (staging / "model.onnx").write_bytes(b"half")
                raise error
        assert snapshot(tmp_path) == {"kept": "dir", "kept/file": hashlib.sha256(b"x").hexdigest()}


def test_staging_dir_keeps_the_old_out_when_the_final_move_fails(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"old")
    real_replace = os.replace

    def failing_replace(src, dst):
        if ".partial-" in str(src):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError) as caught:
        with staging_dir(out, force=True) as staging:
            (staging / "model.onnx").write_bytes(b"new")
    assert caught.value.filename == str(out)  # a write error without a path gets OUT's
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "model.onnx").read_bytes() == b"old"
