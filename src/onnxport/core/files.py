"""Files written whole or not at all, and their fingerprints.

Every file onnxport writes (manifest, model files, sidecars, reports, command outputs)
goes through `atomic_path`: a temp file beside the target, renamed over it only when
complete, so a crash or Ctrl-C never leaves half a file where a good one was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence


@contextlib.contextmanager
def atomic_path(target: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temp path beside `target`; when the block ends without error it replaces
    `target`, otherwise it is removed and `target` is left as it was."""
    target = Path(target)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(handle)
    temp = Path(name)
    try:
        yield temp
        if fsync:
            with open(temp, "rb") as stream:
                os.fsync(stream.fileno())
        # mkstemp makes the file private; give it the mode a normally created file would have.
        os.chmod(temp, new_file_mode(target))
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def new_file_mode(target: Path) -> int:
    """The mode `target` has now, or the one a new file gets under the current umask."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as temp:
        temp.write_bytes(data)


def write_json_atomic(target: str | Path, data: Any, *, indent: int = 2) -> None:
    with atomic_path(target) as temp:
        temp.write_text(json.dumps(data, indent=indent) + "\n", encoding="utf-8")


def sha256_files(paths: Sequence[str | Path]) -> str:
    """One sha256 over the bytes of `paths`, in order (a model file and its external data)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def file_facts(paths: Sequence[Path]) -> dict:
    """sha256, size and newest mtime of a model file plus its external data, as the manifest
    records them. Size and mtime are the cheap first test of "changed since verified"; the
    hash is the real one (see `Artifact.integrity`)."""
    size, mtime = size_and_mtime(paths)
    return {"sha256": sha256_files(paths), "size_bytes": size, "mtime_ns": mtime,
            "external_data": [Path(p).name for p in paths[1:]]}


def size_and_mtime(paths: Sequence[str | Path]) -> tuple[int, int]:
    """Total size and newest modification time (ns) of `paths`."""
    stats = [os.stat(p) for p in paths]
    return sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats)
