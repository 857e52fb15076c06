"""The exportable module: a source model plus its task head, pooling and normalization,
and `build_wrapper`, which makes one for a loaded source with its dummy batch and the
input/output names and dims.

One wrapper for every architecture. It takes the graph inputs positionally (that is how
the exporters call it) and hands them to the model by name, so a custom forward may take
`input_ids`, `token_type_ids`, `attention_mask` in any order. Pooling functions are pure
and match sentence-transformers' definitions.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

from ..core.spec import BATCH_AXIS, SEQUENCE_AXIS, ExportSpec, Pooling, Task, TensorInfo
from ..errors import ExportError, InputError
from .sources import Source

TOKENIZER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_DUMMY_TEXTS = ("onnxport builds this dummy batch to trace the model once", "short one")
_SEQUENCE_OUTPUTS = {"last_hidden_state", "token_embeddings"}


def mean_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def mean_sqrt_len_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / torch.sqrt(weights.sum(1).clamp(min=1e-9))


def weighted_mean_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Position weights 1, 2, 3, ... counted from the first real token (so left padding does
    # not shift them), as sentence-transformers' "weightedmean".
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device, dtype=tokens.dtype).unsqueeze(0)
    first_real = mask.to(torch.int32).argmax(dim=1, keepdim=True).to(tokens.dtype)
    weights = (mask.to(tokens.dtype) * (positions - first_real)).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


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


def splade_pool(logits: torch.Tensor, mask: torch.Tensor, pooling: str, activation: str) -> torch.Tensor:
    """sentence-transformers' SpladePooling: log(1 + relu(logits)) of the real tokens (log1p
    once more for "log1p_relu"), then the max or sum over tokens: one weight per vocabulary
    token, zero where no token's logit is positive."""
    weights = torch.log1p(torch.relu(logits * mask.unsqueeze(-1).to(logits.dtype)))
    if activation == "log1p_relu":
        weights = torch.log1p(weights)
    return weights.amax(dim=1) if pooling == "max" else weights.sum(dim=1)


def l2_normalize(vectors: torch.Tensor) -> torch.Tensor:
    # Same as F.normalize(p=2, dim=1), written with ReduceSum + Sqrt: the ReduceL2 that
    # F.normalize exports to stops onnxruntime's transformer optimizer from fusing the
    # encoder at opset 18+ (measured: no SkipLayerNormalization/Attention fusions).
    norm = (vectors * vectors).sum(dim=1, keepdim=True).sqrt()
    return vectors / norm.clamp(min=1e-12)


POOLERS: dict[Pooling, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    Pooling.MEAN: mean_pool,
    Pooling.MEAN_SQRT_LEN: mean_sqrt_len_pool,
    Pooling.WEIGHTED_MEAN: weighted_mean_pool,
    Pooling.CLS: cls_pool,
    Pooling.MAX: max_pool,
    Pooling.LAST_TOKEN: last_token_pool,
}

TASK_OUTPUTS = {
    Task.FEATURE_EXTRACTION: ("last_hidden_state", "pooler_output"),
    Task.SENTENCE_EMBEDDING: ("sentence_embedding", "token_embeddings"),
    Task.TOKEN_CLASSIFICATION: ("logits",),
    Task.SEQUENCE_CLASSIFICATION: ("logits",),
    Task.TEXT_RANKING: ("logits",),
    Task.QUESTION_ANSWERING: ("start_logits", "end_logits"),
    Task.FILL_MASK: ("logits",),
    Task.SPARSE_EMBEDDING: ("sparse_embedding",),
}
# Tasks whose outputs have one row per token (a sequence axis after the batch axis).
_PER_TOKEN_TASKS = (Task.TOKEN_CLASSIFICATION, Task.QUESTION_ANSWERING, Task.FILL_MASK, Task.CUSTOM)

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
        splade: tuple[str, str] | None = None,
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
        self.splade = splade
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
        if self.task is Task.QUESTION_ANSWERING:
            return outputs.start_logits, outputs.end_logits
        if self.task is Task.SPARSE_EMBEDDING:
            mask = kwargs.get("attention_mask")
            if mask is None:
                mask = torch.ones(outputs.logits.shape[:2], dtype=torch.long, device=outputs.logits.device)
            return (splade_pool(outputs.logits, mask, *self.splade),)
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


# ------------------------------------------------------------------ building it for a source

