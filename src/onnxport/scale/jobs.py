"""`run`: files in, files out, on a Ray cluster (or a local Ray started for the job), with a
summary counted from what was written.

The counts come from the output itself, not from the workers: a batch retried after an
actor died is counted once, as it is written once. For Parquet inputs the rows written
are also compared with the rows read, so a lost or duplicated row fails the job loudly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..core.artifact import Artifact
from ..core.cpus import available_cpus
from .. import errors
from ..errors import InputError, OnnxportError
from .columns import DEFAULT_COLUMNS, ERROR_COLUMN, check_columns, check_pair_column
from .compat import import_ray
from .jsonl import first_record_fields, read_jsonl
from .mapping import IO_CPUS, check_task, default_actors, map_dataset
from .paths import Inputs, Output, resolve_inputs, resolve_output


@dataclass(frozen=True)
class ScaleSummary:
    rows: int
    failed: int
    seconds: float
    output: str
    files: int
    actors: int
    cpus_per_actor: int

    @property
    def texts_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "texts_per_second": round(self.texts_per_second, 1)}

    def line(self) -> str:
        return (f"{self.rows} rows in {self.seconds:.1f}s ({self.texts_per_second:.0f} texts/s), "
                f"{self.failed} failed; {self.files} file{'s' if self.files != 1 else ''} in {self.output}")


def run(input: str | Sequence[str], output: str | os.PathLike, artifact: str | Path | Artifact, *,
        address: str | None = None, actors: int | None = None, cpus_per_actor: int = 1,
        task_fn: str = "embed", text_column: str = "text", output_column: str | None = None,
        error_column: str = ERROR_COLUMN, **options: Any) -> ScaleSummary:
    """Apply `artifact` to Parquet / JSON Lines files (paths, directories, globs or URIs) and
    write OUTPUT.parquet or OUTPUT.jsonl (a directory of part files). `address`: a Ray
    cluster ("auto", "ray://host:10001"); None starts a local Ray with this machine's CPUs
    (or joins the one RAY_ADDRESS names). Other options are `map_dataset`'s."""
    inputs = resolve_inputs(input)
    target = resolve_output(output)
    # Everything that can be checked before Ray starts is checked here.
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    check_task(art, task_fn)
    output_column = output_column or DEFAULT_COLUMNS[task_fn]
    if inputs.format == "parquet":
        names, source = parquet_columns(inputs), inputs.paths[0]
    else:
        names = first_record_fields(inputs.filesystem, inputs.paths[0])
        source = f"the first record of {inputs.paths[0]}"
    if names is not None:  # (a first line that is no JSON object is that row's error)
        check_columns(names, text_column, output_column, error_column, source)
        check_pair_column(names, task_fn, options.get("pair_column"), text_column, source)
    ray = import_ray()
    started_here = _connect(ray, address)
    try:
        # CPUs the actors may take: all but the ones Ray Data's read and write tasks need.
        cpus = ray.cluster_resources().get("CPU", 0) - IO_CPUS
        needed = (actors or 1) * cpus_per_actor
        if started_here and needed > cpus:
            raise InputError(f"{actors or 1} actor{'s' if (actors or 1) != 1 else ''} × {cpus_per_actor} CPUs "
                             f"need {needed} CPUs, but this machine has {cpus:g}; ask for fewer, or join a cluster "
                             "(--address)")
        actors = actors or default_actors(ray, cpus_per_actor)
        started = time.perf_counter()
        dataset = map_dataset(_read(ray, inputs, text_column), art, task_fn=task_fn, text_column=text_column,
                              output_column=output_column, error_column=error_column, actors=actors,
                              cpus_per_actor=cpus_per_actor, **options)
        _write(dataset, target)
        seconds = time.perf_counter() - started
    except Exception as error:
        raise _user_error(error) from None
    finally:
        if started_here:
            ray.shutdown()
    rows, failed, files = count_output(target, error_column)
    expected = count_parquet_rows(inputs) if inputs.format == "parquet" else None
    if expected is not None and expected != rows:
        raise OnnxportError(f"{target.path} holds {rows} rows but the input has {expected}: rows were lost or "
                            "duplicated. Please report this with the Ray version and the command")
    return ScaleSummary(rows=rows, failed=failed, seconds=seconds, output=target.path, files=files, actors=actors,
                        cpus_per_actor=cpus_per_actor)


