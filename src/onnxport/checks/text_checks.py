"""Are the verification texts worth comparing on? A verdict on meaningless inputs is no verdict.

`checked_texts` refuses what cannot be a list of texts (one string, which would be verified
one character at a time; non-strings; nothing but empty lines). `unknown_token_problem`
says why a verdict would mean nothing when most of the texts' tokens are the tokenizer's
unknown token: PyTorch and ONNX then agree on `[UNK] [UNK] [UNK]`, not on the texts (a
tokenizer that is not the model's, or texts in a language it does not know). No torch here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.arguments import text_list
from ..errors import InputError
from ..runtime.tokenization import TextEncoder

# Above this share of unknown tokens, the texts say nothing about the model.
MAX_UNKNOWN_SHARE = 0.5


def checked_texts(texts: Any) -> list[str]:
    """`texts` as a list of strings with some words in them, or an InputError saying what to pass."""
    items = text_list(texts)
    if not items:
        raise InputError("verification needs at least one text")
    if not any(text.strip() for text in items):
        raise InputError(f"all {len(items)} texts are empty or whitespace; pass sentences in the model's language")
    return items


def unknown_token_problem(encoder: TextEncoder, texts: list[str], artifact_dir: str | Path) -> str | None:
    """Why `texts` cannot verify a model (most real tokens unknown, or none at all), else None."""
    unknown_id = unknown_token_id(Path(artifact_dir) / "tokenizer.json")
    unknown = total = 0
    for encoding in encoder.tokenize(texts):
        for token_id, special in zip(encoding.ids, encoding.special_tokens_mask):
            if not special:
                total += 1
                unknown += token_id == unknown_id
    advice = ("verify with texts in the model's language (--texts FILE), and export with the model's own "
              "tokenizer (--tokenizer PATH) if the artifact has another one")
    if total == 0:
        return (f"the {len(texts)} verification texts give no tokens besides special ones, so nothing was "
                "compared; " + advice)
    if unknown > MAX_UNKNOWN_SHARE * total:
        return (f"{unknown} of the {total} tokens of the verification texts ({unknown / total:.0%}) are the "
                "unknown token, so the comparison says nothing about the texts; " + advice)
    return None


def unknown_token_id(tokenizer_file: Path) -> int | None:
    """The id the tokenizer gives words it does not know (None: it has none, e.g. byte-level BPE)."""
    try:
        data = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # TextEncoder already read this file; a damaged one is its error to report
    model = data.get("model") or {}
    if model.get("type") == "Unigram":
        return model.get("unk_id")
    token = model.get("unk_token")
    if token is None:
        return None
    vocab = model.get("vocab")
    if isinstance(vocab, dict) and token in vocab:
        return vocab[token]
    added = {entry.get("content"): entry.get("id") for entry in data.get("added_tokens") or []}
    return added.get(token)
