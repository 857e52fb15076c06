"""Texts to the arrays an artifact's graph takes, with its own tokenizer.json (no torch).

Tokenizes without padding, then pads each batch to its own longest text (or the fixed
length of a static-shape graph), so a batch of short texts is never padded to 512.
Sentence pairs go through the tokenizer's own pair template (its separators and
token_type_ids) and are truncated longest_first, as transformers does. Long texts and
(question, context) pairs can also be cut into overlapping windows, and ids decoded back
to text as transformers' `decode` does.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.arguments import pair_list
from ..core.messages import first_line
from ..errors import ArtifactError, InputError

_TOKENIZER_ARRAYS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


class TextEncoder:
    """Tokenizes batches with the artifact's tokenizer.json, padded to the longest text."""

    def __init__(self, artifact_dir: str | Path, *, max_length: int, pad_id: int, pad_token: str,
                 padding_side: str = "right", fixed_length: int | None = None) -> None:
        from tokenizers import Tokenizer

        tokenizer_file = Path(artifact_dir) / "tokenizer.json"
        if not tokenizer_file.exists():
            raise ArtifactError(f"{tokenizer_file} is missing; re-export the artifact")
        # A static-shape graph takes exactly `fixed_length` tokens: truncate and pad to it.
        self.max_length = fixed_length or max_length
        self.fixed_length = fixed_length
        self.pad_id = pad_id
        self.padding_side = padding_side
        # Padding is done by `pad`, per batch, so each batch is only as long as its longest text.
        try:
            self._unpadded = Tokenizer.from_file(str(tokenizer_file))
        except Exception as error:  # tokenizers raises a bare Exception for a file it cannot parse
            raise ArtifactError(f"{tokenizer_file} is damaged ({first_line(error)}); re-export the artifact, "
                                "or copy tokenizer.json again from the source model") from None
        self._unpadded.no_padding()
        self._window_tokenizers: dict = {}  # (max_length, stride, strategy) -> tokenizer (see `_windowed`)
        self.config = _read_config(Path(artifact_dir) / "tokenizer_config.json")
        self.takes_pairs = _separates_pairs(self._unpadded)
        # longest_first (the longer text of a pair loses tokens first) is what transformers
        # uses for pairs; a tokenizer.json may have saved another strategy.
        self._unpadded.enable_truncation(max_length=self.max_length, strategy="longest_first")

    @classmethod
    def for_artifact(cls, artifact) -> "TextEncoder":
        info = artifact.manifest["tokenizer"]
        static = artifact.spec.static_shape
        return cls(artifact.path, max_length=info["max_length"], pad_id=info["pad_id"],
                   pad_token=info["pad_token"], padding_side=info.get("padding_side", "right"),
                   fixed_length=static[1] if static else None)

    def tokenize(self, texts: Sequence[str], *, truncate: bool = True, add_special_tokens: bool = True) -> list:
        """One tokenizers.Encoding per text (truncated to max_length, not padded)."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text #{index} is {type(text).__name__}, not str; pass strings only")
        encodings = self._unpadded.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        if not truncate:
            self._refuse_cut(encodings, lambda i: f"text #{i} ({texts[i][:40]!r}...) is longer than the model's")
        return encodings

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]], *, truncate: bool = True,
                       add_special_tokens: bool = True) -> list:
        """One tokenizers.Encoding per (first, second) pair, joined by the tokenizer's pair
        template; over max_length the longer text is cut first (longest_first)."""
        pairs = pair_list(pairs)
        if not self.takes_pairs:
            raise InputError("this artifact's tokenizer has no pair template (its tokenizer.json post-processor "
                             "puts no separator between two texts), so the model cannot tell a pair's texts "
                             "apart; classify single texts, or export a model whose tokenizer takes pairs")
        encodings = self._unpadded.encode_batch(pairs, add_special_tokens=add_special_tokens)
        if not truncate:
            self._refuse_cut(encodings, lambda i: f"pair #{i} ({pairs[i][0][:40]!r}..., {pairs[i][1][:40]!r}...) "
                                                  "is, both texts together, longer than the model's")
        return encodings

    def _refuse_cut(self, encodings: Sequence, describe) -> None:
        """InputError for the first encoding that truncation cut (truncate=False)."""
        for index, encoding in enumerate(encodings):
            if encoding.overflowing:
                raise InputError(f"{describe(index)} {self.max_length} tokens; shorten it or allow truncation")

    @property
    def vocab_size(self) -> int:
        return self._unpadded.get_vocab_size()

    # --- overlapping windows over long texts (token classification) ------------------

    def windows(self, texts: Sequence[str], *, stride: int) -> list[list]:
        """Per text, its encodings over windows of at most max_length tokens (special tokens
        included), each starting `stride` tokens before the previous one ends: what
        transformers gives with `return_overflowing_tokens=True, stride=stride`. A text that
        fits has one window; offsets always point into the whole text."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text #{index} is {type(text).__name__}, not str; pass strings only")
        encodings = self._windowed(self.check_stride(stride)).encode_batch(list(texts))
        return [[encoding, *encoding.overflowing] for encoding in encodings]

    def question_windows(self, question: str, context: str, *, max_length: int, stride: int,
                         question_first: bool = True) -> list:
        """The encodings of (question, context) over windows of at most `max_length` tokens:
        the whole question in each, the context cut into pieces that overlap by `stride`
        tokens, as transformers' question-answering pipeline tokenizes (truncation
        only_second, return_overflowing_tokens). With question_first False (left-padding
        tokenizers) the context comes first."""
        room = max_length - self._unpadded.num_special_tokens_to_add(True)
        question_tokens = len(self._unpadded.encode(question, add_special_tokens=False).ids)
        context_tokens = len(self._unpadded.encode(context, add_special_tokens=False).ids)
        if question_tokens + context_tokens > room and room - question_tokens <= stride:
            raise InputError(
                f"the question takes {question_tokens} tokens, which leaves no room for the context in windows of "
                f"{max_length} tokens overlapping by {stride} (special tokens take "
                f"{max_length - room}); shorten the question, or lower doc_stride")
        strategy = "only_second" if question_first else "only_first"
        pair = (question, context) if question_first else (context, question)
        encoding = self._windowed(stride, max_length, strategy).encode(*pair)
        return [encoding, *encoding.overflowing]

    def check_stride(self, stride: int) -> int:
        """`stride` if windows can overlap by that many tokens, else an InputError."""
        room = self.max_length - self._unpadded.num_special_tokens_to_add(False)
        if isinstance(stride, bool) or not isinstance(stride, int) or not 0 <= stride < room:
            raise InputError(f"stride must be a number of tokens from 0 to {room - 1}, not {stride!r}: windows hold "
                             f"{room} tokens of text (max length {self.max_length} minus special tokens) and "
                             "must overlap by fewer; pass a smaller stride")
        return stride

    def _windowed(self, stride: int, max_length: int | None = None, strategy: str = "longest_first"):
        # A copy per setting: changing the shared tokenizer's truncation would race with
        # `tokenize` on another thread (the server tokenizes while its batcher runs).
        from tokenizers import Tokenizer

        key = (max_length or self.max_length, stride, strategy)
        tokenizer = self._window_tokenizers.get(key)
        if tokenizer is None:
            tokenizer = Tokenizer.from_str(self._unpadded.to_str())
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=key[0], stride=stride, strategy=strategy)
            self._window_tokenizers[key] = tokenizer
        return tokenizer

    # --- special tokens and decoding ---------------------------------------------------

    def special_token(self, name: str) -> tuple[str, int] | tuple[None, None]:
        """(text, id) of a special token named in tokenizer_config.json (mask_token,
        cls_token, ...), or (None, None) when the tokenizer has none."""
        token = self.config.get(name)
        if isinstance(token, dict):  # older files keep an AddedToken's fields
            token = token.get("content")
        token_id = self._unpadded.token_to_id(token) if isinstance(token, str) else None
        return (token, token_id) if token_id is not None else (None, None)

    def token(self, token_id: int) -> str:
        """The vocabulary entry of one id (`##ing`, `Ġthe`, `[CLS]`), as convert_ids_to_tokens."""
        return self._unpadded.id_to_token(token_id)

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """Token ids back to text, as transformers' decode: the tokenizer's decoder, then its
        clean-up of spaces before punctuation when tokenizer_config.json asks for it (never
        for BPE models, whose spaces it would corrupt, unless the config insists)."""
        text = self._unpadded.decode(list(ids), skip_special_tokens=skip_special_tokens)
        if self.config.get("clean_up_tokenization_spaces") and (
                type(self._unpadded.model).__name__ != "BPE"
                or self.config.get("clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output")):
            for spaced, tight in _CLEAN_UP:
                text = text.replace(spaced, tight)
        return text

    @property
    def subword_prefix(self) -> str | None:
        """The prefix that marks a word's continuing pieces (WordPiece's `##`); None when the
        tokenizer has none (byte-level BPE, Unigram)."""
        return getattr(self._unpadded.model, "continuing_subword_prefix", None) or None

    @cached_property
    def unk_id(self) -> int | None:
        """The unknown token's id, or None when the tokenizer has none (byte-level BPE)."""
        token = getattr(self._unpadded.model, "unk_token", None)
        if token:
            return self._unpadded.token_to_id(token)
        return json.loads(self._unpadded.to_str())["model"].get("unk_id")  # Unigram keeps an id

    def pad(self, encodings: Sequence) -> dict[str, np.ndarray]:
        """Stack encodings into int64 arrays, padded to the longest (or the fixed length)."""
        length = self.fixed_length or max((len(e.ids) for e in encodings), default=0)
        arrays = {name: np.full((len(encodings), length), self.pad_id if name == "input_ids" else 0, dtype=np.int64)
                  for name in _TOKENIZER_ARRAYS}
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            start = length - n if self.padding_side == "left" else 0
            for name, attribute in _TOKENIZER_ARRAYS.items():
                arrays[name][row, start:start + n] = getattr(encoding, attribute)
        return arrays

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """{'input_ids', 'attention_mask', 'token_type_ids'} as int64 arrays [batch, sequence]."""
        return self.pad(self.tokenize(texts))

    def encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        """`encode` for (first, second) pairs."""
        return self.pad(self.tokenize_pairs(pairs))

    def encode_items(self, items: Sequence) -> dict[str, np.ndarray]:
        """`encode` for texts, or for (first, second) pairs when the items are tuples."""
        return self.encode_pairs(items) if items and isinstance(items[0], tuple) else self.encode(items)


# transformers' clean_up_tokenization, in its order
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
             (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def _read_config(path: Path) -> dict:
    """tokenizer_config.json as a dict ({} when missing or unreadable: it only adds details)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _separates_pairs(tokenizer) -> bool:
    """Whether the tokenizer's post-processor puts a special token between a pair's texts
    (BERT's [SEP], RoBERTa's </s></s>, ...); without one a pair is just two texts run together."""
    sequence_ids = tokenizer.encode("first", "second").sequence_ids
    if 0 not in sequence_ids or 1 not in sequence_ids:
        return False
    last_first = max(i for i, s in enumerate(sequence_ids) if s == 0)
    return None in sequence_ids[last_first + 1:sequence_ids.index(1)]
