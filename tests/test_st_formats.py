"""Every sentence-transformers folder format exports and embeds exactly as sentence-transformers
encodes it.

The folders are written by the installed sentence-transformers itself (`SentenceTransformer.save`,
the v6 format). The older formats are the same folders rewritten file by file into the layout
v2-v5 wrote (module paths `sentence_transformers.models.*`, one boolean flag per pooling mode,
`max_seq_length` / `do_lower_case` in sentence_bert_config.json, Dense weights pickled as
pytorch_model.bin); the installed sentence-transformers reads those too, and its `encode` on
each folder is the reference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import onnxport

from conftest import tiny_bert_config

TEXTS = [
    "A man is eating food.",
    "Hello World, THIS Text Has Capitals In It.",
    "short",
    "The quick brown fox jumps over the lazy dog near the river bank while the sun sets slowly "
    "behind the old mill, and the long sentence goes on past the model's limit on purpose.",
    "Paris is the capital of France.",
    "query-like text: what is the boiling point of water at sea level?",
]
_LEGACY_PATHS = {"Transformer": "sentence_transformers.models.Transformer",
                 "Pooling": "sentence_transformers.models.Pooling",
                 "Dense": "sentence_transformers.models.Dense",
                 "Normalize": "sentence_transformers.models.Normalize"}
_LEGACY_FLAGS = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
                 "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                 "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}


@pytest.fixture(scope="module")
def cased_bert_folder(tmp_path_factory, minilm_path) -> Path:
    """A tiny random BERT whose tokenizer does NOT lowercase (the vocabulary is lowercase, so
    a capitalised word is [UNK] unless something lowercases it first)."""
    import torch
    from transformers import BertModel, BertTokenizerFast

    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("cased-bert")
    BertModel(tiny_bert_config()).eval().save_pretrained(folder)
    tokenizer = BertTokenizerFast(str(minilm_path / "vocab.txt"), do_lower_case=False, model_max_length=64)
    tokenizer.save_pretrained(folder)
    return folder


def _save_st(folder: Path, transformer_dir: Path, *, pooling="mean", dense=False, normalize=False,
             max_seq_length=None, prompts=None, default_prompt_name=None, include_prompt=True,
             do_lower_case=False) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer, models

    torch.manual_seed(11)
    transformer = models.Transformer(str(transformer_dir), max_seq_length=max_seq_length, do_lower_case=do_lower_case)
    dimension = transformer.get_word_embedding_dimension()
    modules = [transformer, models.Pooling(dimension, pooling_mode=pooling, include_prompt=include_prompt)]
    if dense:
        modules.append(models.Dense(modules[-1].get_sentence_embedding_dimension(), 24))
    if normalize:
        modules.append(models.Normalize())
    SentenceTransformer(modules=modules, prompts=prompts, default_prompt_name=default_prompt_name,
                        device="cpu").save(str(folder))
    return folder


def _rewrite_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    data = change(data) or data
    path.write_text(json.dumps(data, indent=2))


def _as_legacy(folder: Path, *, version: str, max_seq_length: int | None, do_lower_case: bool = False) -> Path:
    """Rewrite a v6 folder into the layout sentence-transformers `version` (2.x-5.x) wrote."""
    modules = json.loads((folder / "modules.json").read_text())
    for entry in modules:
        kind = entry["type"].rsplit(".", 1)[-1]
        entry["type"] = _LEGACY_PATHS[kind]
        module_dir = folder / entry["path"]
        if kind == "Pooling":
            def flags(config):
                mode = config.pop("pooling_mode")
                result = {"word_embedding_dimension": config.pop("embedding_dimension")}
                result.update({flag: name == mode for name, flag in _LEGACY_FLAGS.items()})
                if version.startswith("2.2"):  # before weightedmean/lasttoken/include_prompt existed
                    for name in ("weightedmean", "lasttoken"):
                        result.pop(_LEGACY_FLAGS[name])
                else:
                    result["include_prompt"] = config.get("include_prompt", True)
                return result
            _rewrite_json(module_dir / "config.json", flags)
        elif kind == "Dense":
            _rewrite_json(module_dir / "config.json",
                          lambda c: {k: c[k] for k in ("in_features", "out_features", "bias", "activation_function")})
            if version.startswith("2"):  # v2 pickled the Dense weights
                import torch
                from safetensors.torch import load_file

                torch.save(load_file(str(module_dir / "model.safetensors")), module_dir / "pytorch_model.bin")
                (module_dir / "model.safetensors").unlink()
        elif kind == "Normalize":
            shutil.rmtree(module_dir, ignore_errors=True)
            module_dir.mkdir()
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    bert_config = {"do_lower_case": do_lower_case}
    if max_seq_length is not None:
        bert_config["max_seq_length"] = max_seq_length
    (folder / "sentence_bert_config.json").write_text(json.dumps(bert_config))

    def versioned(config):
        config["__version__"] = {"sentence_transformers": version, "transformers": "4.41.2", "pytorch": "2.3.0"}
        config.pop("model_type", None)
        if version.startswith("2.2"):
            config.pop("prompts", None)
            config.pop("default_prompt_name", None)
            config.pop("similarity_fn_name", None)
    _rewrite_json(folder / "config_sentence_transformers.json", versioned)
    return folder


def _exported_equals_sentence_transformers(folder: Path, out: Path, *, allow_pickle=False, atol=1e-5):
    import onnxport
    from sentence_transformers import SentenceTransformer

    artifact = onnxport.export(folder, out=out, allow_pickle=allow_pickle)
    report = artifact.manifest["files"]["model.onnx"]["verification"]
    assert report["verdict"] == "passed"
    assert "sentence-transformers encode" in {c["name"] for c in report["checks"]}
    expected = SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    got = onnxport.load(out, model="fp32").embed(TEXTS)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0)
    return artifact


@pytest.mark.parametrize("pooling", ["mean", "max", "cls", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"])
def test_every_pooling_mode_of_a_v6_folder(tmp_path, tiny_bert_folder, pooling):
    folder = _save_st(tmp_path / "st", tiny_bert_folder, pooling=pooling)
    assert json.loads((folder / "1_Pooling" / "config.json").read_text())["pooling_mode"] == pooling
    artifact = _exported_equals_sentence_transformers(folder, tmp_path / "out")
    assert artifact.manifest["source"]["sentence_transformers"]["saved_by"] is not None


def test_v6_folder_with_dense_normalize_and_a_default_prompt(tmp_path, tiny_bert_folder):
    folder = _save_st(tmp_path / "st", tiny_bert_folder, pooling="max", dense=True, normalize=True,
                      max_seq_length=24, prompts={"query": "query: ", "passage": "passage: "},
                      default_prompt_name="query")
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    artifact = _exported_equals_sentence_transformers(folder, tmp_path / "out")
    assert artifact.default_prompt == "query: "
    assert artifact.manifest["spec"]["max_length"] == 24
    vectors = artifact and __import__("onnxport").load(tmp_path / "out").embed(TEXTS)
    assert vectors.shape[1] == 24 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("version,pooling,dense", [("2.2.2", "mean", True), ("2.7.0", "weightedmean", False),
                                                   ("3.4.1", "lasttoken", True), ("5.1.0", "cls", False)])
def test_legacy_folder_layouts(tmp_path, tiny_bert_folder, version, pooling, dense):
    folder = _save_st(tmp_path / "st", tiny_bert_folder, pooling=pooling, dense=dense, normalize=True,
                      prompts={"query": "query: "} if not version.startswith("2.2") else None)
    _as_legacy(folder, version=version, max_seq_length=20)
    pooling_config = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert "pooling_mode" not in pooling_config and pooling_config[_LEGACY_FLAGS[pooling]] is True
    pickled = version.startswith("2") and dense
    if pickled:
        import onnxport
        from onnxport.errors import ModelLoadError

        with pytest.raises(ModelLoadError, match="pickle.*--allow-pickle"):
            onnxport.export(folder, out=tmp_path / "refused")
        assert not (tmp_path / "refused").exists()
    artifact = _exported_equals_sentence_transformers(folder, tmp_path / "out", allow_pickle=pickled)
    assert artifact.manifest["spec"]["max_length"] == 20  # sentence_bert_config's, not the tokenizer's 64


def test_do_lower_case_lowercases_like_sentence_transformers(tmp_path, cased_bert_folder):
    folder = _save_st(tmp_path / "st", cased_bert_folder)
    _as_legacy(folder, version="2.2.2", max_seq_length=32, do_lower_case=True)
    _exported_equals_sentence_transformers(folder, tmp_path / "out")
    # Without the lowercasing, "Hello" would be [UNK] for this lowercase vocabulary.
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    assert "[UNK]" not in tokenizer.encode("Hello World").tokens


def _cli(*args):
    from click.testing import CliRunner

    from onnxport.tools.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("change,message", [
    (lambda f: _rewrite_json(f / "1_Pooling" / "config.json", lambda c: {**c, "pooling_mode": ["cls", "mean"]}),
     "several pooling modes concatenated"),
    (lambda f: _rewrite_json(f / "1_Pooling" / "config.json", lambda c: {**c, "pooling_mode": "median"}),
     "unknown"),
    (lambda f: _rewrite_json(f / "config_sentence_transformers.json", lambda c: {**c, "model_type": "SparseEncoder"}),
     "SparseEncoder"),
    (lambda f: _rewrite_json(f / "config_sentence_transformers.json",
                             lambda c: {**c, "prompts": {"query": "q: "}, "default_prompt_name": "passage"}),
     "default_prompt_name 'passage' is not one of the prompts"),
    (lambda f: _rewrite_json(f / "modules.json",
                             lambda m: m + [{"idx": 2, "name": "2", "path": "", "type": "x.Router"}]),
     "x.Router .* not supported"),
])
def test_folders_onnxport_cannot_reproduce_are_refused(tmp_path, tiny_bert_folder, change, message):
    folder = _save_st(tmp_path / "st", tiny_bert_folder)
    change(folder)
    result = _cli("export", "-m", folder, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert __import__("re").search(message, result.output.replace("\n", " ")), result.output
    assert not (tmp_path / "out").exists()


def test_a_default_prompt_excluded_from_pooling_is_refused(tmp_path, tiny_bert_folder):
    folder = _save_st(tmp_path / "st", tiny_bert_folder, prompts={"query": "query: "}, default_prompt_name="query",
                      include_prompt=False)
    result = _cli("export", "-m", folder, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "include_prompt" in result.output, result.output
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- prompts and dimensions at run time

@pytest.fixture(scope="module")
def prompted_export(tmp_path_factory, tiny_bert_folder):
    """An ST folder with a query and a passage prompt and no default, exported once."""
    root = tmp_path_factory.mktemp("prompted")
    folder = _save_st(root / "st", tiny_bert_folder, pooling="mean", normalize=True,
                      prompts={"query": "query: ", "passage": "passage: "})
    onnxport.export(folder, out=root / "out")
    return folder, root / "out"


def test_prompt_name_and_dimensions_equal_sentence_transformers(prompted_export):
    from sentence_transformers import SentenceTransformer

    folder, out = prompted_export
    st = SentenceTransformer(str(folder), device="cpu")
    embedder = onnxport.load(out)
    for name in ("query", "passage"):
        np.testing.assert_allclose(embedder.embed(TEXTS, prompt_name=name), st.encode(TEXTS, prompt_name=name),
                                   atol=1e-5)
    np.testing.assert_allclose(embedder.embed(TEXTS, prompt="search: "), st.encode(TEXTS, prompt="search: "),
                               atol=1e-5)
    plain = embedder.embed(TEXTS)
    np.testing.assert_allclose(plain, st.encode(TEXTS), atol=1e-5)
    assert np.abs(plain - embedder.embed(TEXTS, prompt_name="query")).max() > 1e-3  # the prompt matters
    # Matryoshka: sentence-transformers' truncate_dim, renormalized.
    width = plain.shape[1] // 2
    shortened = embedder.embed(TEXTS, prompt_name="query", dimensions=width)
    reference = SentenceTransformer(str(folder), device="cpu", truncate_dim=width)
    np.testing.assert_allclose(shortened, reference.encode(TEXTS, prompt_name="query", normalize_embeddings=True),
                               atol=1e-5)
    assert shortened.shape == (len(TEXTS), width)


def test_prompt_and_dimension_mistakes_are_clear(prompted_export, tmp_path):
    from onnxport.errors import InputError

    _, out = prompted_export
    embedder = onnxport.load(out)
    with pytest.raises(InputError, match=r"no prompt named 'qeury' .*'passage'.*'query'"):
        embedder.embed(TEXTS, prompt_name="qeury")
    with pytest.raises(InputError, match="not both"):
        embedder.embed(TEXTS, prompt_name="query", prompt="q: ")
    with pytest.raises(InputError, match=r"at most this model's \d+, not 100000"):
        embedder.embed(TEXTS, dimensions=100_000)
    with pytest.raises(InputError, match="dimensions must be"):
        embedder.embed(TEXTS, dimensions=0)
    target = tmp_path / "vectors.npy"
    for extra, message in ((["--prompt-name", "qeury"], "no prompt named 'qeury'"),
                           (["--dimensions", "100000"], "at most this model's")):
        result = _cli("embed", out, *TEXTS[:2], "-o", target, *extra)
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output and not target.exists()
    result = _cli("embed", out, *TEXTS[:2], "-o", target, "--prompt-name", "query", "--dimensions", "8")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(target), embedder.embed(TEXTS[:2], prompt_name="query", dimensions=8),
                               atol=1e-6)
