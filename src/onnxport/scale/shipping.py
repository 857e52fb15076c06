"""Getting an artifact to Ray workers that may not see the driver's disk.

The driver packs what a pipeline needs to run one model file (the manifest, tokenizer and
label files, that model file and its external data; not the other model files nor the
hierarchy) into one object in Ray's object store. Each actor opens the artifact at the
driver's path when that path holds the same manifest (a shared disk, or the same machine),
else unpacks the shipped copy into a private temp folder. Either way it then checks the
model file's verdict itself, once, and refuses to run when it differs from the driver's:
the bytes it would run are not the bytes that were judged.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from ..core.artifact import MANIFEST, MODIFIED, Artifact
from ..errors import ArtifactError

# Files of an artifact that no pipeline reads: left behind.
_NOT_SHIPPED = {"hierarchy.json"}
_MODEL_SUFFIXES = (".onnx", ".onnx.data", ".data")


def pack_artifact(artifact: Artifact, model_file: str) -> dict[str, bytes]:
    """{relative name: bytes} of everything needed to run `model_file` of `artifact`."""
    model_parts = {path.name for path in artifact.file_paths(model_file)}
    files: dict[str, bytes] = {}
    for path in sorted(artifact.path.iterdir()):
        if not path.is_file() or path.name in _NOT_SHIPPED or path.name.startswith("."):
            continue
        if path.name.endswith(_MODEL_SUFFIXES) and path.name not in model_parts:
            continue  # another model file of the artifact (e.g. model.opt.onnx when running int8)
        files[path.name] = path.read_bytes()
    missing = model_parts - set(files)
    if missing:
        raise ArtifactError(f"{artifact.path} lacks {', '.join(sorted(missing))}; re-export the artifact")
    return files


def open_shipped(path: str, files: dict[str, bytes], model_file: str, expected_verdict: str) -> Artifact:
    """The artifact for this worker: `path` itself when it holds the shipped manifest, else
    the shipped files unpacked into a temp folder (removed when the worker exits). Raises
    ArtifactError when the model file's verdict here is not `expected_verdict`."""
    local = Path(path)
    same = (local / MANIFEST).is_file() and (local / MANIFEST).read_bytes() == files.get(MANIFEST)
    if same:
        artifact = Artifact(local)
        verdict = artifact.verdict(model_file)
        where = f"{local} on this worker"
    else:
        folder = Path(tempfile.mkdtemp(prefix="onnxport-artifact-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        artifact = Artifact(folder)
        # Fresh copies have new mtimes, so only the sha256 can say they are the judged bytes.
        verdict = artifact.verdict(model_file, deep=True)
        where = f"the copy of {path} shipped to this worker"
    if verdict != expected_verdict:
        changed = " (its bytes differ from the ones verified)" if verdict == MODIFIED else ""
        raise ArtifactError(
            f"{model_file} in {where} is '{verdict}'{changed}, but '{expected_verdict}' on the driver; the "
            "worker would run other bytes than the ones judged. Make the artifact identical on every node, "
            "or re-verify it with `onnxport verify`")
    return artifact
