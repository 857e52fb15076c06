"""The artifact directory: model files, tokenizer, config, labels and the manifest.

Reads and writes `onnxport.json`. Writing a new artifact happens in a temporary sibling
directory that is renamed into place only when complete, so a failed export never leaves
a half-written OUT behind. Runtime side: no torch here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactError, ExportError
from .spec import ExportSpec, TensorInfo

MANIFEST = "onnxport.json"
MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.json"
FORMAT_VERSION = 1


class Artifact:
    """An exported artifact on disk, with its manifest loaded."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ArtifactError(f"artifact {self.path} does not exist; export one with `onnxport export -o {self.path}`")
        if not self.path.is_dir():
            raise ArtifactError(f"{self.path} is a file, not an artifact directory")
        manifest_file = self.path / MANIFEST
        if not manifest_file.exists():
            raise ArtifactError(
                f"{self.path} has no {MANIFEST}, so it is not an onnxport artifact; "
                "re-export it with `onnxport export`"
            )
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_file.read_text())
            self.spec = ExportSpec.from_dict(self.manifest["spec"])
        except (ValueError, KeyError, TypeError) as error:
            raise ArtifactError(
                f"{manifest_file} is corrupt ({type(error).__name__}: {error}); re-export the artifact"
            ) from None

    def __repr__(self) -> str:
        return f"Artifact({str(self.path)!r}, task={self.spec.task.value!r})"

    @property
    def task(self):
        return self.spec.task

    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo.from_dict(d) for d in self.manifest["inputs"]]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo.from_dict(d) for d in self.manifest["outputs"]]

    @property
    def files(self) -> dict[str, dict]:
        return self.manifest.setdefault("files", {})

    @property
    def labels(self) -> dict[int, str] | None:
        labels_file = self.path / LABELS_FILE
        if not labels_file.exists():
            return None
        return {int(k): v for k, v in json.loads(labels_file.read_text()).items()}

    def model_path(self, name: str = MODEL_FILE) -> Path:
        path = self.path / name
        if not path.exists():
            raise ArtifactError(f"{path} is missing from the artifact; re-export it")
        return path

    def verified(self, name: str = MODEL_FILE) -> bool:
        report = self.files.get(name, {}).get("verification")
        return bool(report and report.get("passed"))

    def record_verification(self, name: str, report: dict) -> None:
        self.files.setdefault(name, {})["verification"] = report
        write_manifest(self.path, self.manifest)


def write_manifest(folder: Path, manifest: dict) -> None:
    """Replace the manifest atomically (write a temp file, then rename)."""
    target = Path(folder) / MANIFEST
    handle, temp = tempfile.mkstemp(dir=folder, prefix=".onnxport.", suffix=".json")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(manifest, stream, indent=2, sort_keys=False)
            stream.write("\n")
        os.chmod(temp, 0o644)  # mkstemp makes it private; an artifact is meant to be shared
        os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def check_output_dir(out: Path, *, force: bool) -> None:
    """Refuse a non-empty OUT unless --force, before any work is done."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"output {out} is a file; choose a directory path with -o")
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"output directory {out} exists and is not empty; choose another -o or pass --force")


@contextlib.contextmanager
def staging_dir(out: Path, *, force: bool) -> Iterator[Path]:
    """Yield a temp dir beside OUT; on success it replaces OUT, on error it is removed."""
    out = Path(out)
    check_output_dir(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    os.chmod(staging, 0o755)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        # --force: move the old one aside first so a failure here still leaves something whole.
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / "artifact")
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)


# Protobuf cannot serialize more than 2 GiB; above this the weights go to NAME.data.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def save_onnx(model, path: Path, *, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> list[Path]:
    """Save a ModelProto to `path` atomically (temp name, then rename), with its weights in
    `path.data` when they are too large for one protobuf. Returns the files written."""
    import onnx

    path = Path(path)
    weights = sum(len(t.raw_data) or t.ByteSize() for t in model.graph.initializer)
    external = weights > external_data_threshold
    temp = path.with_name(f".{path.name}.partial")
    data_name = path.name + ".data"
    try:
        if external:
            # The data file name is recorded inside the model, so it must be the final name.
            onnx.save_model(model, str(temp), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
        else:
            onnx.save_model(model, str(temp))
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()
    if not external and (path.parent / data_name).exists():
        (path.parent / data_name).unlink()
    return [path] + ([path.parent / data_name] if external else [])


def file_facts(paths: list[Path]) -> dict:
    """sha256 and size of a model file plus its external data."""
    import hashlib

    digest = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return {"sha256": digest.hexdigest(), "size_bytes": sum(p.stat().st_size for p in paths),
            "external_data": [p.name for p in paths[1:]]}
