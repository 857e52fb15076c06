"""Run an artifact's source model in PyTorch, with the same inputs and outputs as its graph.

Used as the reference by `verify` and as `backend="torch"` by the pipelines, so both see
exactly what the exporter wrapped (task head, pooling, normalization). Needs the export
extra; nothing on the ONNX runtime path imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, ModelLoadError


class TorchReference:
    """arrays in (as the tokenizer gives them), {output name: np.ndarray} out."""

    def __init__(self, artifact, *, reference: str | Path | None = None, wrapper: Any = None) -> None:
        try:
            import torch
        except ImportError:
            raise ModelLoadError(
                "running the PyTorch model needs torch and transformers: pip install \"onnxport[export]\""
            ) from None
        self.name = "pytorch (in-memory module)"
        if wrapper is None:
            from .exporter import build_wrapper
            from .sources import load_source

            path = reference or artifact.manifest.get("source", {}).get("path")
            if not path:
                raise InputError("the artifact came from an in-memory module; pass the model folder as reference")
            if not Path(path).exists():
                raise InputError(f"the source model {path} is gone; pass the model folder as reference")
            source = load_source(path, task=artifact.task, allow_pickle=True)
            wrapper, _, _, _ = build_wrapper(source, artifact.spec)
            self.name = f"pytorch ({path})"
        self.wrapper = wrapper
        self.input_names = [i.name for i in artifact.inputs]
        self.output_names = [o.name for o in artifact.outputs]
        self.dtype = torch.int32 if artifact.spec.int32_inputs else torch.int64

    def run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.no_grad():
            results = self.wrapper(*[torch.as_tensor(arrays[n]).to(self.dtype) for n in self.input_names])
        return {n: r.detach().cpu().numpy() for n, r in zip(self.output_names, results)}
