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

from ..errors import ArtifactError, ExportError
from .files import write_json_atomic
from .model_files import MODEL_FILE
from .spec import ExportSpec, TensorInfo

MANIFEST = "onnxport.json"
LABELS_FILE = "labels.json"
FORMAT_VERSION = 1
# What a verification report concludes; a pass needs a reference (see checks/report.py).
PASSED, FAILED, NOT_VERIFIED = "passed", "failed", "not verified"


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
        """True only when `name` passed a verification that had a reference."""
        return self.verdict(name) == "passed"

    def verdict(self, name: str = MODEL_FILE) -> str:
        """'passed', 'failed' or 'not verified' (never run, or run with nothing to compare to)."""
        return verdict_of(self.files.get(name, {}).get("verification"))

    def record_verification(self, name: str, report: dict) -> None:
        self.files.setdefault(name, {})["verification"] = report
        write_manifest(self.path, self.manifest)


def verdict_of(report: dict | None) -> str:
    """The verdict of a recorded report dict: PASSED, FAILED or NOT_VERIFIED."""
    if not report:
        return NOT_VERIFIED
    if "verdict" in report:
        return report["verdict"]
    # Manifests written before verdicts existed: a pass always had a reference then.
    return PASSED if report.get("passed") else FAILED


def write_manifest(folder: Path, manifest: dict) -> None:
    """Replace the manifest atomically (write a temp file, then rename)."""
    write_json_atomic(Path(folder) / MANIFEST, manifest)


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
