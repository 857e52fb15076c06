"""Token classification on texts several windows long equals transformers'
`pipeline("token-classification", aggregation_strategy=..., stride=...)`, for the three
tokenizer families whose words it finds differently: WordPiece (BERT, `##` pieces),
byte-level BPE (RoBERTa, lone `Ġ` tokens with empty offsets) and Unigram/Metaspace
(XLM-R, `▁` pieces whose offsets cover the space before the word).

Each family gets a tokenizer trained here on an in-test corpus, a tiny random token
classifier (window of 32 tokens) saved with it and exported with onnxport. The classifier's
weights are scaled up so its probabilities are peaked: labels are then decided by clear
margins, not by float noise between onnxruntime and PyTorch. The one deliberate difference:
onnxport trims an entity's span to its characters, where the pipeline's span of a Metaspace
token keeps the space before the word; the reference is trimmed the same way here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import onnxport
from onnxport.errors import InputError

from conftest import save_tiny_model, train_byte_level_bpe

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
WINDOW = 32  # the tokenizers' model_max_length: the pipeline's window, and the artifact's max length
AGGREGATIONS = ("simple", "first", "max", "average")
WORDS = ("São Paulo Mumbai Bangalore New Delhi Zürich Friday bus train ticket from to on next the a an please "
         "book sleeper AC seat window price rupees 1200 3:45pm naïve café don't e-mail (x) #tag 東京 Ångström "
         "Jean-Baptiste O'Neill well-known co-operate reservations Krishnamurthy Thiruvananthapuram").split()
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
    return " ".join(words) + rng.choice([".", "!", "?", ",", "", " ✈"])


def _corpus() -> list[str]:
    rng = random.Random(0)
    return [_sentence(rng) for _ in range(400)]


def _long_texts() -> list[str]:
    """Texts of 3 to 8 windows (with double spaces, a newline and a character no vocab has),
    and a short one that fits one window."""
    rng = random.Random(1)
    texts = ["  ".join(_sentence(rng) for _ in range(count)) for count in (8, 12, 16)]
    texts.append("\n".join(_sentence(rng) for _ in range(10)) + " ✈✈ Paulo.")
    texts.append("São Paulo. don't  e-mail Krishnamurthy")
    return texts


def _bert(folder: Path):
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    trainer = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    trainer.train_from_iterator(_corpus(), vocab_size=160, min_frequency=1, limit_alphabet=80, show_progress=False)
    vocab = sorted(trainer.get_vocab().items(), key=lambda item: item[1])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(token for token, _ in vocab) + "\n", encoding="utf-8")
    return BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=False, model_max_length=WINDOW)


def _roberta(folder: Path):
    from transformers import RobertaTokenizerFast

    # A small vocabulary: common words are one `Ġword` token, rare ones a lone `Ġ` and pieces.
    vocab, merges = train_byte_level_bpe(_corpus(), SPECIALS, 330)
    return RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=WINDOW)


def _xlm_roberta(folder: Path):
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizerFast

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False)
    tokenizer.train_from_iterator(_corpus(), trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(tokenizer.to_str())["model"]["vocab"]]
    return XLMRobertaTokenizerFast(vocab=vocab, model_max_length=WINDOW)


def _model(family: str, vocab_size: int):
    from transformers import (BertConfig, BertForTokenClassification, RobertaConfig, RobertaForTokenClassification,
                              XLMRobertaConfig, XLMRobertaForTokenClassification)

    classes = {"bert": (BertConfig, BertForTokenClassification),
               "roberta": (RobertaConfig, RobertaForTokenClassification),
               "xlm-roberta": (XLMRobertaConfig, XLMRobertaForTokenClassification)}
    config_class, model_class = classes[family]
    extra = {} if family == "bert" else {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
    config = config_class(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=37, max_position_embeddings=64, type_vocab_size=1 if extra else 2,
                          num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
                          label2id={label: i for i, label in enumerate(LABELS)}, **extra)
    torch.manual_seed(7)
    model = model_class(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(60)  # peaked probabilities: labels decided by clear margins
    return model


TOKENIZERS = {"bert": _bert, "roberta": _roberta, "xlm-roberta": _xlm_roberta}


@dataclass
class Case:
    family: str
    model: object
    tokenizer: object
    artifact: Path


@pytest.fixture(scope="module", params=list(TOKENIZERS))
def case(request, tmp_path_factory) -> Case:
    family = request.param
    scratch = tmp_path_factory.mktemp(f"long-ner-{family}")
    tokenizer = TOKENIZERS[family](scratch / "vocab")
    model = _model(family, len(tokenizer))
    folder = save_tiny_model(scratch / "model", model, tokenizer)
    out = scratch / "artifact"
    onnxport.export(folder, out=out)
    return Case(family, model, tokenizer, out)


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _reference(case: Case, texts: list[str], aggregation: str, stride: int) -> list[list[dict]]:
    """transformers' pipeline, spans trimmed to their characters (entities left empty dropped)."""
    from transformers import pipeline

    ner = pipeline("token-classification", model=case.model, tokenizer=case.tokenizer, device="cpu",
                   aggregation_strategy=aggregation, stride=stride)
    result = []
    for text, entities in zip(texts, ner(texts)):
        kept = []
        for entity in entities:
            start, end = _trimmed(text, int(entity["start"]), int(entity["end"]))
            if end > start:
                kept.append({"label": entity["entity_group"], "start": start, "end": end,
                             "score": float(entity["score"]), "word": entity["word"]})
        result.append(kept)
    return result


