"""Texts to the arrays an artifact's graph takes, with its own tokenizer.json (no torch).

Tokenizes without padding, then pads each batch to its own longest text (or the fixed
length of a static-shape graph), so a batch of short texts is never padded to 512.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

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
        self._unpadded.enable_truncation(max_length=self.max_length)

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
            for index, encoding in enumerate(encodings):
                if encoding.overflowing:
                    raise InputError(
                        f"text #{index} ({texts[index][:40]!r}...) is longer than the model's {self.max_length} "
                        "tokens; shorten it or allow truncation"
                    )
        return encodings

    @property
    def vocab_size(self) -> int:
        return self._unpadded.get_vocab_size()

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
