"""Run an artifact's ONNX file: tokenization and an onnxruntime session, no torch.

`TextEncoder` turns texts into the exact arrays the graph declares (names and int
dtypes); `OnnxModel` runs them. Pipelines, verify and bench all build on these two.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ArtifactError, InputError

_ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_TOKENIZER_ARRAYS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


class TextEncoder:
    """Tokenizes batches with the artifact's tokenizer.json, padded to the longest text."""

    def __init__(self, artifact_dir: str | Path, *, max_length: int, pad_id: int, pad_token: str,
                 padding_side: str = "right", fixed_length: int | None = None) -> None:
        from tokenizers import Tokenizer

        tokenizer_file = Path(artifact_dir) / "tokenizer.json"
        if not tokenizer_file.exists():
            raise ArtifactError(f"{tokenizer_file} is missing; re-export the artifact")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # A static-shape graph takes exactly `fixed_length` tokens: truncate and pad to it.
        self.max_length = fixed_length or max_length
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token, direction=padding_side,
                                      length=fixed_length)

    @classmethod
    def for_artifact(cls, artifact) -> "TextEncoder":
        info = artifact.manifest["tokenizer"]
        static = artifact.spec.static_shape
        return cls(artifact.path, max_length=info["max_length"], pad_id=info["pad_id"],
                   pad_token=info["pad_token"], padding_side=info.get("padding_side", "right"),
                   fixed_length=static[1] if static else None)

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """{'input_ids', 'attention_mask', 'token_type_ids'} as int64 arrays [batch, sequence]."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text #{index} is {type(text).__name__}, not str; pass strings only")
        encodings = self.tokenizer.encode_batch(list(texts))
        return {
            name: np.array([getattr(e, attribute) for e in encodings], dtype=np.int64)
            for name, attribute in _TOKENIZER_ARRAYS.items()
        }


def default_threads() -> int:
    """Physical cores when we can tell, else logical CPUs available to this process."""
    try:
        import psutil  # optional

        cores = psutil.cpu_count(logical=False)
        if cores:
            return cores
    except ImportError:
        pass
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def create_session(path: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as error:  # onnxruntime raises its own untyped exceptions
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(f"onnxruntime cannot load {path}: {message}") from None


class OnnxModel:
    """An onnxruntime session that feeds arrays as the graph declares them."""

    def __init__(self, path: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None):
        self.path = Path(path)
        self.session = create_session(path, providers=providers, threads=threads)
        self.input_types = {i.name: i.type for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def feed(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {}
        for name, ort_type in self.input_types.items():
            if name not in arrays:
                raise InputError(f"the graph needs input '{name}', which the tokenizer did not produce")
            dtype = _ORT_INT_TYPES.get(ort_type)
            feed[name] = arrays[name].astype(dtype, copy=False) if dtype else arrays[name]
        return feed

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(self.output_names, self.feed(arrays))
        return dict(zip(self.output_names, results))
