"""What users call every day: embeddings, entities and labels from an artifact.

`load(artifact)` returns the pipeline for the artifact's task. Each pipeline tokenizes
once, sorts texts by length so every batch is padded only to its own longest text, runs
the model and restores input order. The model is an onnxruntime session over one of the
artifact's files, or any runner with the same `run(arrays) -> {output: array}` (the
facade's `backend="torch"` passes the PyTorch source that way). No torch here.
"""

from __future__ import annotations

import json
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.arguments import choice, optional_positive_int, positive_int, string_list, text_list
from ..core.artifact import FAILED, MODIFIED, Artifact
from ..core.messages import notice
from ..core.model_files import AUTO_PREFERENCE, MODEL_CHOICES, MODEL_FILE
from ..core.spans import group_spans, label_name
from ..core.spec import Task
from ..errors import ArtifactError, InputError, NotForThisTask
from .session import OnnxModel
from .tokenization import TextEncoder

AGGREGATIONS = ("simple", "first", "max", "average")
# Every pipeline verb, and the artifacts that have it (for the error when a task lacks one).
VERB_TASKS = {
    "embed": "a sentence-embedding or feature-extraction artifact",
    "token_embeddings": "a sentence-embedding or feature-extraction artifact",
    "extract": "a token-classification artifact",
    "extract_dict": "a token-classification artifact",
    "classify": "a sequence-classification artifact",
}


def choose_model_file(artifact: Artifact, model: str) -> str:
    """'auto': verified int8, else verified opt, else fp32. Otherwise the named file."""
    if model == "auto":
        for kind in AUTO_PREFERENCE:
            name = MODEL_CHOICES[kind]
            if (artifact.path / name).exists() and artifact.verified(name):
                return name
        if artifact.verdict(MODEL_FILE) == MODIFIED:  # never a silent pick of a changed file
            raise ArtifactError(
                f"{artifact.path / MODEL_FILE} was modified since it was verified and the artifact has no other "
                f"verified model file; re-judge it with `onnxport verify {artifact.path}`, restore it, or load it "
                "anyway with model='fp32'")
        return MODEL_FILE
    choice(model, "model", ["auto", *MODEL_CHOICES])
    name = MODEL_CHOICES[model]
    if not (artifact.path / name).exists():
        hint = "onnxport quantize" if model == "int8" else "onnxport optimize"
        raise ArtifactError(f"{artifact.path} has no {name}; create it with `{hint} {artifact.path}` or use model='auto'")
    return name


def load(artifact: str | Path | Artifact, *, model: str = "auto", providers: Sequence[str] | None = None,
         threads: int | None = None, truncate: bool = True, runner: Any = None,
         backend: str = "onnx") -> "Pipeline":
    """Open an artifact as the pipeline for its task (Embedder, TokenClassifier, SequenceClassifier).

    `runner` replaces the onnxruntime session (it must take and give the graph's arrays);
    `backend` is only its name in reprs and logs."""
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    threads = optional_positive_int(threads, "threads")
    providers = string_list(providers, "providers") if providers is not None else None
    cls = PIPELINES.get(art.task)
    if cls is None:
        raise ArtifactError(f"task {art.task.value} has no pipeline; run the graph with "
                            "onnxport.runtime.session.OnnxModel")
    if runner is not None:
        return cls(art, runner, model_file=MODEL_FILE, backend=backend, truncate=truncate)
    model_file = choose_model_file(art, model)
    verdict = art.verdict(model_file)
    if verdict == FAILED:
        warnings.warn(f"{model_file} in {art.path} FAILED verification; its outputs may be wrong "
                      f"(see `onnxport verify {art.path}`)", stacklevel=2)
    elif verdict == MODIFIED:
        warnings.warn(f"{model_file} in {art.path} was modified since it was verified, so its verdict no longer "
                      f"applies; re-judge it with `onnxport verify {art.path} --model-file {model_file}`",
                      stacklevel=2)
    runner = OnnxModel(art.path / model_file, providers=providers, threads=threads)
    art.check_graph_io(model_file, list(runner.input_types), runner.output_names)
    notice(f"onnxport: using {model_file} ({art.files.get(model_file, {}).get('kind', 'fp32')}, {verdict}) "
           f"on {', '.join(runner.session.get_providers())}")
    return cls(art, runner, model_file=model_file, backend=backend, truncate=truncate)


