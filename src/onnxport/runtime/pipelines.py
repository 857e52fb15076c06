"""What users call every day: embeddings, entities, labels, scores, answers and masked words
from an artifact.

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

from ..core.arguments import (choice, is_one_pair, optional_positive_int, positive_int, string_list, text_list,
                              texts_or_pairs)
from ..core.artifact import FAILED, MODIFIED, PASSED, Artifact, engine_key
from ..core.messages import notice
from ..core.model_files import MODEL_CHOICES, MODEL_FILE
from ..core.spec import Task
from ..errors import ArtifactError, InputError, NotForThisTask
from .answers import SpanOptions, best_answers
from .batching import DEFAULT_BATCH_TOKENS, length_batches
from .entities import AGGREGATIONS, WordRules, decode_entities, flat_windows, per_text, window_entities
from .model_choice import ModelChoice, auto_choice, engine_choice
from .openvino_model import OpenVinoModel, check_engine
from .session import OnnxModel
from .tokenization import TextEncoder
from .vectors import shorten

# Every pipeline verb, and the artifacts that have it (for the error when a task lacks one).
VERB_TASKS = {
    "embed": "a sentence-embedding, feature-extraction or sparse-embedding artifact",
    "token_embeddings": "a sentence-embedding or feature-extraction artifact",
    "extract": "a token-classification artifact",
    "extract_dict": "a token-classification artifact",
    "classify": "a sequence-classification artifact",
    "rerank": "a text-ranking (cross-encoder) artifact",
    "score": "a text-ranking (cross-encoder) artifact",
    "answer": "a question-answering artifact",
    "fill": "a fill-mask artifact",
}


def choose_model_file(artifact: Artifact, model: str) -> str:
    """'auto': the onnxruntime file `model_choice.auto_choice` picks for this machine.
    Otherwise the named file."""
    return model_choice(artifact, model, engines=False).file


def model_choice(artifact: Artifact, model: str, *, engines: bool = True) -> ModelChoice:
    """The file to run for `model` ('auto' or a MODEL_CHOICES name), and why; 'auto' may
    pick model.onnx on another engine (`engines`)."""
    if model == "auto":
        return auto_choice(artifact, engines=engines)
    choice(model, "model", ["auto", *MODEL_CHOICES])
    name = MODEL_CHOICES[model]
    if not (artifact.path / name).exists():
        hint = "onnxport quantize" if model == "int8" else "onnxport optimize"
        raise ArtifactError(f"{artifact.path} has no {name}; create it with `{hint} {artifact.path}` or use model='auto'")
    return ModelChoice(name, f"asked for (model={model!r})")


def load(artifact: str | Path | Artifact, *, model: str = "auto", providers: Sequence[str] | None = None,
         threads: int | None = None, truncate: bool = True, runner: Any = None,
         backend: str = "onnx", max_batch_tokens: int | None = DEFAULT_BATCH_TOKENS, engine: str | None = None,
         precision: str | None = None) -> "Pipeline":
    """Open an artifact as the pipeline for its task (Embedder, TokenClassifier, SequenceClassifier).

    `runner` replaces the onnxruntime session (it must take and give the graph's arrays);
    `backend` is only its name in reprs and logs. `max_batch_tokens` caps the padded tokens
    (rows x longest) of one model run, None: rows only (see `runtime.batching`).
    `engine="openvino"` runs model.onnx with OpenVINO in `precision` f32 or bf16 (the
    `openvino` extra; see `runtime.openvino_model`); `engine=None` is onnxruntime unless
    model="auto" picks another engine verified and measured faster on this CPU
    (`runtime.model_choice`); `engine="onnxruntime"` never does."""
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    threads = optional_positive_int(threads, "threads")
    providers = string_list(providers, "providers") if providers is not None else None
    cls = PIPELINES.get(art.task)
    if cls is None:
        raise ArtifactError(f"task {art.task.value} has no pipeline; run the graph with "
                            "onnxport.runtime.session.OnnxModel")
    if runner is not None:
        return cls(art, runner, model_file=MODEL_FILE, backend=backend, truncate=truncate,
                   max_batch_tokens=max_batch_tokens)
    check_engine(engine, precision)
    if engine == "openvino":  # asked for another engine
        runner, picked, verdict = _other_engine(art, model, engine, precision, providers, threads)
    else:  # engine None: model="auto" may find another engine verified and faster here
        picked = model_choice(art, model, engines=engine is None and providers is None)
        runner = None
        if picked.engine != "onnxruntime":
            runner, picked, verdict = _other_engine(art, model, picked.engine, picked.precision, providers, threads,
                                                    picked)
    model_file = picked.file
    if runner is not None:
        where = runner.describe()
    else:
        verdict = art.verdict(model_file)
        _warn_about(art, model_file, verdict)
        runner = OnnxModel(art.path / model_file, providers=providers, threads=threads)
        where = ", ".join(runner.session.get_providers())
    art.check_graph_io(model_file, list(runner.input_types), runner.output_names)
    notice(f"onnxport: using {model_file} ({art.files.get(model_file, {}).get('kind', 'fp32')}, {verdict}) "
           f"on {where}: {picked.describe()}")
    backend = picked.engine if picked.engine != "onnxruntime" else backend
    pipeline = cls(art, runner, model_file=model_file, backend=backend, truncate=truncate,
                   max_batch_tokens=max_batch_tokens)
    pipeline.choice = picked
    return pipeline


def _warn_about(art: Artifact, model_file: str, verdict: str) -> None:
    if verdict == FAILED:
        warnings.warn(f"{model_file} in {art.path} FAILED verification; its outputs may be wrong "
                      f"(see `onnxport verify {art.path}`)", stacklevel=3)
    elif verdict == MODIFIED:
        warnings.warn(f"{model_file} in {art.path} was modified since it was verified, so its verdict no longer "
                      f"applies; re-judge it with `onnxport verify {art.path} --model-file {model_file}`",
                      stacklevel=3)


def _other_engine(art: Artifact, model: str, engine: str, precision: str | None, providers, threads,
                  picked: ModelChoice | None = None):
    """(runner, choice, verdict) for model.onnx on OpenVINO (asked for, or `picked` by
    model="auto"); a warning unless that engine and precision passed verification for these
    bytes."""
    if providers is not None:
        raise InputError("providers are onnxruntime's; OpenVINO runs on the CPU here")
    picked = picked or engine_choice(art, model, engine, precision or "f32")
    runner = OpenVinoModel(art.path / MODEL_FILE, precision=precision or "f32", threads=threads)
    verdict = art.engine_verdict(engine_key(engine, runner.precision))
    if verdict != PASSED:
        warnings.warn(f"{MODEL_FILE} in {art.path} has no passing verdict on {runner.describe()} ({verdict}); "
                      f"judge it with `onnxport verify {art.path} --engine openvino --precision {runner.precision}`",
                      stacklevel=3)
    return runner, picked, verdict


class Pipeline:
    """Shared machinery: validation, length-sorted batching, order restoring."""

    def __init__(self, artifact: Artifact, runner, *, model_file: str, backend: str, truncate: bool = True,
                 max_batch_tokens: int | None = DEFAULT_BATCH_TOKENS):
        self.artifact = artifact
        self.max_batch_tokens = optional_positive_int(max_batch_tokens, "max_batch_tokens")
        self.runner = runner
        self.model_file = model_file
        # which file load() picked and why (None: a runner passed in, or the torch backend)
        self.choice: ModelChoice | None = None
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

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]], *, truncate: bool | None = None) -> list:
        """One tokenizers.Encoding per (first, second) pair, joined by the tokenizer's pair
        template and cut longest_first (unless truncate is False); `run_encodings` runs them."""
        self._check_pair_segments()
        return self.encoder.tokenize_pairs(pairs, truncate=self.truncate if truncate is None else truncate)

    def tokenize_items(self, items: Sequence, *, truncate: bool | None = None) -> list:
        """One encoding per item: `tokenize` for texts, `tokenize_pairs` for (first, second)
        tuples; a list holding both (a Ray batch of mixed rows) keeps its order."""
        kinds = {isinstance(item, tuple) for item in items}
        if len(kinds) < 2:
            return (self.tokenize_pairs if True in kinds else self.tokenize)(items, truncate=truncate)
        encodings: list[Any] = [None] * len(items)
        for pairs, tokenize in ((False, self.tokenize), (True, self.tokenize_pairs)):
            indices = [i for i, item in enumerate(items) if isinstance(item, tuple) == pairs]
            for index, encoding in zip(indices, tokenize([items[i] for i in indices], truncate=truncate)):
                encodings[index] = encoding
        return encodings

    def _check_pair_segments(self) -> None:
        # A graph exported without token_type_ids feeds zeros inside: a model with two segment
        # types would then read the second text as part of the first, a silent wrong answer.
        if any(info.name == "token_type_ids" for info in self.artifact.inputs):
            return
        config_file = self.artifact.path / "config.json"
        config = json.loads(config_file.read_text()) if config_file.exists() else {}
        if (config.get("type_vocab_size") or 0) > 1:
            raise InputError(
                f"{self.artifact.path} was exported without token_type_ids, but its model tells a pair's texts "
                f"apart by {config['type_vocab_size']} segment types, so pairs would be read wrongly; "
                "re-export it with --token-type-ids to classify pairs")

    # The graph outputs `rows` reads; None: all. Others are not copied out of onnxruntime
    # (a sentence-embedding graph's token_embeddings is batch x tokens x hidden floats).
    result_outputs: list[str] | None = None

    def run_model(self, encodings: Sequence, outputs: Sequence[str] | None = None,
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One model run over `encodings`, padded to the longest (a static graph gets its fixed
        rows, filled by repeating the last one): the input arrays and outputs (`outputs`, by
        default `result_outputs`; a custom runner gives all of its own), real rows only."""
        real = len(encodings)
        batch = list(encodings)
        step = self.batch_rows
        if step is not None:
            if real > step:
                raise InputError(f"this static-shape graph takes {step} rows per run, not {real}")
            batch = batch + [batch[-1]] * (step - real)
        arrays = self.encoder.pad(batch)
        wanted = outputs or self.result_outputs
        if wanted and isinstance(self.runner, OnnxModel):
            results = self.runner.run(arrays, wanted)
        else:  # a custom runner (backend="torch") takes arrays only and gives all its outputs
            results = self.runner.run(arrays)
        return {k: v[:real] for k, v in arrays.items()}, {k: v[:real] for k, v in results.items()}

    def token_rows(self, width: int, encoding) -> slice:
        """Where one encoding's tokens sit in a padded row `width` tokens wide."""
        count = len(encoding.ids)
        return slice(width - count, width) if self.encoder.padding_side == "left" else slice(0, count)

    def infer(self, encodings: Sequence) -> list:
        """The task's raw result per encoding from one model run (see `rows`). The server's
        batcher calls this with encodings merged from many requests."""
        arrays, outputs = self.run_model(encodings)
        return list(self.rows(encodings, arrays, outputs))

    def rows(self, encodings: Sequence, arrays: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
        raise NotImplementedError

    def run_batches(self, texts: list[str], batch_size: int, outputs: Sequence[str] | None = None):
        """Yield (indices, encodings, arrays, outputs) per length-sorted batch."""
        return self.run_encodings(self.tokenize(texts), batch_size, outputs)

    def run_encodings(self, encodings: Sequence, batch_size: int, outputs: Sequence[str] | None = None):
        """`run_batches` over texts tokenized already: sorted by token count, so each model run
        is padded only to its own longest, and cut into runs of at most `batch_size` rows and
        `max_batch_tokens` padded tokens (`runtime.batching`); indices point into `encodings`.
        A static-shape graph takes its fixed rows per run."""
        lengths = [len(encoding.ids) for encoding in encodings]
        if self.batch_rows:
            positive_int(batch_size, "batch_size")
            batches = length_batches(lengths, self.batch_rows, None)
        else:
            batches = length_batches(lengths, batch_size, self.max_batch_tokens)
        for indices in batches:
            batch = [encodings[i] for i in indices]
            arrays, results = self.run_model(batch, outputs)
            yield indices, batch, arrays, results


def prompt_text(artifact: Artifact, prompt_name: str | None, prompt: str | None) -> str:
    """The text to put before every text: the prompt named `prompt_name` (one of
    `artifact.prompts`), `prompt` itself ("" for none), or else the default prompt."""
    if prompt is not None and prompt_name is not None:
        raise InputError("give prompt_name (one of the artifact's prompts) or prompt (the text), not both")
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"prompt must be a text, not {type(prompt).__name__}")
    return artifact.prompt(prompt_name) if prompt is None else prompt


def check_dimensions(artifact: Artifact, dimensions: int | None) -> int | None:
    """`dimensions` (Matryoshka truncation) if an embedding artifact's vectors have that many."""
    width = optional_positive_int(dimensions, "dimensions")
    size = embedding_size(artifact)
    if width is not None and width > size:
        raise InputError(f"dimensions must be at most this model's {size}, not {width}; "
                         "pass a smaller number, or none for whole vectors")
    return width


# The output whose last axis is the length of one vector, for the tasks that give vectors.
_VECTOR_OUTPUTS = {Task.SENTENCE_EMBEDDING: "sentence_embedding", Task.FEATURE_EXTRACTION: "last_hidden_state",
                   Task.SPARSE_EMBEDDING: "sparse_embedding"}


def embedding_size(artifact: Artifact) -> int:
    """Length of one vector of an embedding artifact (for sparse-embedding, the vocabulary size)."""
    name = _VECTOR_OUTPUTS[artifact.task]
    return int(next(o for o in artifact.outputs if o.name == name).dims[-1])


class PromptedPipeline(Pipeline):
    """A pipeline that puts a sentence-transformers prompt before every text (embedders)."""

    def tokenize(self, texts: Sequence[str], *, truncate: bool | None = None, prompt: str | None = None) -> list:
        """As `Pipeline.tokenize`, with `prompt` (default: the artifact's default prompt) before
        every text, as sentence-transformers' encode does (the server and Ray jobs tokenize
        through here too)."""
        prompt = self.artifact.default_prompt if prompt is None else prompt
        if prompt:
            texts = [prompt + text if isinstance(text, str) else text for text in texts]
        return super().tokenize(texts, truncate=truncate)

    def prompt_text(self, prompt_name: str | None, prompt: str | None) -> str:
        """The text to put before every text (see `prompt_text`)."""
        return prompt_text(self.artifact, prompt_name, prompt)


class Embedder(PromptedPipeline):
    """Sentence vectors (and per-token vectors) from embedding or feature-extraction artifacts."""

    def embed(self, texts: Sequence[str], batch_size: int = 32, *, prompt_name: str | None = None,
              prompt: str | None = None, dimensions: int | None = None) -> np.ndarray:
        """[n, dim] float32. Feature-extraction artifacts are mean-pooled over real tokens.

        `prompt_name` picks one of the artifact's prompts (`artifact.prompts`, from the
        sentence-transformers folder) to put before every text, `prompt` gives the text itself
        ("" for none); neither: the default prompt, if the folder named one. `dimensions` keeps
        the first that many values of each vector and renormalizes them (Matryoshka models)."""
        texts = self._texts(texts)
        prefix = self.prompt_text(prompt_name, prompt)
        width = check_dimensions(self.artifact, dimensions)
        result = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        encodings = self.tokenize(texts, prompt=prefix)
        for indices, batch, arrays, outputs in self.run_encodings(encodings, batch_size):
            result[indices] = self.rows(batch, arrays, outputs)
        return shorten(result, width)

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
        for indices, _, arrays, outputs in self.run_batches(texts, batch_size, [name]):
            for row, index in enumerate(indices):
                result[index] = outputs[name][row][arrays["attention_mask"][row].astype(bool)]
        return result

    @cached_property
    def result_outputs(self) -> list[str]:
        return ["sentence_embedding" if self.artifact.task is Task.SENTENCE_EMBEDDING else "last_hidden_state"]

    @cached_property  # read on every server request; the artifact's outputs do not change
    def dimensions(self) -> int:
        """Length of one sentence vector."""
        return embedding_size(self.artifact)


class SparseEmbedder(PromptedPipeline):
    """SPLADE vectors from a sparse-embedding artifact: one weight per vocabulary token, mostly
    zero, as sentence-transformers' `SparseEncoder.encode` gives them. The pooling runs in the
    graph; the pipeline keeps the non-zero weights."""

    result_outputs = ["sparse_embedding"]

    @cached_property
    def dimensions(self) -> int:
        """The vocabulary size: the length of one vector in dense form."""
        return embedding_size(self.artifact)

    @cached_property
    def max_active_dims(self) -> int | None:
        """The folder's `max_active_dims` (keep that many largest weights per text), if it set one."""
        return self.artifact.manifest.get("source", {}).get("sentence_transformers", {}).get("max_active_dims")

    def embed(self, texts: Sequence[str], batch_size: int = 32, *, prompt_name: str | None = None,
              prompt: str | None = None, max_active_dims: int | None = None,
              dimensions: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text, (indices, values): the vocabulary ids with a non-zero weight, ascending,
        and their float32 weights. `max_active_dims` keeps only that many largest weights
        (default: the folder's, else all). Prompts as `Embedder.embed`."""
        if dimensions is not None:
            raise InputError("a sparse vector has one weight per vocabulary token and no Matryoshka dimensions; "
                             "drop dimensions, or keep the largest weights with max_active_dims")
        dense = self.embed_dense(texts, batch_size, prompt_name=prompt_name, prompt=prompt,
                                 max_active_dims=max_active_dims)
        return [(np.flatnonzero(row), row[np.flatnonzero(row)]) for row in dense]

    def embed_csr(self, texts: Sequence[str], batch_size: int = 32, **options) -> dict[str, np.ndarray]:
        """The vectors of `texts` as one CSR matrix without scipy: {"indptr", "indices",
        "values", "shape"} (scipy.sparse.csr_matrix((values, indices, indptr), shape) takes it)."""
        pairs = self.embed(texts, batch_size, **options)
        indptr = np.zeros(len(pairs) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(indices) for indices, _ in pairs])
        return {"indptr": indptr,
                "indices": np.concatenate([i for i, _ in pairs]) if pairs else np.zeros(0, np.int64),
                "values": np.concatenate([v for _, v in pairs]) if pairs else np.zeros(0, np.float32),
                "shape": np.array([len(pairs), self.dimensions], dtype=np.int64)}

    def embed_dense(self, texts: Sequence[str], batch_size: int = 32, *, prompt_name: str | None = None,
                    prompt: str | None = None, max_active_dims: int | None = None) -> np.ndarray:
        """[n, vocabulary] float32: the vectors with their zeros."""
        texts = self._texts(texts)
        prefix = self.prompt_text(prompt_name, prompt)
        keep = optional_positive_int(max_active_dims, "max_active_dims") or self.max_active_dims
        result = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for indices, batch, arrays, outputs in self.run_encodings(self.tokenize(texts, prompt=prefix), batch_size):
            result[indices] = self.rows(batch, arrays, outputs)
        if keep is not None and keep < self.dimensions:
            # as sentence-transformers' select_max_active_dims: the `keep` largest stay
            smallest = np.argpartition(-result, keep, axis=1)[:, keep:]
            np.put_along_axis(result, smallest, 0.0, axis=1)
        return result

    def rows(self, encodings, arrays, outputs) -> np.ndarray:
        """[rows, vocabulary] weights, as the graph pooled them."""
        return outputs["sparse_embedding"]

    def decode(self, vector: tuple[np.ndarray, np.ndarray], top_k: int | None = None) -> list[tuple[str, float]]:
        """(token, weight) of one vector's non-zero weights, largest first (`top_k` of them), as
        `SparseEncoder.decode` lists them."""
        indices, values = vector
        order = np.argsort(-np.asarray(values), kind="stable")[:optional_positive_int(top_k, "top_k")]
        return [(self.encoder.token(int(indices[i])), float(values[i])) for i in order]


class TokenClassifier(Pipeline):
    """Entities (label, text, start, end, score) from a token-classification artifact, as
    transformers' `pipeline("token-classification", aggregation_strategy=..., stride=...)`
    finds them (see `runtime.entities`).

    A text longer than the model's window is run in overlapping windows and their entities
    merged, so all of it is labelled. `stride` is the overlap in tokens: "auto" (the default)
    is an eighth of the window (64 of 512 tokens: ~14% more model work, and a token near a
    window's edge is also seen with context on both sides), an int sets it (0: windows side
    by side), None runs one window per text and cuts the rest (or refuses the text when the
    pipeline was loaded with truncate=False), as transformers does without `stride`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = self.artifact.labels or {}
        if not self.labels:
            raise ArtifactError(f"{self.artifact.path} has no labels.json; re-export the token classifier")
        self.word_rules = WordRules(self.encoder.subword_prefix, self.encoder.unk_id)
        self.default_stride = self.encoder.max_length // 8

    def extract(self, text_or_texts: str | Sequence[str], aggregation: str = "simple", batch_size: int = 32,
                *, stride: int | str | None = "auto") -> list[dict] | list[list[dict]]:
        """Entities of one text (a list of dicts) or of each of a list of texts (a list of lists)."""
        if aggregation not in AGGREGATIONS:
            raise InputError(f"unknown aggregation '{aggregation}'; choose one of {', '.join(AGGREGATIONS)}")
        single = isinstance(text_or_texts, str)
        texts = [text_or_texts] if single else self._texts(text_or_texts, one_text_ok=True)
        windows = self.windows(texts, stride=stride)
        flat = flat_windows(windows)
        probabilities: list[Any] = [None] * len(flat)
        for indices, encodings, arrays, outputs in self.run_encodings(flat, batch_size):
            for index, row in zip(indices, self.rows(encodings, arrays, outputs)):
                probabilities[index] = row
        result = [self.entities(text, text_windows, text_probabilities, aggregation)
                  for text, text_windows, text_probabilities in zip(texts, windows, per_text(probabilities, windows))]
        return result[0] if single else result

    def windows(self, texts: Sequence[str], *, stride: int | str | None = "auto") -> list[list]:
        """Per text, the encodings of its windows (one when it fits; see the class docstring).
        The server and Ray jobs run `flat_windows` of these and give `entities` each text's."""
        if stride is None:
            return [[encoding] for encoding in self.tokenize(texts)]
        if stride == "auto":
            stride = self.default_stride
        return self.encoder.windows(texts, stride=stride)

    def rows(self, encodings, arrays, outputs) -> list[np.ndarray]:
        """Per encoding: label probabilities [its tokens, labels]."""
        logits = outputs["logits"]
        return [_softmax(logits[row, self.token_rows(logits.shape[1], encoding)])
                for row, encoding in enumerate(encodings)]

    def entities(self, text: str, encoding, probabilities, aggregation: str = "simple") -> list[dict]:
        """Entity spans of one text from its `rows` result: one encoding and its array, or the
        list of its window encodings (`windows`) and their arrays, in the same order."""
        if isinstance(encoding, (list, tuple)):
            return window_entities(text, encoding, probabilities, self.labels, aggregation, self.word_rules)
        return decode_entities(text, encoding, probabilities, self.labels, aggregation, self.word_rules)

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

    def classify(self, text_or_texts: str | tuple[str, str] | Sequence[str] | Sequence[tuple[str, str]],
                 top_k: int = 1, batch_size: int = 32) -> list[dict] | list[list[dict]]:
        """The `top_k` labels of a text, of a (first, second) sentence pair (NLI: premise,
        hypothesis), or of each item of a list of texts or of pairs. One text or one pair
        gives one result, a list a list of results."""
        single = isinstance(text_or_texts, str) or is_one_pair(text_or_texts)
        items, _ = texts_or_pairs([text_or_texts] if single else text_or_texts,
                                  what="a text, a (first, second) pair, or a list of either")
        top_k = positive_int(top_k, "top_k")
        encodings = self.tokenize_items(items)
        result: list[Any] = [None] * len(items)
        for indices, batch, arrays, outputs in self.run_encodings(encodings, batch_size):
            for index, logits in zip(indices, self.rows(batch, arrays, outputs)):
                result[index] = self.ranked(self.scores(logits), top_k)
        return result[0] if single else result

    def rows(self, encodings, arrays, outputs) -> np.ndarray:
        """[rows, labels] logits (float64)."""
        return outputs["logits"].astype(np.float64)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities from logits: softmax, or a sigmoid per label for multi-label models and
        for a single label (where softmax would always say 1.0), as transformers' pipeline does."""
        return _sigmoid(logits) if self.multi_label or logits.shape[-1] == 1 else _softmax(logits)

    def ranked(self, scores: np.ndarray, top_k: int | None = None) -> list[dict]:
        """The `top_k` best labels (all when None) of one text, best first: [{label, score}]."""
        best = np.argsort(-scores, kind="stable")[:top_k]
        return [{"label": self.labels.get(int(i), str(int(i))), "score": float(scores[i])} for i in best]


class Reranker(Pipeline):
    """Relevance of documents to a query, from a text-ranking (cross-encoder) artifact: each
    (query, document) pair goes through the model together, as CrossEncoder.predict does."""

    @cached_property
    def activation(self) -> str:
        """How the logit becomes the score: 'sigmoid' (CrossEncoder's default) or 'identity'."""
        return self.artifact.manifest.get("ranking", {}).get("activation", "sigmoid")

    def rerank(self, query: str, documents: Sequence[str], top_k: int | None = None,
               return_documents: bool = True, batch_size: int = 32) -> list[dict]:
        """[{index, score, document}] best first (`top_k` of them; all when None); `index`
        points into `documents`. Ties keep the documents' order."""
        if not isinstance(query, str) or not query.strip():
            raise InputError(f"query must be a non-empty str, not {query!r}; pass the text to rank documents for")
        documents = text_list(documents, what="a list of documents (str)")
        top_k = optional_positive_int(top_k, "top_k")
        scores = self.score([(query, document) for document in documents], batch_size=batch_size)
        best = np.argsort(-scores, kind="stable")[:top_k]
        return [{"index": int(i), "score": float(scores[i]), **({"document": documents[i]} if return_documents else {})}
                for i in best]

    def score(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """One score per (query, document) pair, in input order (CrossEncoder.predict)."""
        encodings = self.tokenize_pairs(pairs)
        logits = np.zeros(len(encodings), dtype=np.float64)
        for indices, batch, arrays, outputs in self.run_encodings(encodings, batch_size):
            logits[indices] = self.rows(batch, arrays, outputs)
        return self.scores(logits)

    def rows(self, encodings, arrays, outputs) -> np.ndarray:
        """[rows] raw scores: the one logit per pair (the server's batcher collects these)."""
        return outputs["logits"][:, 0].astype(np.float64)

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """Scores from logits with the model's activation (sigmoid unless it said otherwise)."""
        return _sigmoid(logits) if self.activation == "sigmoid" else logits


class QuestionAnswerer(Pipeline):
    """Answers found in a context, from a question-answering (extractive) artifact, as
    transformers' question-answering pipeline finds them (see `runtime.answers`): a context
    longer than the window is read in overlapping windows and the best span of all wins."""

    result_outputs = ["start_logits", "end_logits"]

    def answer(self, question: str | Sequence[str], context: str | Sequence[str], top_k: int = 1,
               max_answer_length: int = 30, *, doc_stride: int | None = None, max_seq_len: int | None = None,
               handle_impossible_answer: bool = False, align_to_words: bool = True,
               batch_size: int = 32) -> dict | list:
        """{answer, start, end, score} for a question about a context (`start`/`end`: character
        offsets into the context); a list of the `top_k` best when top_k > 1. Lists of
        questions and contexts (one context per question) give a list of those.

        `max_seq_len` is the window in tokens (question, context piece and special tokens;
        default min(the model's, 384)), `doc_stride` the overlap of consecutive windows
        (default min(max_seq_len // 2, 128)). `handle_impossible_answer` lets "no answer"
        ({"answer": "", "start": 0, "end": 0}) win when the model scores it highest.
        `align_to_words` widens spans to whole words."""
        single = isinstance(question, str) or isinstance(context, str)
        questions = [question] if isinstance(question, str) else text_list(question, what="a question or a list")
        contexts = [context] if isinstance(context, str) else text_list(context, what="a context or a list")
        if len(questions) != len(contexts):
            raise InputError(f"{len(questions)} questions but {len(contexts)} contexts; give one context per question")
        for index, (asked, given) in enumerate(zip(questions, contexts)):
            where = "" if single else f" #{index}"
            if not asked.strip():
                raise InputError(f"question{where} is empty; ask something about the context")
            if not given.strip():
                raise InputError(f"context{where} is empty; give the text the answer is to be found in")
        options = SpanOptions(positive_int(top_k, "top_k"), positive_int(max_answer_length, "max_answer_length"),
                              bool(handle_impossible_answer), bool(align_to_words))
        window = self._window(max_seq_len)
        stride = min(window // 2, 128) if doc_stride is None else doc_stride
        if isinstance(stride, bool) or not isinstance(stride, int) or not 0 <= stride < window:
            raise InputError(f"doc_stride must be a number of tokens from 0 to {window - 1}, not {stride!r}")
        # as transformers: the question first, unless the tokenizer pads on the left
        question_first = self.encoder.padding_side == "right"
        windows = [self.encoder.question_windows(asked, given, max_length=window, stride=stride,
                                                 question_first=question_first)
                   for asked, given in zip(questions, contexts)]
        flat = flat_windows(windows)
        logits: list[Any] = [None] * len(flat)
        for indices, batch, arrays, outputs in self.run_encodings(flat, batch_size):
            for index, row in zip(indices, self.rows(batch, arrays, outputs)):
                logits[index] = row
        cls_id = self.encoder.special_token("cls_token")[1]
        results = [best_answers(given, context_windows, window_logits, options,
                                context_sequence=1 if question_first else 0, cls_id=cls_id)
                   for given, context_windows, window_logits in zip(contexts, windows, per_text(logits, windows))]
        results = [found[0] if top_k == 1 and found else found for found in results]
        return results[0] if single else results

    def _window(self, max_seq_len: int | None) -> int:
        """Tokens per window: `max_seq_len`, by default min(the model's, 384) as transformers."""
        if self.encoder.fixed_length:
            if max_seq_len not in (None, self.encoder.fixed_length):
                raise InputError(f"this static-shape graph takes windows of {self.encoder.fixed_length} tokens; "
                                 "drop max_seq_len")
            return self.encoder.fixed_length
        if max_seq_len is None:
            return min(self.encoder.max_length, 384)
        window = positive_int(max_seq_len, "max_seq_len")
        if window > self.encoder.max_length:
            raise InputError(f"max_seq_len must be at most the model's {self.encoder.max_length} tokens, not {window}")
        return window

    def rows(self, encodings, arrays, outputs) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per encoding: its (start logits, end logits) over its own tokens."""
        start, end = outputs["start_logits"], outputs["end_logits"]
        return [(start[row, self.token_rows(start.shape[1], encoding)],
                 end[row, self.token_rows(end.shape[1], encoding)]) for row, encoding in enumerate(encodings)]


class FillMask(Pipeline):
    """The likeliest tokens for each mask token in a text, from a fill-mask (masked language
    model) artifact, as transformers' fill-mask pipeline gives them."""

    result_outputs = ["logits"]

    @cached_property
    def mask_token(self) -> tuple[str, int]:
        """(text, id) of the tokenizer's mask token, e.g. ("[MASK]", 103)."""
        token, token_id = self.encoder.special_token("mask_token")
        if token is None:
            raise ArtifactError(f"{self.artifact.path}/tokenizer_config.json names no mask_token that the tokenizer "
                                "knows; re-export the model with its own tokenizer")
        return token, token_id

    def fill(self, text_or_texts: str | Sequence[str], top_k: int = 5, batch_size: int = 32) -> list:
        """For one text with one mask token: its `top_k` fillers, best first, as [{score, token,
        token_str, sequence}] (`sequence`: the text with the filler in place). With several mask
        tokens, one such list per mask; for a list of texts, one result per text."""
        single = isinstance(text_or_texts, str)
        texts = [text_or_texts] if single else self._texts(text_or_texts, one_text_ok=True)
        top_k = positive_int(top_k, "top_k")
        mask, mask_id = self.mask_token
        encodings = self.tokenize(texts)
        for index, (text, encoding) in enumerate(zip(texts, encodings)):
            if mask_id not in encoding.ids:
                where = "the text" if single else f"text #{index}"
                if mask in text:
                    raise InputError(f"the {mask} in {where} is past the first {self.encoder.max_length} tokens the "
                                     "model reads, so it was cut; shorten the text before it")
                raise InputError(f"{where} ({text[:40]!r}) has no mask token; write {mask} where the word to "
                                 f"predict goes, e.g. 'Paris is the {mask} of France.'")
        result: list[Any] = [None] * len(texts)
        for indices, batch, arrays, outputs in self.run_encodings(encodings, batch_size):
            for index, encoding, probabilities in zip(indices, batch, self.rows(batch, arrays, outputs)):
                result[index] = self.fillers(encoding, probabilities, top_k)
        return result[0] if single else result

    def rows(self, encodings, arrays, outputs) -> list[np.ndarray]:
        """Per encoding: vocabulary probabilities [its mask tokens, vocabulary]."""
        logits, mask_id = outputs["logits"], self.mask_token[1]
        rows = []
        for row, encoding in enumerate(encodings):
            positions = np.flatnonzero(np.asarray(encoding.ids) == mask_id)
            rows.append(_softmax(logits[row, self.token_rows(logits.shape[1], encoding)][positions]))
        return rows

    def fillers(self, encoding, probabilities: np.ndarray, top_k: int) -> list:
        """The `top_k` fillers of each mask of one encoding (a flat list when it has one)."""
        ids = np.asarray(encoding.ids)
        positions = np.flatnonzero(ids == self.mask_token[1])
        pad_id = self.encoder.pad_id
        one_mask = len(positions) == 1
        per_mask = []
        for position, scores in zip(positions, probabilities):
            best = np.argsort(-scores, kind="stable")[:top_k]
            options = []
            for token in best:
                filled = ids.copy()
                filled[position] = token
                filled = filled[filled != pad_id]
                # transformers keeps special tokens when there are several masks, so the other
                # masks stay visible in each sequence
                options.append({"score": float(scores[token]), "token": int(token),
                                "token_str": self.encoder.decode([int(token)]),
                                "sequence": self.encoder.decode(filled.tolist(), skip_special_tokens=one_mask)})
            per_mask.append(options)
        return per_mask[0] if one_mask else per_mask


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


PIPELINES = {
    Task.SENTENCE_EMBEDDING: Embedder,
    Task.FEATURE_EXTRACTION: Embedder,
    Task.TOKEN_CLASSIFICATION: TokenClassifier,
    Task.SEQUENCE_CLASSIFICATION: SequenceClassifier,
    Task.TEXT_RANKING: Reranker,
    Task.QUESTION_ANSWERING: QuestionAnswerer,
    Task.FILL_MASK: FillMask,
    Task.SPARSE_EMBEDDING: SparseEmbedder,
}