def choose_inputs(source: Source, spec: ExportSpec) -> tuple[list[str], bool]:
    """Graph input names and whether token_type_ids must be fed as zeros inside the graph."""
    params = forward_parameters(source.module)
    required = required_parameters(source.module)
    if "input_ids" not in params:
        raise ExportError(
            f"{type(source.module).__name__}.forward takes no input_ids; onnxport exports text encoders "
            "whose forward takes input_ids (and optionally attention_mask, token_type_ids)"
        )
    unknown = [name for name in required if name not in TOKENIZER_INPUTS and name != "self"]
    if unknown:
        raise ExportError(
            f"{type(source.module).__name__}.forward requires {unknown}, which a tokenizer does not produce; "
            "give them defaults or wrap the module"
        )
    names = [name for name in ("input_ids", "attention_mask") if name in params]
    takes_types = "token_type_ids" in params
    type_vocab = getattr(source.config, "type_vocab_size", 2) if source.config is not None else 2
    if spec.token_type_ids and not takes_types:
        raise ExportError(f"{type(source.module).__name__} takes no token_type_ids; drop --token-type-ids")
    # Go by the model, not the tokenizer's model_input_names: ALBERT's tokenizer omits
    # token_type_ids although the model has two segment types and pairs need them.
    keep = takes_types and spec.token_type_ids is not False and (spec.token_type_ids or (type_vocab or 0) > 1)
    if keep:
        names.append("token_type_ids")
    zero_types = takes_types and not keep and (spec.token_type_ids is False or "token_type_ids" in required)
    return names, zero_types


def dummy_batch(source: Source, spec: ExportSpec, input_names: list[str]):
    if spec.static_shape:
        batch, length = spec.static_shape
        texts = [_DUMMY_TEXTS[i % 2] for i in range(batch)]
        encoded = source.tokenizer(texts, padding="max_length", truncation=True, max_length=length,
                                   return_tensors="pt", return_token_type_ids=True)
    else:
        encoded = source.tokenizer(list(_DUMMY_TEXTS), padding=True, truncation=True, max_length=spec.max_length,
                                   return_tensors="pt", return_token_type_ids=True)
    dtype = torch.int32 if spec.int32_inputs else torch.int64
    return tuple(encoded[name].to(dtype) for name in input_names)


def build_wrapper(source: Source, spec: ExportSpec):
    """(wrapper module, dummy inputs, input TensorInfos, output TensorInfos)."""
    input_names, zero_types = choose_inputs(source, spec)
    dummy = dummy_batch(source, spec, input_names)
    source.module.eval()
    common = dict(zero_token_type_ids=zero_types, int32_inputs=spec.int32_inputs)
    probe = ExportWrapper(source.module, Task.CUSTOM, input_names, **common)
    with torch.no_grad():
        raw = source.module(**probe.model_kwargs(dummy))
    custom_keys, names = None, None
    if spec.task is Task.CUSTOM:
        custom_keys, names = custom_output_layout(raw)
        if spec.output_names:
            if len(spec.output_names) != len(names):
                raise InputError(f"--output-names gives {len(spec.output_names)} names but the module returns "
                                 f"{len(names)} outputs ({names})")
            names = list(spec.output_names)
    with_pooler = spec.task is Task.FEATURE_EXTRACTION and getattr(raw, "pooler_output", None) is not None
    if spec.pooling is Pooling.POOLER and getattr(raw, "pooler_output", None) is None:
        raise ExportError("--pooling pooler needs a model with a pooler layer; this one has none, use mean or cls")
    dense = source.st.dense_layers if source.st else None
    wrapper = ExportWrapper(source.module, spec.task, input_names, pooling=spec.pooling, normalize=spec.normalize,
                            dense_layers=dense, with_pooler_output=with_pooler, custom_output_keys=custom_keys,
                            splade=(spec.splade_pooling or "max", spec.splade_activation or "relu"), **common)
    if names is None:
        names = list(TASK_OUTPUTS[spec.task][: 1 if spec.task is Task.FEATURE_EXTRACTION and not with_pooler else 2])
    with torch.no_grad():
        results = wrapper(*dummy)
    if len(results) != len(names):
        raise ExportError(f"the model returned {len(results)} outputs, expected {len(names)} ({names})")
    batch, length = dummy[0].shape
    dtype = "int32" if spec.int32_inputs else "int64"
    static = spec.static_shape is not None
    inputs = [TensorInfo(n, dtype, (batch, length) if static else (BATCH_AXIS, SEQUENCE_AXIS)) for n in input_names]
    outputs = []
    for name, tensor in zip(names, results):
        dims: list[int | str] = list(tensor.shape)
        if not static:
            if dims and dims[0] == batch:
                dims[0] = BATCH_AXIS
            if len(dims) > 1 and dims[1] == length and (
                name in _SEQUENCE_OUTPUTS or spec.task in _PER_TOKEN_TASKS
            ):
                dims[1] = SEQUENCE_AXIS
        outputs.append(TensorInfo(name, _torch_dtype_name(tensor.dtype), tuple(dims)))
    return wrapper, dummy, inputs, outputs


def _torch_dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")
