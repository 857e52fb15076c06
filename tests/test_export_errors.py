"""Bad input to `onnxport export`: a clear one-line message, exit code 2, no OUT left."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from onnxport.tools.cli import main


def run_export(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)], catch_exceptions=False)


def assert_clean_failure(result, out, *phrases):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "error:" in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output
    assert not out.exists() or not any(out.iterdir())
    leftovers = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert leftovers == []


def test_missing_path(tmp_path):
    out = tmp_path / "out"
    assert_clean_failure(run_export("--model", tmp_path / "nope", "-o", out), out, "does not exist")


def test_folder_without_weights(tmp_path, tiny_bert_folder):
    folder = tmp_path / "no-weights"
    shutil.copytree(tiny_bert_folder, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    out = tmp_path / "out"
    assert_clean_failure(run_export("--model", folder, "-o", out), out, "no weights")


def test_folder_without_config(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    out = tmp_path / "out"
    assert_clean_failure(run_export("--model", folder, "-o", out), out, "config.json")


def test_unknown_task_for_the_model(tmp_path, tiny_bert_folder):
    out = tmp_path / "out"
    result = run_export("--model", tiny_bert_folder, "--task", "token-classification", "-o", out)
    assert_clean_failure(result, out, "token-classification", "head")


def test_task_name_that_does_not_exist(tmp_path, tiny_bert_folder):
    out = tmp_path / "out"
    result = run_export("--model", tiny_bert_folder, "--task", "translation", "-o", out)
    assert result.exit_code == 2 and "translation" in result.output
    assert not out.exists()


def test_opset_above_target_ort(tmp_path, tiny_bert_folder):
    out = tmp_path / "out"
    result = run_export("--model", tiny_bert_folder, "--target-ort", "1.14", "--opset", "19", "-o", out)
    assert_clean_failure(result, out, "opset 19", "1.14", "opset 18")


def test_pickle_weights_need_allow_pickle(tmp_path, tiny_bert_folder):
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_bert_folder, folder)
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    out = tmp_path / "out"
    assert_clean_failure(run_export("--model", folder, "-o", out), out, "pickle", "--allow-pickle")
    # With the flag it exports and verifies.
    result = run_export("--model", folder, "-o", out, "--allow-pickle")
    assert result.exit_code == 0, result.output


def test_out_exists_and_is_not_empty(tmp_path, tiny_bert_folder):
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "keep.txt"
    keep.write_text("mine")
    result = run_export("--model", tiny_bert_folder, "-o", out)
    assert result.exit_code == 2 and "--force" in result.output
    assert keep.read_text() == "mine"
    result = run_export("--model", tiny_bert_folder, "-o", out, "--force", "--no-verify")
    assert result.exit_code == 0, result.output
    assert not keep.exists() and (out / "model.onnx").exists()


def test_hub_id_not_in_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    out = tmp_path / "out"
    result = run_export("--model", "someone/not-cached-model", "-o", out)
    assert_clean_failure(result, out, "not-cached-model", "never downloads")


def test_bad_static_shape(tmp_path, tiny_bert_folder):
    out = tmp_path / "out"
    result = run_export("--model", tiny_bert_folder, "--static-shape", "two", "-o", out)
    assert result.exit_code == 2 and "BATCH,SEQUENCE" in result.output


@pytest.mark.parametrize("flag", [["--pooling", "cls"], ["--normalize"]])
def test_pooling_options_need_sentence_embedding(tmp_path, tiny_bert_folder, flag):
    out = tmp_path / "out"
    result = run_export("--model", tiny_bert_folder, "--task", "feature-extraction", *flag, "-o", out)
    assert_clean_failure(result, out, "sentence-embedding")
