"""Where a Ray job reads and writes: local paths, directories, globs, or any URI pyarrow's
file systems reach (s3://, gs://, hdfs://, file://).

Inputs are Parquet or JSON Lines files, one format per job, named by suffix (.parquet;
.jsonl or .json). Outputs are directories of part files, one per block, as Ray writes
them; `OUT.parquet` or `OUT.jsonl` picks the format. A local output is written into a
hidden temp directory beside it and renamed into place at the end, so a failed job leaves
nothing that looks finished.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError

INPUT_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}
OUTPUT_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}
_WILDCARDS = set("*?[")


@dataclass(frozen=True)
class Inputs:
    paths: list[str]  # in `filesystem`
    filesystem: Any
    format: str  # "parquet" or "json"
    scheme: str = ""  # "s3://" etc. for remote inputs, "" for local ones

    @property
    def uris(self) -> list[str]:
        """The paths as URIs, for readers that find the file system themselves."""
        return [self.scheme + path for path in self.paths]


@dataclass(frozen=True)
class Output:
    path: str  # where the result ends up
    filesystem: Any
    format: str
    local: bool


def _filesystem(location: str) -> tuple[Any, str, bool]:
    """(pyarrow file system, path in it, is local) for a path or URI."""
    from pyarrow import fs

    if "://" in location:
        try:
            filesystem, path = fs.FileSystem.from_uri(location)
        except Exception as error:  # pyarrow raises ArrowInvalid/OSError/ValueError by scheme
            raise InputError(f"cannot open {location}: {error}; check the URI and its credentials") from None
        return filesystem, path, isinstance(filesystem, fs.LocalFileSystem)
    return fs.LocalFileSystem(), str(Path(location).expanduser().resolve()), True


def resolve_inputs(patterns: str | Sequence[str]) -> Inputs:
    """The input files named by paths, directories (their .parquet/.jsonl files) or globs."""
    from pyarrow import fs

    patterns = [patterns] if isinstance(patterns, (str, os.PathLike)) else list(patterns)
    if not patterns:
        raise InputError("no input: give a Parquet or JSON Lines file, a directory or a glob")
    found: list[str] = []
    filesystems = set()
    filesystem = None
    scheme = ""
    for pattern in map(str, patterns):
        scheme = pattern.split("://")[0] + "://" if "://" in pattern and not pattern.startswith("file://") else ""
        filesystem, path, _ = _filesystem(pattern)
        filesystems.add(type(filesystem).__name__)
        if _WILDCARDS & set(path):
            base = _glob_base(path)
            matches = [info.path for info in _listing(filesystem, base, pattern)
                       if fnmatch.fnmatchcase(info.path, path)]
            if not matches:
                raise InputError(f"no file matches {pattern}; check the pattern")
            found += sorted(matches)
            continue
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.NotFound:
            raise InputError(f"input {pattern} does not exist; check the path")
        if info.type == fs.FileType.Directory:
            inside = sorted(i.path for i in _listing(filesystem, path, pattern) if _suffix(i.path) in INPUT_FORMATS)
            if not inside:
                raise InputError(f"directory {pattern} holds no .parquet or .jsonl files")
            found += inside
        else:
            found.append(path)
    if len(filesystems) > 1:
        raise InputError("the inputs are on different file systems; give inputs from one")
    formats = {INPUT_FORMATS.get(_suffix(path)) for path in found}
    if None in formats:
        odd = next(path for path in found if _suffix(path) not in INPUT_FORMATS)
        raise InputError(f"input {odd} is neither Parquet nor JSON Lines; --engine ray reads .parquet and .jsonl "
                         "files (convert it, or run without --engine ray)")
    if len(formats) > 1:
        raise InputError("the inputs mix Parquet and JSON Lines files; give one format per run")
    return Inputs(paths=found, filesystem=filesystem, format=formats.pop(), scheme=scheme)


def resolve_output(location: str | os.PathLike) -> Output:
    """Check the output before anything runs: a known suffix, not there yet, a parent to write in."""
    from pyarrow import fs

    location = str(location)
    suffix = _suffix(location.rstrip("/"))
    if suffix not in OUTPUT_FORMATS:
        raise InputError(f"cannot write {location}: name it OUT.parquet or OUT.jsonl (a directory of part files, "
                         "one per block, is written there)")
    filesystem, path, local = _filesystem(location)
    if filesystem.get_file_info(path).type != fs.FileType.NotFound:
        raise InputError(f"output {location} already exists; remove it, or choose another path (a Ray job never "
                         "writes into earlier results)")
    if local:
        parent = Path(path).parent
        if not parent.is_dir():
            raise InputError(f"cannot write {location}: directory {parent} does not exist; create it first")
        if not os.access(parent, os.W_OK):
            raise InputError(f"cannot write {location}: directory {parent} is not writable; choose another path")
    return Output(path=path, filesystem=filesystem, format=OUTPUT_FORMATS[suffix], local=local)


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _glob_base(path: str) -> str:
    """The deepest directory of `path` before its first wildcard."""
    parts = path.split("/")
    fixed = []
    for part in parts:
        if _WILDCARDS & set(part):
            break
        fixed.append(part)
    return "/".join(fixed) or "/"


def _listing(filesystem: Any, base: str, pattern: str) -> list:
    from pyarrow import fs

    try:
        infos = filesystem.get_file_info(fs.FileSelector(base, recursive=True))
    except FileNotFoundError:
        raise InputError(f"no file matches {pattern}: {base} does not exist") from None
    return [info for info in infos if info.type == fs.FileType.File and not os.path.basename(info.path).startswith(".")]