def local_cpus() -> int:
    """The CPUs a local Ray's actors may use: this process's (affinity, cgroup quota)."""
    return max(1, available_cpus())


def _connect(ray: Any, address: str | None) -> bool:
    """Connect to Ray; True when this call started a local Ray (and so must stop it)."""
    if ray.is_initialized():
        return False
    settings = dict(include_dashboard=False, log_to_driver=True, logging_level="WARNING")
    try:
        if address is not None or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address, **settings)
            return False
        # One logical CPU more than the machine has: Ray Data's list, read, split and write tasks
        # each ask for a CPU, and with every CPU held by an actor they never start (the job
        # hangs). They mostly wait on I/O; the actors get exactly the machine's CPUs.
        ray.init(num_cpus=local_cpus() + IO_CPUS, **settings)
        return True
    except ConnectionError as error:
        raise InputError(f"cannot reach the Ray cluster at {address or os.environ.get('RAY_ADDRESS')}: {error}; "
                         "check --address (auto, or ray://HEAD:10001) and that the cluster runs") from None


def _read(ray: Any, inputs: Inputs, text_column: str) -> Any:
    if inputs.format == "parquet":
        return ray.data.read_parquet(inputs.paths, filesystem=inputs.filesystem)
    return read_jsonl(ray, inputs.uris, text_column)


def _write(dataset: Any, target: Output) -> None:
    """Write the dataset; locally into a hidden temp directory renamed into place at the end."""
    if not target.local:
        getattr(dataset, f"write_{target.format}")(target.path, filesystem=target.filesystem)
        return
    final = Path(target.path)
    temp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial"))
    try:
        getattr(dataset, f"write_{target.format}")(str(temp))
        os.replace(temp, final)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def count_output(target: Output, error_column: str) -> tuple[int, int, int]:
    """(rows, failed rows, files) of a written output, from its error column."""
    from pyarrow import fs

    files = [info.path for info in target.filesystem.get_file_info(fs.FileSelector(target.path, recursive=True))
             if info.type == fs.FileType.File and not os.path.basename(info.path).startswith((".", "_"))]
    rows = failed = 0
    if target.format == "parquet":
        import pyarrow.parquet as pq

        for path in files:
            errors = pq.read_table(path, columns=[error_column], filesystem=target.filesystem).column(0)
            rows += len(errors)
            failed += len(errors) - errors.null_count
        return rows, failed, len(files)
    for path in files:
        with target.filesystem.open_input_stream(path) as stream:
            for line in stream.read().decode("utf-8").splitlines():
                if line.strip():
                    rows += 1
                    failed += json.loads(line).get(error_column) is not None
    return rows, failed, len(files)


def parquet_columns(inputs: Inputs) -> list[str]:
    """The columns of the first Parquet input (read from its footer)."""
    import pyarrow.parquet as pq

    with inputs.filesystem.open_input_file(inputs.paths[0]) as handle:
        return list(pq.ParquetFile(handle).schema_arrow.names)


def count_parquet_rows(inputs: Inputs) -> int:
    import pyarrow.parquet as pq

    total = 0
    for path in inputs.paths:
        with inputs.filesystem.open_input_file(path) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def _user_error(error: Exception) -> Exception:
    """The OnnxportError a Ray task or actor raised, else `error`. Ray wraps a task's
    exception (its `cause`); an actor that failed in __init__ comes back as ActorDiedError
    with only the remote traceback as text, whose last onnxport error line is rebuilt."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OnnxportError) and type(current).__module__.startswith("onnxport"):
            return current
        current = getattr(current, "cause", None) or current.__cause__
    found = _REMOTE_ERROR.findall(str(error))
    if found:
        name, message = found[-1]
        kind = getattr(errors, name, None)
        if isinstance(kind, type) and issubclass(kind, OnnxportError):
            return kind(message.strip())
    return error


# "onnxport.errors.ArtifactError: message" in a remote traceback
_REMOTE_ERROR = re.compile(r"^onnxport\.errors\.(\w+): (.+)$", re.MULTILINE)
