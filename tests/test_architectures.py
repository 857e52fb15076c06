"""Every supported encoder architecture, exported for every task and run in onnxruntime.

Tiny random models (hidden 32, 2 layers, 4 heads) are built in-test for BERT, DistilBERT,
RoBERTa, XLM-RoBERTa, DeBERTa-v2, ELECTRA, MPNet and ALBERT, each saved with the
architecture's own fast tokenizer class (WordPiece archs reuse the real BERT uncased vocab;
the others get a BPE or Unigram model trained here on in-test sentences). Nothing is
downloaded.

Each case exports with onnxport, then runs the ONNX graph at two shapes that differ from
the export dummy (batch 2) and from each other, with real padding, and compares with the
PyTorch model run here directly by transformers (pooling and normalization computed in
this file, not by onnxport.convert.wrapper). Per-token outputs are compared on real positions only.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

import onnxport
from onnxport.runtime.session import OnnxModel
from onnxport.runtime.tokenization import TextEncoder

from conftest import save_tiny_model, tiny_bert_config, train_byte_level_bpe

HIDDEN = 32
ATOL = 1e-4
TOKEN_LABELS = ["O", "B-SRC", "I-SRC", "B-DEST", "I-DEST"]
SEQUENCE_LABELS = ["negative", "neutral", "positive"]
# Larger than the usual 0.02 so heads and attention produce outputs well above ATOL.
INIT_RANGE = 0.1

FEATURE, SENTENCE, TOKEN, SEQUENCE = (
    "feature-extraction", "sentence-embedding", "token-classification", "sequence-classification",
)
TASKS = (FEATURE, SENTENCE, TOKEN, SEQUENCE)

# Two shapes, neither batch 2 (the export dummy), each with texts of different lengths.
SHAPE_A = [
    "Book two seats to Mumbai.",
    "hi",
    "The lazy dog sleeps.",
]
SHAPE_B = [
    "Is the sleeper bus from Bangalore to Chennai faster than the train?",
    "ok",
    "Prices rose four percent this year, and the night train to Mumbai now costs more than "
    "the Volvo sleeper bus from Bangalore; book two tickets for tomorrow before the seats "
    "are gone, or take the slow train.",
    "Export the model.",
    "The quick brown fox jumps over the lazy dog tomorrow night.",
]

_WORDS = (
    "the a quick brown fox jumps over lazy dog bus train ticket tickets from to mumbai chennai bangalore "
    "tomorrow night book two seats on volvo sleeper price prices rose four percent year this and now "
    "costs more than before are gone or take slow is faster export model sleeps hi ok onnx runtime "
    "graph token sentence padding encoder text city day morning evening cheap fast seat window"
).split()


def _corpus() -> list[str]:
    rng = random.Random(1234)
    sentences = []
    for _ in range(400):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(2, 16))]
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + rng.choice([".", "?", "!", ",", ";"])
        sentences.append(sentence)
    return sentences + SHAPE_A + SHAPE_B


# --------------------------------------------------------------------------------------
# Tokenizers (built offline with the architecture's own fast tokenizer class)
# --------------------------------------------------------------------------------------

def _bert_vocab(wordpiece_tokenizer) -> list[str]:
    return [token for token, _ in sorted(wordpiece_tokenizer.get_vocab().items(), key=lambda item: item[1])]


def _write_vocab(folder: Path, tokens: list[str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(path)


def _train_unigram(special_tokens: list[str], unk_token: str, lowercase: bool = False) -> list[tuple[str, float]]:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    trainer = trainers.UnigramTrainer(vocab_size=400, special_tokens=special_tokens, unk_token=unk_token,
                                      show_progress=False)
    tokenizer.train_from_iterator(_corpus(), trainer)
    vocab = json.loads(tokenizer.to_str())["model"]["vocab"]
    assert [piece for piece, _ in vocab[: len(special_tokens)]] == special_tokens
    return [(piece, float(score)) for piece, score in vocab]


def _bert_tokenizer(scratch: Path, wordpiece_tokenizer):
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=_write_vocab(scratch, _bert_vocab(wordpiece_tokenizer)), model_max_length=64)


def _distilbert_tokenizer(scratch: Path, wordpiece_tokenizer):
    from transformers import DistilBertTokenizerFast

    return DistilBertTokenizerFast(vocab=_write_vocab(scratch, _bert_vocab(wordpiece_tokenizer)),
                                   model_max_length=64)


def _electra_tokenizer(scratch: Path, wordpiece_tokenizer):
    from transformers import ElectraTokenizerFast

    return ElectraTokenizerFast(vocab=_write_vocab(scratch, _bert_vocab(wordpiece_tokenizer)), model_max_length=64)


def _mpnet_tokenizer(scratch: Path, wordpiece_tokenizer):
    from transformers import MPNetTokenizerFast

    # MPNet's vocab is BERT's with <s> <pad> </s> <unk> in front and <mask> at the end
    # (pad id 1, as MPNet's position ids expect).
    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + _bert_vocab(wordpiece_tokenizer) + ["<mask>"]
    # 62 usable positions: MPNet's position ids start after the padding index.
    return MPNetTokenizerFast(vocab=_write_vocab(scratch, tokens), model_max_length=62)


def _roberta_tokenizer(scratch: Path, wordpiece_tokenizer):
    from transformers import RobertaTokenizerFast

    vocab, merges = train_byte_level_bpe(_corpus(), ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], 600)
    return RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=62)


def _xlm_roberta_tokenizer(scratch: Path, wordpiece_tokenizer):
    from transformers import XLMRobertaTokenizerFast

    vocab = _train_unigram(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>")
    return XLMRobertaTokenizerFast(vocab=vocab, model_max_length=62)


def _deberta_v2_tokenizer(scratch: Path, wordpiece_tokenizer):
    from transformers import DebertaV2TokenizerFast

    vocab = _train_unigram(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "[UNK]")
    return DebertaV2TokenizerFast(vocab=vocab, model_max_length=64)


def _albert_tokenizer(scratch: Path, wordpiece_tokenizer):
    from transformers import AlbertTokenizerFast

    vocab = _train_unigram(["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], "<unk>", lowercase=True)
    return AlbertTokenizerFast(vocab=vocab, model_max_length=64)


# --------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------

def _bert_config(vocab_size, **extra):
    return tiny_bert_config(vocab_size=vocab_size, initializer_range=INIT_RANGE, **extra)


def _distilbert_config(vocab_size, **extra):
    from transformers import DistilBertConfig

    return DistilBertConfig(vocab_size=vocab_size, dim=HIDDEN, n_layers=2, n_heads=4, hidden_dim=37,
                            max_position_embeddings=64, initializer_range=INIT_RANGE, pad_token_id=0, **extra)


def _roberta_config(vocab_size, **extra):
    from transformers import RobertaConfig

    return RobertaConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=37, max_position_embeddings=64, type_vocab_size=1,
                         initializer_range=INIT_RANGE, pad_token_id=1, bos_token_id=0, eos_token_id=2, **extra)


def _xlm_roberta_config(vocab_size, **extra):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=37, max_position_embeddings=64, type_vocab_size=1,
                            initializer_range=INIT_RANGE, pad_token_id=1, bos_token_id=0, eos_token_id=2, **extra)


def _deberta_v2_config(vocab_size, **extra):
    from transformers import DebertaV2Config

    # DeBERTa-v3 style: relative attention with log buckets (16 buckets, so the test
    # lengths reach the logarithmic part), no absolute positions, no token types.
    return DebertaV2Config(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=37, max_position_embeddings=64, type_vocab_size=0,
                           relative_attention=True, position_biased_input=False, pos_att_type=["p2c", "c2p"],
                           max_relative_positions=-1, position_buckets=16, norm_rel_ebd="layer_norm",
                           share_att_key=True, initializer_range=INIT_RANGE, pad_token_id=0, **extra)


def _electra_config(vocab_size, **extra):
    from transformers import ElectraConfig

    return ElectraConfig(vocab_size=vocab_size, embedding_size=16, hidden_size=HIDDEN, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=37, max_position_embeddings=64, type_vocab_size=2,
                         initializer_range=INIT_RANGE, pad_token_id=0, **extra)


def _mpnet_config(vocab_size, **extra):
    from transformers import MPNetConfig

    return MPNetConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=37, max_position_embeddings=64, relative_attention_num_buckets=32,
                       initializer_range=INIT_RANGE, pad_token_id=1, bos_token_id=0, eos_token_id=2, **extra)


def _albert_config(vocab_size, **extra):
    from transformers import AlbertConfig

    return AlbertConfig(vocab_size=vocab_size, embedding_size=16, hidden_size=HIDDEN, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=37, max_position_embeddings=64, type_vocab_size=2,
                        initializer_range=INIT_RANGE, pad_token_id=0, bos_token_id=2, eos_token_id=3, **extra)


@dataclasses.dataclass(frozen=True)
class Arch:
    name: str
    make_tokenizer: Callable
    make_config: Callable
    token_type_ids: bool  # the graph must take token_type_ids
    has_pooler: bool  # the base model has a pooler layer (feature-extraction gives pooler_output)
    pooling: str  # sentence-embedding pooling exported for this arch
    normalize: bool

    def __str__(self) -> str:
        return self.name


ARCHS = [
    Arch("bert", _bert_tokenizer, _bert_config, True, True, "mean", True),
    Arch("distilbert", _distilbert_tokenizer, _distilbert_config, False, False, "cls", False),
    Arch("roberta", _roberta_tokenizer, _roberta_config, False, True, "mean", True),
    Arch("xlm-roberta", _xlm_roberta_tokenizer, _xlm_roberta_config, False, True, "cls", True),
    Arch("deberta-v2", _deberta_v2_tokenizer, _deberta_v2_config, False, False, "mean", False),
    Arch("electra", _electra_tokenizer, _electra_config, True, False, "cls", False),
    Arch("mpnet", _mpnet_tokenizer, _mpnet_config, False, True, "mean", True),
    Arch("albert", _albert_tokenizer, _albert_config, True, True, "mean", True),
]

CASES = [pytest.param(arch, task, id=f"{arch.name}-{task}") for arch in ARCHS for task in TASKS]

HEADS = {FEATURE: "base", SENTENCE: "base", TOKEN: "token", SEQUENCE: "sequence"}


def _auto_class(head: str):
    import transformers

    return {
        "base": transformers.AutoModel,
        "token": transformers.AutoModelForTokenClassification,
        "sequence": transformers.AutoModelForSequenceClassification,
    }[head]


def _label_config(head: str) -> dict:
    labels = {"token": TOKEN_LABELS, "sequence": SEQUENCE_LABELS}.get(head)
    if labels is None:
        return {}
    return dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)})


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, wordpiece_tokenizer):
    """folder(arch, head) -> a saved tiny model + tokenizer folder, built once per module."""
    tokenizers: dict[str, object] = {}
    folders: dict[tuple[str, str], Path] = {}

    def folder(arch: Arch, head: str) -> Path:
        key = (arch.name, head)
        if key not in folders:
            if arch.name not in tokenizers:
                scratch = tmp_path_factory.mktemp(f"{arch.name}-vocab")
                tokenizers[arch.name] = arch.make_tokenizer(scratch, wordpiece_tokenizer)
            tokenizer = tokenizers[arch.name]
            config = arch.make_config(len(tokenizer), **_label_config(head))
            torch.manual_seed(sum(map(ord, arch.name + head)))
            model = _auto_class(head).from_config(config).eval()
            folders[key] = save_tiny_model(tmp_path_factory.mktemp(f"{arch.name}-{head}"), model, tokenizer)
            assert (folders[key] / "tokenizer.json").exists(), "save_pretrained must write tokenizer.json"
        return folders[key]

    return folder


# --------------------------------------------------------------------------------------
# Independent PyTorch reference
# --------------------------------------------------------------------------------------

def _reference(model, arch: Arch, task: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What onnxport's graph should return, computed from the transformers model here."""
    kwargs = {
        "input_ids": torch.from_numpy(arrays["input_ids"]).to(torch.int64),
        "attention_mask": torch.from_numpy(arrays["attention_mask"]).to(torch.int64),
    }
    if arch.token_type_ids:
        kwargs["token_type_ids"] = torch.from_numpy(arrays["token_type_ids"]).to(torch.int64)
    with torch.no_grad():
        output = model(**kwargs, return_dict=True)
    if task == FEATURE:
        result = {"last_hidden_state": output.last_hidden_state}
        if getattr(output, "pooler_output", None) is not None:
            result["pooler_output"] = output.pooler_output
        return {name: value.numpy() for name, value in result.items()}
    if task == SENTENCE:
        tokens = output.last_hidden_state.numpy().astype(np.float64)
        mask = arrays["attention_mask"].astype(np.float64)[:, :, None]
        if arch.pooling == "mean":
            embedding = (tokens * mask).sum(axis=1) / mask.sum(axis=1)
        elif arch.pooling == "cls":
            embedding = tokens[:, 0, :]
        else:  # pragma: no cover - the table above only uses mean and cls
            raise AssertionError(arch.pooling)
        if arch.normalize:
            embedding = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
        return {"sentence_embedding": embedding, "token_embeddings": output.last_hidden_state.numpy()}
    return {"logits": output.logits.numpy()}


