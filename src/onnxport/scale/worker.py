"""The Ray Data actor that runs an artifact: one per `cpus_per_actor` CPUs, each loading
the pipeline once and then turning Ray batches (pyarrow Tables) into the same tables plus
the result and error columns.

Inside a batch, rows are checked one by one (a null, a non-string, a sentence pair missing
its second text, or a text over the model's length with truncation off gets an `error`
value and an empty result instead of failing the job; NER runs a long text in overlapping
windows instead), tokenized once (a pair through the tokenizer's pair template), sorted by
token count and run in model runs of `batch_size` rows, so each run is padded only to its
own longest text: Ray Data hands rows in file order, not by length.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..core.model_files import MODEL_CHOICES
from ..runtime.batching import DEFAULT_BATCH_TOKENS
from ..runtime.entities import flat_windows, per_text
from ..runtime.pipelines import load
from ..runtime.vectors import shorten
from .columns import check_columns, embedding_column, error_column, records_column, row_pairs, text_problem
from .jsonl import PROBLEM_COLUMN
from .shipping import open_shipped


class ArtifactWorker:
    """Callable class for `Dataset.map_batches` (batch_format="pyarrow"). Subclass it to add
    per-batch work (metrics, fault drills) and pass the subclass as `worker=` to `map_dataset`."""

    def __init__(self, *, shipment: list, path: str, model_file: str, verdict: str, task_fn: str,
                 text_column: str, output_column: str, error_column: str, threads: int, batch_size: int,
                 truncate: bool, providers: list[str] | None, options: dict[str, Any],
                 max_batch_tokens: int | None = DEFAULT_BATCH_TOKENS) -> None:
        # tokenizers sizes its thread pool from the host's cores on first use; an actor owns
        # `threads` CPUs, so it must not start more (Ray sets OMP_NUM_THREADS the same way).
        os.environ["RAYON_NUM_THREADS"] = str(threads)
        # The driver already said which file runs; one line per actor would only repeat it.
        logging.getLogger("onnxport").setLevel(logging.WARNING)
        import ray

        artifact = open_shipped(path, ray.get(shipment[0]), model_file, verdict)
        kind = next(kind for kind, name in MODEL_CHOICES.items() if name == model_file)
        self.pipeline = load(artifact, model=kind, threads=threads, providers=providers, truncate=True,
                             max_batch_tokens=max_batch_tokens)
        self.task_fn = task_fn
        self.text_column = text_column
        self.output_column = output_column
        self.error_column = error_column
        self.batch_size = batch_size
        self.truncate = truncate
        self.options = options

    def __call__(self, table: Any) -> Any:
        errors: list[str | None] = [None] * table.num_rows
        if PROBLEM_COLUMN in table.column_names:  # JSON Lines: rows the reader found bad (see jsonl.py)
            errors = table.column(PROBLEM_COLUMN).to_pylist()
            table = table.remove_column(table.column_names.index(PROBLEM_COLUMN))
        check_columns(table.column_names, self.text_column, self.output_column, self.error_column, "the dataset")
        values = table.column(self.text_column).to_pylist()
        seconds, pair_errors = row_pairs(table, self.task_fn, self.options.get("pair_column"))
        results: list[Any] = [None] * len(values)
        rows = []
        for i, value in enumerate(values):
            errors[i] = errors[i] or text_problem(value, self.text_column) or pair_errors[i]
            if errors[i] is None:
                rows.append(i)
        # a row's item: its text, or (text, second text) for a sentence pair
        items = [values[i] if seconds[i] is None else (values[i], seconds[i]) for i in range(len(values))]
        windows = self._windows(rows, items, errors)
        runnable = [(row, row_windows) for row, row_windows in zip(rows, windows) if errors[row] is None]
        windows = [row_windows for _, row_windows in runnable]
        flat = flat_windows(windows)
        raws: list[Any] = [None] * len(flat)
        for indices, batch, arrays, outputs in self.pipeline.run_encodings(flat, self.batch_size):
            for index, raw in zip(indices, self.pipeline.rows(batch, arrays, outputs)):
                raws[index] = raw
        for (row, row_windows), row_raws in zip(runnable, per_text(raws, windows)):
            results[row] = self._finish(values[row], row_windows, row_raws)
        column = embedding_column(results) if self.task_fn == "embed" else records_column(self.task_fn, results)
        return table.append_column(self.output_column, column).append_column(self.error_column,
                                                                             error_column(errors))

    def _windows(self, rows: list[int], items: list, errors: list) -> list[list]:
        """Per row, its encodings: the overlapping windows of a text for NER (nothing is cut,
        so nothing is refused), else (and for NER with stride None) one encoding, with an
        error set on a row over the model's length when truncation is off."""
        stride = self.options.get("stride", "auto")
        if self.task_fn == "ner" and stride is not None:
            return self.pipeline.windows([items[i] for i in rows], stride=stride)
        if self.task_fn == "embed":  # with the prompt the driver chose (the artifact's default, or none)
            encodings = self.pipeline.tokenize([items[i] for i in rows], truncate=True,
                                               prompt=self.options.get("prompt"))
        else:
            encodings = self.pipeline.tokenize_items([items[i] for i in rows], truncate=True)
        if not self.truncate:
            for row, encoding in zip(rows, encodings):
                if encoding.overflowing:
                    errors[row] = (f"longer than the model's {self.pipeline.encoder.max_length} tokens; shorten "
                                   "it, or allow truncation (drop --no-truncate)")
        return [[encoding] for encoding in encodings]

    def _finish(self, text: str, encodings: list, raws: list) -> Any:
        """The task's result for one row from its encodings and their raw model outputs (see
        Pipeline.rows): one of each, or for NER one per window."""
        if self.task_fn == "embed":
            return shorten(raws[0][None], self.options.get("dimensions"))[0]
        if self.task_fn == "ner":
            return self.pipeline.entities(text, encodings, raws, self.options.get("aggregation", "simple"))
        return self.pipeline.ranked(self.pipeline.scores(raws[0]), self.options.get("top_k", 1))
