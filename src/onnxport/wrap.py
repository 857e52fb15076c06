"""The exportable module: a source model plus its task head, pooling and normalization.

One wrapper for every architecture. It takes the graph inputs positionally (that is how
the exporters call it) and hands them to the model by name, so a custom forward may take
`input_ids`, `token_type_ids`, `attention_mask` in any order. Pooling functions are pure
and match sentence-transformers' definitions.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

from .errors import ExportError
from .spec import Pooling, Task


def mean_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def mean_sqrt_len_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / torch.sqrt(weights.sum(1).clamp(min=1e-9))


def cls_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return tokens[:, 0]


def max_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # sentence-transformers fills padding with -1e9 before the max.
    padding = mask.unsqueeze(-1) == 0
    return tokens.masked_fill(padding, -1e9).max(dim=1).values


def last_token_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Index of the last real token, whichever side the padding is on.
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    last = (positions * mask.long()).max(dim=1).values
    return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]


def l2_normalize(vectors: torch.Tensor) -> torch.Tensor:
    # Same as F.normalize(p=2, dim=1), written with ReduceSum + Sqrt: the ReduceL2 that
    # F.normalize exports to stops onnxruntime's transformer optimizer from fusing the
    # encoder at opset 18+ (measured: no SkipLayerNormalization/Attention fusions).
    norm = (vectors * vectors).sum(dim=1, keepdim=True).sqrt()
    return vectors / norm.clamp(min=1e-12)


POOLERS: dict[Pooling, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    Pooling.MEAN: mean_pool,
    Pooling.MEAN_SQRT_LEN: mean_sqrt_len_pool,
    Pooling.CLS: cls_pool,
    Pooling.MAX: max_pool,
    Pooling.LAST_TOKEN: last_token_pool,
}

TASK_OUTPUTS = {
    Task.FEATURE_EXTRACTION: ("last_hidden_state", "pooler_output"),
    Task.SENTENCE_EMBEDDING: ("sentence_embedding", "token_embeddings"),
    Task.TOKEN_CLASSIFICATION: ("logits",),
    Task.SEQUENCE_CLASSIFICATION: ("logits",),
}

_ACTIVATIONS = {"Tanh": torch.nn.Tanh, "Identity": torch.nn.Identity, "ReLU": torch.nn.ReLU,
                "GELU": torch.nn.GELU, "Sigmoid": torch.nn.Sigmoid}


def forward_parameters(module: torch.nn.Module) -> list[str]:
    """Names the module's forward accepts, in order (without *args/**kwargs)."""
    signature = inspect.signature(module.forward)
    return [
        name for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)
    ]


def required_parameters(module: torch.nn.Module) -> list[str]:
    signature = inspect.signature(module.forward)
    return [
        name for name, p in signature.parameters.items()
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY, p.KEYWORD_ONLY)
    ]


class ExportWrapper(torch.nn.Module):
    """Graph inputs in, named task outputs out (a tuple, in `output_names` order)."""

    def __init__(
        self,
        model: torch.nn.Module,
        task: Task,
        input_names: list[str],
        *,
        zero_token_type_ids: bool = False,
        int32_inputs: bool = False,
        pooling: Pooling | None = None,
        normalize: bool = False,
        dense_layers: list | None = None,
        with_pooler_output: bool = False,
        custom_output_keys: list[str | int] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.input_names = list(input_names)
        self.zero_token_type_ids = zero_token_type_ids
        self.int32_inputs = int32_inputs
        self.pooling = pooling
        self.normalize = normalize
        self.with_pooler_output = with_pooler_output
        self.custom_output_keys = custom_output_keys
        self.dense = torch.nn.ModuleList()
        for layer in dense_layers or []:
            linear = torch.nn.Linear(layer.weight.shape[1], layer.weight.shape[0], bias=layer.bias is not None)
            with torch.no_grad():
                linear.weight.copy_(layer.weight)
                if layer.bias is not None:
                    linear.bias.copy_(torch.as_tensor(layer.bias))
            self.dense.append(torch.nn.Sequential(linear, _ACTIVATIONS[layer.activation]()))
        if task is Task.SENTENCE_EMBEDDING and pooling is None:
            raise ExportError("sentence-embedding needs a pooling mode; pass --pooling")
        self.eval()

    def model_kwargs(self, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        kwargs = dict(zip(self.input_names, inputs))
        if self.int32_inputs:
            # The graph takes int32; embedding lookups and masks want int64.
            kwargs = {name: value.long() for name, value in kwargs.items()}
        if self.zero_token_type_ids:
            kwargs["token_type_ids"] = torch.zeros_like(kwargs["input_ids"])
        return kwargs

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kwargs = self.model_kwargs(inputs)
        if self.task is Task.CUSTOM:
            return select_outputs(self.model(**kwargs), self.custom_output_keys)
        outputs = self.model(**kwargs, return_dict=True)
        if self.task is Task.FEATURE_EXTRACTION:
            if self.with_pooler_output:
                return outputs.last_hidden_state, outputs.pooler_output
            return (outputs.last_hidden_state,)
        if self.task is Task.SENTENCE_EMBEDDING:
            tokens = outputs.last_hidden_state
            mask = kwargs.get("attention_mask")
            if mask is None:
                mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
            if self.pooling is Pooling.POOLER:
                embedding = outputs.pooler_output
            else:
                embedding = POOLERS[self.pooling](tokens, mask)
            for layer in self.dense:
                embedding = layer(embedding)
            if self.normalize:
                embedding = l2_normalize(embedding)
            return embedding, tokens
        return (outputs.logits,)


def select_outputs(result: Any, keys: list[str | int] | None) -> tuple[torch.Tensor, ...]:
    """Flatten a custom forward's result (tensor, tuple, dict or ModelOutput) to a tuple."""
    if isinstance(result, torch.Tensor):
        return (result,)
    if keys is None:
        keys = list(result.keys()) if hasattr(result, "keys") else list(range(len(result)))
    return tuple(result[key] for key in keys)


def custom_output_layout(result: Any) -> tuple[list[str | int] | None, list[str]]:
    """For a custom forward's result: the keys to select and the default output names."""
    if isinstance(result, torch.Tensor):
        return None, ["output"]
    if hasattr(result, "keys"):
        keys = [k for k in result.keys() if isinstance(result[k], torch.Tensor)]
        return keys, [str(k) for k in keys]
    if isinstance(result, (tuple, list)) and all(isinstance(r, torch.Tensor) for r in result):
        return list(range(len(result))), [f"output_{i}" for i in range(len(result))]
    raise ExportError(
        f"the module returned {type(result).__name__}; return a tensor, a tuple of tensors or a dict of tensors"
    )
