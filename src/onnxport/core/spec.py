"""Plain data shared by every stage: tasks, pooling modes and the export spec.

Frozen dataclasses and enums only; nothing here imports torch or onnx, so the runtime
side can read a manifest back into these types.
"""

from __future__ import annotations

import dataclasses
from enum import Enum


class Task(str, Enum):
    FEATURE_EXTRACTION = "feature-extraction"
    SENTENCE_EMBEDDING = "sentence-embedding"
    TOKEN_CLASSIFICATION = "token-classification"
    SEQUENCE_CLASSIFICATION = "sequence-classification"
    TEXT_RANKING = "text-ranking"  # a cross-encoder: one relevance score per (query, document) pair
    QUESTION_ANSWERING = "question-answering"  # extractive: start/end logits over (question, context) tokens
    FILL_MASK = "fill-mask"  # masked-language-model logits over the vocabulary at every token
    SPARSE_EMBEDDING = "sparse-embedding"  # SPLADE: one weight per vocabulary token, mostly zeros
    CUSTOM = "custom"


class Pooling(str, Enum):
    MEAN = "mean"
    CLS = "cls"
    MAX = "max"
    POOLER = "pooler"
    MEAN_SQRT_LEN = "mean-sqrt-len"
    WEIGHTED_MEAN = "weighted-mean"
    LAST_TOKEN = "last-token"


class Exporter(str, Enum):
    TORCHSCRIPT = "torchscript"
    DYNAMO = "dynamo"


# Names of the axes every dynamic input/output carries.
BATCH_AXIS = "batch"
SEQUENCE_AXIS = "sequence"


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """What to export and how. Defaults are the ones a careful engineer would pick."""

    task: Task
    pooling: Pooling | None = None
    normalize: bool = False
    opset: int | None = None  # None: the highest the target onnxruntime and the exporter both support
    target_ort: str | None = None  # None: the installed onnxruntime
    exporter: Exporter = Exporter.TORCHSCRIPT
    int32_inputs: bool = False
    token_type_ids: bool | None = None  # None: keep where the architecture uses it
    static_shape: tuple[int, int] | None = None
    max_length: int | None = None
    output_names: tuple[str, ...] | None = None
    splade_pooling: str | None = None  # sparse-embedding: "max" or "sum" over tokens
    splade_activation: str | None = None  # sparse-embedding: "relu" (log1p(relu)) or "log1p_relu" (log1p twice)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for key, value in data.items():
            if isinstance(value, Enum):
                data[key] = value.value
            elif isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ExportSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["task"] = Task(values["task"])
        if values.get("pooling"):
            values["pooling"] = Pooling(values["pooling"])
        values["exporter"] = Exporter(values.get("exporter", Exporter.TORCHSCRIPT.value))
        for key in ("static_shape", "output_names"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, element type and dims (ints or axis names)."""

    name: str
    dtype: str
    dims: tuple[int | str, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}

    @classmethod
    def from_dict(cls, data: dict) -> "TensorInfo":
        return cls(data["name"], data["dtype"], tuple(data["dims"]))
