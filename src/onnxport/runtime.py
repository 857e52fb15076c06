"""Run an artifact's ONNX file: tokenization and an onnxruntime session, no torch.

`TextEncoder` turns texts into the exact arrays the graph declares (names and int
dtypes); `OnnxModel` runs them. Pipelines, verify and bench all build on these two.
"""

from __future__ import annotations

import os
import warnings
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
        # A static-shape graph takes exactly `fixed_length` tokens: truncate and pad to it.
        self.max_length = fixed_length or max_length
        self.fixed_length = fixed_length
        self.pad_id = pad_id
        self.padding_side = padding_side
        # Padding is done by `pad`, per batch, so each batch is only as long as its longest text.
        self._unpadded = Tokenizer.from_file(str(tokenizer_file))
        self._unpadded.no_padding()
        self._unpadded.enable_truncation(max_length=self.max_length)

    @classmethod
    def for_artifact(cls, artifact) -> "TextEncoder":
        info = artifact.manifest["tokenizer"]
        static = artifact.spec.static_shape
        return cls(artifact.path, max_length=info["max_length"], pad_id=info["pad_id"],
                   pad_token=info["pad_token"], padding_side=info.get("padding_side", "right"),
                   fixed_length=static[1] if static else None)

    def tokenize(self, texts: Sequence[str], *, truncate: bool = True) -> list:
        """One tokenizers.Encoding per text (truncated to max_length, not padded)."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"text #{index} is {type(text).__name__}, not str; pass strings only")
        encodings = self._unpadded.encode_batch(list(texts))
        if not truncate:
            for index, encoding in enumerate(encodings):
                if encoding.overflowing:
                    raise InputError(
                        f"text #{index} ({texts[index][:40]!r}...) is longer than the model's {self.max_length} "
                        "tokens; shorten it or allow truncation"
                    )
        return encodings

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


# Short names users may pass, and what to install when a provider is missing.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
}
PROVIDER_PACKAGES = {
    "CUDAExecutionProvider": "onnxruntime-gpu (and CUDA/cuDNN)",
    "TensorrtExecutionProvider": "onnxruntime-gpu with TensorRT",
    "CoreMLExecutionProvider": "onnxruntime on macOS",
    "DmlExecutionProvider": "onnxruntime-directml on Windows",
}


def resolve_providers(requested: Sequence[str] | None) -> list[str]:
    """Requested providers that this onnxruntime has, CPU last; one warning for the missing ones."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = [PROVIDER_ALIASES.get(p.lower(), p) for p in (requested or ["CPUExecutionProvider"])]
    missing = [p for p in wanted if p not in available]
    if missing:
        hints = "; ".join(f"{p}: install {PROVIDER_PACKAGES.get(p, 'an onnxruntime build that has it')}"
                          for p in missing)
        warnings.warn(f"{', '.join(missing)} not available in this onnxruntime ({ort.__version__}, has "
                      f"{', '.join(available)}); falling back to CPU. {hints}", RuntimeWarning, stacklevel=3)
    chosen = [p for p in wanted if p in available and p != "CPUExecutionProvider"]
    return chosen + ["CPUExecutionProvider"]


def create_session(path: str | Path, *, providers: Sequence[str] | None = None, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=resolve_providers(providers))
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
        self.on_cuda = "CUDAExecutionProvider" in self.session.get_providers()

    def feed(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {}
        for name, ort_type in self.input_types.items():
            if name not in arrays:
                raise InputError(f"the graph needs input '{name}', which the tokenizer did not produce")
            dtype = _ORT_INT_TYPES.get(ort_type)
            feed[name] = arrays[name].astype(dtype, copy=False) if dtype else arrays[name]
        return feed

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.on_cuda:
            return self._run_with_io_binding(self.feed(arrays))
        results = self.session.run(self.output_names, self.feed(arrays))
        return dict(zip(self.output_names, results))

    def _run_with_io_binding(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # From onnxruntime's IOBinding docs: copy inputs to the GPU once, let outputs come
        # back to host memory, and avoid the extra copies plain run() makes. Not exercised
        # on CPU-only machines (see README).
        import onnxruntime as ort

        binding = self.session.io_binding()
        for name, array in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))