def _expected_outputs(arch: Arch, task: str) -> list[dict]:
    if task == FEATURE:
        outputs = [{"name": "last_hidden_state", "dtype": "float32", "dims": ["batch", "sequence", HIDDEN]}]
        if arch.has_pooler:
            outputs.append({"name": "pooler_output", "dtype": "float32", "dims": ["batch", HIDDEN]})
        return outputs
    if task == SENTENCE:
        return [{"name": "sentence_embedding", "dtype": "float32", "dims": ["batch", HIDDEN]},
                {"name": "token_embeddings", "dtype": "float32", "dims": ["batch", "sequence", HIDDEN]}]
    if task == TOKEN:
        return [{"name": "logits", "dtype": "float32", "dims": ["batch", "sequence", len(TOKEN_LABELS)]}]
    return [{"name": "logits", "dtype": "float32", "dims": ["batch", len(SEQUENCE_LABELS)]}]


def _max_diff(actual: np.ndarray, expected: np.ndarray, mask: np.ndarray | None) -> float:
    assert actual.shape == expected.shape, f"shape {actual.shape} != reference {expected.shape}"
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    if mask is not None:  # per-token output: real positions only
        diff = diff[mask.astype(bool)]
    return float(diff.max())


# --------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("arch", "task"), CASES)
def test_export_matches_pytorch(arch: Arch, task: str, model_folder, tmp_path):
    import transformers

    folder = model_folder(arch, HEADS[task])
    out = tmp_path / "artifact"
    options = dict(pooling=arch.pooling, normalize=arch.normalize) if task == SENTENCE else {}
    onnxport.export(folder, out=out, task=task, verify=False, **options)

    artifact = onnxport.Artifact(out)
    manifest = artifact.manifest
    assert manifest["task"] == task
    if task == SENTENCE:
        assert artifact.spec.pooling.value == arch.pooling
        assert artifact.spec.normalize is arch.normalize

    # The reference model, loaded by transformers alone.
    reference = _auto_class(HEADS[task]).from_pretrained(folder).eval()

    # Inputs: exactly the ones the architecture uses.
    expected_inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if arch.token_type_ids else [])
    session = OnnxModel(artifact.model_path())
    assert sorted(session.input_types) == sorted(expected_inputs), (
        f"{arch.name}: graph inputs {sorted(session.input_types)}, expected {sorted(expected_inputs)}"
    )
    assert sorted(i["name"] for i in manifest["inputs"]) == sorted(expected_inputs)
    for info in manifest["inputs"]:
        assert info["dims"] == ["batch", "sequence"] and info["dtype"] == "int64", info

    # Outputs: names and dims in the manifest, and the graph's outputs in the same order.
    expected_outputs = _expected_outputs(arch, task)
    assert manifest["outputs"] == expected_outputs
    assert session.output_names == [o["name"] for o in expected_outputs]

    # Classifier labels travel with the artifact.
    if task in (TOKEN, SEQUENCE):
        id2label = {int(k): v for k, v in reference.config.id2label.items()}
        assert id2label == dict(enumerate(TOKEN_LABELS if task == TOKEN else SEQUENCE_LABELS))
        assert json.loads((out / "labels.json").read_text()) == {str(k): v for k, v in id2label.items()}
        assert artifact.labels == id2label
    else:
        assert not (out / "labels.json").exists()

    encoder = TextEncoder.for_artifact(artifact)
    dummy_length = encoder.encode(list(onnxport.convert.wrapper._DUMMY_TEXTS))["input_ids"].shape[1]
    seen_shapes = set()
    for texts in (SHAPE_A, SHAPE_B):
        arrays = encoder.encode(texts)
        batch, length = arrays["input_ids"].shape
        # The shapes must really exercise the dynamic axes and the padding.
        assert batch == len(texts) and batch != 2
        assert length != dummy_length, f"length {length} is the export dummy's; pick other texts"
        assert length <= manifest["tokenizer"]["max_length"]
        assert (arrays["attention_mask"] == 0).any(), "no padding in this batch"
        assert (arrays["input_ids"] < reference.config.vocab_size).all()
        seen_shapes.add((batch, length))

        got = session.run(arrays)
        want = _reference(reference, arch, task, arrays)
        assert set(got) == set(want), f"graph outputs {sorted(got)} != PyTorch outputs {sorted(want)}"
        for name, value in got.items():
            assert value.dtype == np.float32, (name, value.dtype)
            per_token = value.ndim == 3
            diff = _max_diff(value, want[name], arrays["attention_mask"] if per_token else None)
            assert diff <= ATOL, (
                f"{arch.name} {task}: {name} differs from PyTorch by {diff:.3g} at batch {batch}, length {length}"
            )
        if task == SENTENCE and arch.normalize:
            np.testing.assert_allclose(np.linalg.norm(got["sentence_embedding"], axis=1), 1.0, atol=1e-5)
    assert len({length for _, length in seen_shapes}) == 2, f"both shapes have the same length: {seen_shapes}"
