"""`map_dataset`: an artifact's task applied to a column of any Ray Dataset, by a fixed pool
of actors that each load the pipeline once.

The driver does everything that can fail early (the artifact opens, its task fits, the
model file is picked and its verdict read), ships the artifact into Ray's object store, and
returns the lazy dataset; nothing runs until it is consumed (written, iterated, counted).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Sequence

from ..core.arguments import choice, optional_positive_int, positive_int, string_list
from ..core.artifact import FAILED, MODIFIED, Artifact
from ..core.messages import notice
from ..core.spec import Task
from ..errors import InputError
from ..runtime.batching import DEFAULT_BATCH_TOKENS
from ..runtime.pipelines import (AGGREGATIONS, PIPELINES, VERB_TASKS, check_dimensions, choose_model_file,
                                 prompt_text)
from ..runtime.tokenization import TextEncoder
from .columns import DEFAULT_COLUMNS, ERROR_COLUMN, TASK_METHODS, check_pair_column
from .compat import actor_pool_args, import_ray, split_blocks
from .shipping import pack_artifact
from .worker import ArtifactWorker

TASK_FNS = tuple(TASK_METHODS)
# Rows handed to an actor at a time: enough to sort into well-filled model runs, small
# enough that several actors share a file of a few thousand rows.
ROWS_PER_BATCH = 1024
# CPUs a job leaves to Ray Data's list, read, split and write tasks: they each ask for one,
# and with every CPU held by an actor they never start (the job hangs; Ray 2.60).
IO_CPUS = 1


def map_dataset(dataset: Any, artifact: str | Path | Artifact, *, task_fn: str = "embed", text_column: str = "text",
                output_column: str | None = None, error_column: str = ERROR_COLUMN, model: str = "auto",
                batch_size: int = 32, rows_per_batch: int = ROWS_PER_BATCH, actors: int | None = None,
                cpus_per_actor: int = 1, truncate: bool = True, aggregation: str = "simple",
                stride: int | str | None = "auto", top_k: int = 1, pair_column: str | None = None,
                providers: Sequence[str] | None = None, max_batch_tokens: int | None = DEFAULT_BATCH_TOKENS,
                prompt_name: str | None = None, prompt: str | None = None, dimensions: int | None = None,
                worker: type = ArtifactWorker) -> Any:
    """`dataset` with the artifact's results in `output_column` (default: embedding, entities or
    labels) and a per-row `error_column` (null when the row succeeded; else why, with an empty
    result). Every other column, ids included, is kept.

    task_fn: "embed", "ner" or "classify". batch_size: rows per model run, and
    max_batch_tokens its padded tokens (as in `onnxport.load`); rows_per_batch: rows per Ray
    batch, sorted by length into those runs. actors: size of the actor pool
    (default: the cluster's CPUs / cpus_per_actor); each actor runs onnxruntime with
    `cpus_per_actor` threads. truncate=False: a text over the model's length is a failed row.
    aggregation and stride (ner), top_k (classify): as in the pipelines. pair_column
    (classify): every row is a sentence pair, its second text in that column; without it, a
    `text_pair` column makes the rows that have a value pairs. prompt_name or prompt, and
    dimensions (embed): as in `Embedder.embed`.
    """
    ray = import_ray()
    if not ray.is_initialized():
        ray.init()  # what Ray Data itself does on first use: join RAY_ADDRESS's cluster, else start one
    task_fn = choice(task_fn, "task_fn", TASK_FNS)
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    check_task(art, task_fn)
    if task_fn != "embed" and (prompt_name, prompt, dimensions) != (None, None, None):
        raise InputError(f"prompt_name, prompt and dimensions are for task_fn='embed', not {task_fn!r}")
    batch_size = positive_int(batch_size, "batch_size")
    max_batch_tokens = optional_positive_int(max_batch_tokens, "max_batch_tokens")
    rows_per_batch = positive_int(rows_per_batch, "rows_per_batch")
    cpus_per_actor = positive_int(cpus_per_actor, "cpus_per_actor")
    top_k = positive_int(top_k, "top_k")
    if aggregation not in AGGREGATIONS:
        raise InputError(f"unknown aggregation '{aggregation}'; choose one of {', '.join(AGGREGATIONS)}")
    output_column = output_column or DEFAULT_COLUMNS[task_fn]
    if output_column == error_column:
        raise InputError(f"the output and error columns are both named {output_column!r}; give them different names")
    actors = positive_int(actors, "actors") if actors is not None else default_actors(ray, cpus_per_actor)
    free = ray.cluster_resources().get("CPU", 0) - IO_CPUS
    if actors * cpus_per_actor > free:
        warnings.warn(f"{actors} actor{'s' if actors != 1 else ''} × {cpus_per_actor} CPUs need "
                      f"{actors * cpus_per_actor} "
                      f"CPUs, but the cluster has {free:g} to spare now (Ray Data's read and write tasks need one "
                      "more); the job stalls until the autoscaler adds nodes. Ask for fewer actors", stacklevel=2)

    model_file = choose_model_file(art, model)
    verdict = art.verdict(model_file)
    if verdict in (FAILED, MODIFIED):
        warnings.warn(f"{model_file} in {art.path} is '{verdict}'; its outputs may be wrong (see `onnxport verify "
                      f"{art.path}`)", stacklevel=2)
    notice(f"onnxport: {actors} actor{'s' if actors != 1 else ''} × {cpus_per_actor} CPU run {model_file} "
           f"({art.files.get(model_file, {}).get('kind', 'fp32')}, {verdict}) of {art.path}")
    shipment = [ray.put(pack_artifact(art, model_file))]  # in a list: Ray passes it on as a reference
    if task_fn == "ner" and stride not in ("auto", None):
        TextEncoder.for_artifact(art).check_stride(stride)  # a bad stride is the caller's error, before any actor
    if pair_column is not None:  # (schema() may read a first block: only when there is something to check)
        check_pair_column(dataset.schema().names, task_fn, pair_column, text_column, "the dataset")
    options = ({"aggregation": aggregation, "stride": stride} if task_fn == "ner"
               else {"top_k": top_k, "pair_column": pair_column} if task_fn == "classify"
               else embed_options(art, prompt_name, prompt, dimensions))
    return split_blocks(dataset, rows_per_batch).map_batches(
        worker,
        batch_format="pyarrow",
        batch_size=rows_per_batch,
        num_cpus=cpus_per_actor,
        fn_constructor_kwargs=dict(
            shipment=shipment, path=str(art.path.resolve()), model_file=model_file, verdict=verdict,
            task_fn=task_fn, text_column=text_column, output_column=output_column, error_column=error_column,
            threads=cpus_per_actor, batch_size=batch_size, max_batch_tokens=max_batch_tokens, truncate=truncate,
            providers=string_list(providers, "providers") if providers is not None else None, options=options),
        **actor_pool_args(ray.__version__, actors),
    )


def embed_options(art: Artifact, prompt_name: str | None, prompt: str | None, dimensions: int | None) -> dict:
    """The worker's embed options, checked on the driver: the prompt text (the artifact's
    default when neither is given) and the Matryoshka width."""
    return {"prompt": prompt_text(art, prompt_name, prompt), "dimensions": check_dimensions(art, dimensions)}


def default_actors(ray: Any, cpus_per_actor: int) -> int:
    """As many actors as the cluster's CPUs hold with one CPU left free, at least one: Ray
    Data's read and write tasks need a CPU, and a pool that takes them all stalls the job."""
    return max(1, math.floor((ray.cluster_resources().get("CPU", 1) - IO_CPUS) / cpus_per_actor))


def check_task(artifact: Artifact, task_fn: str) -> None:
    """InputError unless the artifact's pipeline does `task_fn`."""
    task_fn = choice(task_fn, "task_fn", TASK_FNS)
    method = TASK_METHODS[task_fn]
    pipeline = PIPELINES.get(artifact.task)
    if pipeline is None or not hasattr(pipeline, method):
        raise InputError(f"{artifact.path} is a {artifact.task.value} artifact; task_fn={task_fn!r} needs "
                         f"{VERB_TASKS[method]}")
    if artifact.task is Task.SPARSE_EMBEDDING:  # its (indices, values) have no Arrow column type here yet
        raise InputError(f"{artifact.path} is a sparse-embedding artifact, which Ray jobs do not run yet; embed "
                         "with the local engine (onnxport embed ARTIFACT INPUT -o OUT.jsonl)")