class Pipeline:
    """Shared machinery: validation, length-sorted batching, order restoring."""

    def __init__(self, artifact: Artifact, runner, *, model_file: str, backend: str, truncate: bool = True):
        self.artifact = artifact
        self.runner = runner
        self.model_file = model_file
        self.backend = backend
        self.truncate = truncate
        self.encoder = TextEncoder.for_artifact(artifact)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.artifact.path)!r}, model_file={self.model_file!r}, backend={self.backend!r})"

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: say which task has the verb asked for.
        wanted = VERB_TASKS.get(name)
        if wanted is None or "artifact" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self)
        own = ", ".join(f"{verb}()" for verb in VERB_TASKS if hasattr(type(self), verb))
        raise NotForThisTask(
            f"{name}() needs {wanted}, but {self.artifact.path} is a {self.artifact.task.value} artifact, "
            f"whose {type(self).__name__} has {own}; call one of those, or load {wanted}")

    def _texts(self, texts: Sequence[str] | str, *, one_text_ok: bool = False) -> list[str]:
        return text_list(texts, what="a text or a list of texts" if one_text_ok else "a list of texts")

    @property
    def batch_rows(self) -> int | None:
        """The exact rows a static-shape graph takes per run; None when the batch axis is dynamic."""
        return self.artifact.spec.static_shape[0] if self.encoder.fixed_length else None

    def tokenize(self, texts: Sequence[str], *, truncate: bool | None = None) -> list:
        """One tokenizers.Encoding per text; over-long texts are cut unless truncate is False."""
        return self.encoder.tokenize(texts, truncate=self.truncate if truncate is None else truncate)

    def run_model(self, encodings: Sequence) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One model run over `encodings`, padded to the longest (a static graph gets its fixed
        rows, filled by repeating the last one): the input arrays and outputs, real rows only."""
        real = len(encodings)
        batch = list(encodings)
        step = self.batch_rows
        if step is not None:
            if real > step:
                raise InputError(f"this static-shape graph takes {step} rows per run, not {real}")
            batch = batch + [batch[-1]] * (step - real)
        arrays = self.encoder.pad(batch)
        outputs = self.runner.run(arrays)
        return {k: v[:real] for k, v in arrays.items()}, {k: v[:real] for k, v in outputs.items()}

    def infer(self, encodings: Sequence) -> list:
        """The task's raw result per encoding from one model run (see `rows`). The server's
        batcher calls this with encodings merged from many requests."""
        arrays, outputs = self.run_model(encodings)
        return list(self.rows(encodings, arrays, outputs))

    def rows(self, encodings: Sequence, arrays: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
        raise NotImplementedError

    def run_batches(self, texts: list[str], batch_size: int):
        """Yield (indices, encodings, arrays, outputs) per length-sorted batch."""
        return self.run_encodings(self.tokenize(texts), batch_size)

    def run_encodings(self, encodings: Sequence, batch_size: int):
        """`run_batches` over texts tokenized already: sorted by token count, so each model run
        is padded only to its own longest; indices point into `encodings`."""
        batch_size = positive_int(batch_size, "batch_size")
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        step = self.batch_rows or batch_size
        for start in range(0, len(order), step):
            indices = order[start:start + step]
            batch = [encodings[i] for i in indices]
            arrays, outputs = self.run_model(batch)
            yield indices, batch, arrays, outputs


class Embedder(Pipeline):
    """Sentence vectors (and per-token vectors) from embedding or feature-extraction artifacts."""

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """[n, dim] float32. Feature-extraction artifacts are mean-pooled over real tokens."""
        texts = self._texts(texts)
        result = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for indices, batch, arrays, outputs in self.run_batches(texts, batch_size):
            result[indices] = self.rows(batch, arrays, outputs)
        return result

    def rows(self, encodings, arrays, outputs) -> np.ndarray:
        """[rows, dim] sentence vectors: the graph's own, or mean-pooled over real tokens."""
        if self.artifact.task is Task.SENTENCE_EMBEDDING:
            return outputs["sentence_embedding"]
        weights = arrays["attention_mask"][..., None].astype(np.float32)
        return (outputs["last_hidden_state"] * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)

    def token_embeddings(self, texts: Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """One [tokens, hidden] array per text, without padding (special tokens included)."""
        texts = self._texts(texts)
        name = "token_embeddings" if self.artifact.task is Task.SENTENCE_EMBEDDING else "last_hidden_state"
        result: list[Any] = [None] * len(texts)
        for indices, _, arrays, outputs in self.run_batches(texts, batch_size):
            for row, index in enumerate(indices):
                result[index] = outputs[name][row][arrays["attention_mask"][row].astype(bool)]
        return result

    @cached_property  # read on every server request; the artifact's outputs do not change
    def dimensions(self) -> int:
        """Length of one sentence vector."""
        name = "sentence_embedding" if self.artifact.task is Task.SENTENCE_EMBEDDING else "last_hidden_state"
        return int(next(o for o in self.artifact.outputs if o.name == name).dims[-1])


class TokenClassifier(Pipeline):
    """Entities (label, text, start, end, score) from a token-classification artifact."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = self.artifact.labels or {}
        if not self.labels:
            raise ArtifactError(f"{self.artifact.path} has no labels.json; re-export the token classifier")

    def extract(self, text_or_texts: str | Sequence[str], aggregation: str = "simple",
                batch_size: int = 32) -> list[dict] | list[list[dict]]:
        if aggregation not in AGGREGATIONS:
            raise InputError(f"unknown aggregation '{aggregation}'; choose one of {', '.join(AGGREGATIONS)}")
        single = isinstance(text_or_texts, str)
        texts = [text_or_texts] if single else self._texts(text_or_texts, one_text_ok=True)
        result: list[Any] = [None] * len(texts)
        for indices, encodings, arrays, outputs in self.run_batches(texts, batch_size):
            for index, encoding, probabilities in zip(indices, encodings, self.rows(encodings, arrays, outputs)):
                result[index] = self.entities(texts[index], encoding, probabilities, aggregation)
        return result[0] if single else result

    def rows(self, encodings, arrays, outputs) -> list[np.ndarray]:
        """Per text: label probabilities [its tokens, labels]."""
        return [_softmax(outputs["logits"][row, : len(encoding.ids)]) for row, encoding in enumerate(encodings)]

    def entities(self, text: str, encoding, probabilities: np.ndarray, aggregation: str = "simple") -> list[dict]:
        """Entity spans of one text from its `rows` result (see `decode_entities`)."""
        return decode_entities(text, encoding, probabilities, self.labels, aggregation)

    def extract_dict(self, text: str, aggregation: str = "first") -> dict[str, str | list[str]]:
        """{label: text} (a list when a label occurs more than once), e.g. {"SRC": "Bangalore"}."""
        found: dict[str, list[str]] = {}
        for entity in self.extract(text, aggregation=aggregation):
            found.setdefault(entity["label"], []).append(entity["text"])
        return {label: values[0] if len(values) == 1 else values for label, values in found.items()}


class SequenceClassifier(Pipeline):
    """Labels with scores: softmax, or sigmoid for multi-label models."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = self.artifact.labels or {}
        config_file = self.artifact.path / "config.json"
        config = json.loads(config_file.read_text()) if config_file.exists() else {}
        self.multi_label = config.get("problem_type") == "multi_label_classification"

    def classify(self, text_or_texts: str | Sequence[str], top_k: int = 1,
                 batch_size: int = 32) -> list[dict] | list[list[dict]]:
        single = isinstance(text_or_texts, str)
        texts = [text_or_texts] if single else self._texts(text_or_texts, one_text_ok=True)
        top_k = positive_int(top_k, "top_k")
        result: list[Any] = [None] * len(texts)
        for indices, encodings, arrays, outputs in self.run_batches(texts, batch_size):
            for index, logits in zip(indices, self.rows(encodings, arrays, outputs)):
                result[index] = self.ranked(self.scores(logits), top_k)
        return result[0] if single else result

    def rows(self, encodings, arrays, outputs) -> np.ndarray:
        """[rows, labels] logits (float64)."""
        return outputs["logits"].astype(np.float64)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities from logits: softmax, or a sigmoid per label for multi-label models."""
        return 1 / (1 + np.exp(-logits)) if self.multi_label else _softmax(logits)

    def ranked(self, scores: np.ndarray, top_k: int | None = None) -> list[dict]:
        """The `top_k` best labels (all when None) of one text, best first: [{label, score}]."""
        best = np.argsort(-scores, kind="stable")[:top_k]
        return [{"label": self.labels.get(int(i), str(int(i))), "score": float(scores[i])} for i in best]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def decode_entities(text: str, encoding, probabilities: np.ndarray, labels: dict[int, str],
                    aggregation: str) -> list[dict]:
    """Turn per-token probabilities into entity spans over `text`.

    simple: token level, like transformers' pipeline. first/max/average: one label per word
    (from its first token, its most confident token, or the mean of its tokens'
    probabilities), so a word split into several tokens is never cut in two. Either way the
    units are grouped into entities by `core.spans.group_spans`.
    """
    offsets = encoding.offsets
    special = encoding.special_tokens_mask
    if aggregation == "simple":
        scored = [(offsets[i][0], offsets[i][1], int(probabilities[i].argmax()), float(probabilities[i].max()))
                  for i in range(len(offsets)) if not special[i] and offsets[i][1] > offsets[i][0]]
    else:
        words: dict[int, list[int]] = {}
        for i, word in enumerate(encoding.word_ids):
            if word is not None and not special[i] and offsets[i][1] > offsets[i][0]:
                words.setdefault(word, []).append(i)
        scored = []
        for tokens in words.values():
            if aggregation == "first":
                p = probabilities[tokens[0]]
            elif aggregation == "max":
                p = probabilities[max(tokens, key=lambda t: probabilities[t].max())]
            else:
                p = probabilities[tokens].mean(axis=0)
            scored.append((offsets[tokens[0]][0], offsets[tokens[-1]][1], int(p.argmax()), float(p.max())))
    spans = group_spans((start, end, label_name(labels, label_id), score) for start, end, label_id, score in scored)
    return [{"label": span.label, "text": text[span.start:span.end], "start": span.start, "end": span.end,
             "score": float(np.mean(span.scores))} for span in spans]


PIPELINES = {
    Task.SENTENCE_EMBEDDING: Embedder,
    Task.FEATURE_EXTRACTION: Embedder,
    Task.TOKEN_CLASSIFICATION: TokenClassifier,
    Task.SEQUENCE_CLASSIFICATION: SequenceClassifier,
}
