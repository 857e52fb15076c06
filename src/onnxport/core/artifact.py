"""The artifact directory: model files, tokenizer, config, labels and the manifest.

Reads and writes `onnxport.json`. Writing a new artifact happens in a temporary sibling
directory that is renamed into place only when complete, so a failed export never leaves
a half-written OUT behind. Runtime side: no torch here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..errors import ArtifactError, ExportError, InputError
from .arguments import file_name
from .files import file_facts, sha256_files, size_and_mtime, write_json_atomic
from .model_files import MODEL_FILE
from .spec import ExportSpec, TensorInfo

MANIFEST = "onnxport.json"
LABELS_FILE = "labels.json"
FORMAT_VERSION = 1
# What a verification report concludes; a pass needs a reference (see checks/report.py).
PASSED, FAILED, NOT_VERIFIED = "passed", "failed", "not verified"
# A verdict whose file changed after it was judged: it no longer says anything about the file.
MODIFIED = "modified since verified"
# What `Artifact.integrity` finds when it compares a file with its recorded fingerprint.
INTACT, CHANGED, MISSING, UNRECORDED = "intact", "modified", "missing", "unrecorded"
# Reports of verify runs with their own options, kept beside the verdict (newest last).
EXTRA_VERIFICATIONS, KEEP_EXTRA = "extra_verifications", 5
# model.onnx run by another engine ("openvino-f32", "openvino-bf16") has a verdict of its
# own, kept in model.onnx's entry under this key with the sha256 of the bytes it judged.
ENGINES = "engines"


def engine_key(engine: str, precision: str) -> str:
    return f"{engine}-{precision}"


class Artifact:
    """An exported artifact on disk, with its manifest loaded."""

    def __init__(self, path: str | Path) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise InputError(
                f"Artifact() takes the artifact directory as a str or pathlib.Path, not {type(path).__name__}")
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
        self._hashes: dict[tuple, str] = {}  # (name, size, mtime) -> sha256, so one command hashes once

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

    @property
    def prompts(self) -> dict[str, str]:
        """Named texts put before the input, from the sentence-transformers folder ({} for none)."""
        return dict(self.manifest.get("prompts", {}).get("prompts", {}))

    @property
    def default_prompt(self) -> str:
        """The prompt every text gets unless another is asked for, as sentence-transformers'
        default_prompt_name does ('' for none)."""
        name = self.manifest.get("prompts", {}).get("default_prompt_name")
        return self.prompts.get(name, "") if name else ""

    def prompt(self, name: str | None = None) -> str:
        """The text put before every input: the prompt called `name`, or the default one (None)."""
        if name is None:
            return self.default_prompt
        prompts = self.prompts
        if not isinstance(name, str) or name not in prompts:
            have = ", ".join(repr(n) for n in prompts) or "none"
            raise InputError(f"{self.path} has no prompt named {name!r} (its prompts, from the sentence-transformers "
                             f"folder's config_sentence_transformers.json: {have}); pass one of those, or prompt=TEXT")
        facts = self.manifest.get("source", {}).get("sentence_transformers") or {}
        if facts.get("include_prompt") is False and prompts[name]:
            raise InputError(f"{self.path}'s sentence-transformers pooling leaves the prompt's tokens out "
                             "(include_prompt: false), but the exported graph pools over every token, so a prompt "
                             "would give other vectors than sentence-transformers does; embed without one")
        return prompts[name]

    def model_path(self, name: str = MODEL_FILE) -> Path:
        path = self.path / file_name(name, "model_file")
        if not path.exists():
            raise ArtifactError(f"{path} is missing from the artifact; re-export it")
        return path

    def verified(self, name: str = MODEL_FILE) -> bool:
        """True only when `name` passed a verification that had a reference, and has not
        changed since."""
        return self.verdict(name) == PASSED

    def verdict(self, name: str = MODEL_FILE, *, deep: bool = False) -> str:
        """'passed', 'failed', 'not verified' (never run, or run with nothing to compare to),
        or 'modified since verified' (the file's bytes are not the ones that were judged;
        `deep`: always compare hashes, see `integrity`)."""
        recorded = verdict_of(self.files.get(name, {}).get("verification"))
        if recorded in (PASSED, FAILED) and self.integrity(name, deep=deep) == CHANGED:
            return MODIFIED
        return recorded

    def file_paths(self, name: str) -> list[Path]:
        """The model file and the external-data files the manifest lists for it."""
        extra = self.files.get(name, {}).get("external_data") or []
        return [self.path / name] + [self.path / part for part in extra]

    def integrity(self, name: str, *, deep: bool = False) -> str:
        """INTACT, CHANGED, MISSING or UNRECORDED (no fingerprint in the manifest).

        Cheap by default: a different size means changed; the same size and mtime as
        recorded means intact; otherwise (or with `deep`) the sha256 decides."""
        entry = self.files.get(name) or {}
        if "sha256" not in entry:
            return UNRECORDED
        paths = self.file_paths(name)
        if not all(path.is_file() for path in paths):
            return MISSING
        size, mtime = size_and_mtime(paths)
        if size != entry.get("size_bytes"):
            return CHANGED
        if not deep and entry.get("mtime_ns") == mtime:
            return INTACT
        key = (name, size, mtime)
        if key not in self._hashes:
            self._hashes[key] = sha256_files(paths)
        return INTACT if self._hashes[key] == entry["sha256"] else CHANGED

    def check_graph_io(self, name: str, inputs, outputs) -> None:
        """Refuse a graph that does not fit this artifact: a missing output of the task, or
        an input the tokenizer does not make (e.g. model.onnx swapped for another model)."""
        expected_outputs = [info.name for info in self.outputs]
        expected_inputs = {info.name for info in self.inputs}
        missing = [output for output in expected_outputs if output not in set(outputs)]
        extra = [value for value in inputs if value not in expected_inputs]
        if missing or extra:
            problem = (f"it has no output {', '.join(repr(o) for o in missing)}" if missing
                       else f"it needs input {', '.join(repr(i) for i in extra)}")
            raise ArtifactError(
                f"{self.path / name} does not fit this {self.task.value} artifact: {problem} (graph inputs "
                f"{list(inputs)}, outputs {list(outputs)}; the manifest lists inputs {sorted(expected_inputs)}, "
                f"outputs {expected_outputs}). The file was replaced after export; restore it or re-export")

    def record_verification(self, name: str, report: dict) -> bool:
        """Make `report` the verdict of `name`, fingerprinting the bytes it judged. False when
        the artifact is read-only (nothing is written; the caller says so)."""
        entry = self.files.setdefault(name, {})
        entry["verification"] = report
        entry.update(file_facts(self.file_paths(name)))
        return self.save()

    def record_extra_verification(self, name: str, report: dict) -> bool:
        """Keep `report` beside the verdict of `name` without replacing it (a run with its own
        texts, tolerance or reference); the last KEEP_EXTRA are kept."""
        extra = self.files.setdefault(name, {}).setdefault(EXTRA_VERIFICATIONS, [])
        extra.append(report)
        del extra[:-KEEP_EXTRA]
        return self.save()

    def engine_entry(self, key: str) -> dict:
        """What was recorded about model.onnx on engine `key` ({} when nothing)."""
        return self.files.get(MODEL_FILE, {}).get(ENGINES, {}).get(key) or {}

    def engine_verdict(self, key: str) -> str:
        """The verdict of model.onnx on engine `key` ('openvino-bf16'): as recorded, or
        MODIFIED when model.onnx is no longer the file that was judged."""
        entry = self.engine_entry(key)
        recorded = verdict_of(entry.get("verification"))
        if recorded in (PASSED, FAILED) and (self.integrity(MODEL_FILE) == CHANGED
                                             or entry.get("sha256") != self.files.get(MODEL_FILE, {}).get("sha256")):
            return MODIFIED
        return recorded

    def record_engine_verification(self, key: str, report: dict, facts: dict) -> bool:
        """Make `report` the verdict of model.onnx on engine `key`, with `facts` (engine,
        precision, version, the CPU it ran on). False when the artifact is read-only."""
        engines = self.files.setdefault(MODEL_FILE, {}).setdefault(ENGINES, {})
        engines[key] = {**facts, "verification": report, "sha256": self.files[MODEL_FILE].get("sha256")}
        return self.save()

    def save(self) -> bool:
        """Write the manifest; False when the artifact is read-only (then nothing is written)."""
        try:
            write_manifest(self.path, self.manifest)
        except OSError as error:
            if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return False
            raise
        return True


def verdict_flag(verdict: str) -> bool | None:
    """A verdict as a flag: True when passed, False when failed, None otherwise (not
    verified, modified since verified)."""
    return {PASSED: True, FAILED: False}.get(verdict)


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
    # OUT is staged beside itself: its nearest existing ancestor must take new entries. Said
    # now, not after the model has loaded and exported.
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ExportError(f"cannot create {out}: {ancestor} is a file, not a directory; choose another -o")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ExportError(f"cannot create {out}: {ancestor} is not writable; choose another -o")


@contextlib.contextmanager
def staging_dir(out: Path, *, force: bool) -> Iterator[Path]:
    """Yield a temp dir beside OUT; on success it replaces OUT. On an error or Ctrl-C the temp
    dir is removed, and so are the (empty) parent folders this call created for OUT, so a
    failed export leaves nothing behind. An OSError names OUT, not the temp dir."""
    out = Path(out)
    check_output_dir(out, force=force)
    created = _missing_folders(out.parent)
    staging = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
        os.chmod(staging, 0o755)
        yield staging
        _move_into_place(staging, out)
    except BaseException as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first; stop at the first one something else filled
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(error, OSError) and error.errno is not None:
            _name_out(error, out, staging)
        raise


def _name_out(error: OSError, out: Path, staging: Path | None) -> None:
    """Make `error` name OUT (or the file in it) instead of the temp dir, or instead of nothing
    (ENOSPC from a write() has no path of its own), so the user sees the path they gave."""
    name = Path(os.fsdecode(error.filename)) if isinstance(error.filename, (str, bytes)) else None
    if name is None or name.name.startswith(f".{out.name}."):
        error.filename, error.filename2 = str(out), None
    elif staging is not None and name.is_relative_to(staging):
        error.filename, error.filename2 = str(out / name.relative_to(staging)), None


def _missing_folders(folder: Path) -> list[Path]:
    """The folders `folder.mkdir(parents=True)` would create, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def _move_into_place(staging: Path, out: Path) -> None:
    if not out.exists():
        os.replace(staging, out)
        return
    # --force: move the old one aside first so a failure here still leaves something whole.
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.replace(out, old / "artifact")
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old / "artifact", out)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