def _compact(text: str) -> str:
    return "".join(text.split())


def _assert_same(tokenizer, texts, got, expected):
    for text, ours, theirs in zip(texts, got, expected):
        assert [(e["label"], e["start"], e["end"]) for e in ours] == \
               [(e["label"], e["start"], e["end"]) for e in theirs]
        np.testing.assert_allclose([e["score"] for e in ours], [e["score"] for e in theirs], atol=1e-4)
        for entity, reference in zip(ours, theirs):
            assert entity["text"] == text[entity["start"]:entity["end"]] == entity["text"].strip()
            # The pipeline's word is decoded from the entity's tokens, so it is the span's
            # characters, spaces aside, with exceptions: it keeps the `##` of an entity that
            # starts inside a word; it cannot show a character whose bytes an entity holds
            # only some of, nor always an unknown one; and a lone Metaspace `▁` is given the
            # offsets of the character after it, which the span then covers and the word lacks.
            word = _compact(reference["word"]).removeprefix("##")
            unknown = tokenizer.unk_token_id in tokenizer(entity["text"], add_special_tokens=False)["input_ids"]
            if "\ufffd" not in word and not unknown:
                assert word in _compact(entity["text"])


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_long_texts_equal_the_pipeline_with_the_default_stride(case, aggregation):
    texts = _long_texts()
    ner = onnxport.load(case.artifact)
    assert ner.default_stride == WINDOW // 8
    got = ner.extract(texts, aggregation=aggregation)
    expected = _reference(case, texts, aggregation, stride=WINDOW // 8)
    assert sum(map(len, expected)) > 20, "the reference found few entities: the comparison would be weak"
    _assert_same(case.tokenizer, texts, got, expected)


@pytest.mark.parametrize("aggregation", ["simple", "first"])
def test_another_stride_equals_the_pipeline(case, aggregation):
    texts = _long_texts()[:2]
    got = onnxport.load(case.artifact).extract(texts, aggregation=aggregation, stride=13)
    _assert_same(case.tokenizer, texts, got, _reference(case, texts, aggregation, stride=13))


def test_a_long_text_is_labelled_past_its_first_window(case):
    ner = onnxport.load(case.artifact)
    text = _long_texts()[2]
    windows = ner.windows([text])[0]
    assert len(windows) >= 3, "the test text must span at least 3 windows"
    first_window_end = max(end for end, special in zip((o[1] for o in windows[0].offsets),
                                                       windows[0].special_tokens_mask) if not special)
    entities = ner.extract(text)
    assert max(e["start"] for e in entities) > first_window_end
    # no two entities share a character
    assert all(a["end"] <= b["start"] for a, b in zip(entities, entities[1:]))
    # stride=None is the pipeline without stride: one window, the rest of the text cut
    cut = ner.extract(text, stride=None)
    assert cut and max(e["end"] for e in cut) <= first_window_end


def test_entity_text_has_no_surrounding_space(case):
    ner = onnxport.load(case.artifact)
    for entities, text in zip(ner.extract(_long_texts(), aggregation="first"), _long_texts()):
        for entity in entities:
            assert entity["text"] == entity["text"].strip() and entity["text"]


def test_bad_stride_says_what_fits(case):
    ner = onnxport.load(case.artifact)
    with pytest.raises(InputError, match="stride must be a number of tokens from 0 to 29"):
        ner.extract("a text", stride=30)
    with pytest.raises(InputError, match="stride"):
        ner.extract("a text", stride=-1)
    strict = onnxport.load(case.artifact, truncate=False)
    with pytest.raises(InputError, match="longer than the model's 32 tokens"):
        strict.extract(_long_texts()[0], stride=None)
    assert strict.extract(_long_texts()[0])  # windows cut nothing, so nothing is refused
