"""Side environments: virtualenvs the benchmark builds for contenders that need other versions.

sentence-transformers' onnx and OpenVINO backends need optimum and optimum-intel, which pin
an older transformers than onnxport uses; fastembed pins its own huggingface-hub. Each gets a
venv that sees this interpreter's packages (torch, numpy: nothing heavy is downloaded twice)
and installs its pinned set on top. A venv is built once per pin set and Python version,
under `ONNXPORT_BENCH_ENVS` (default `~/.cache/onnxport/bench-envs`), and reused; building
one needs the package index. A venv cannot be moved once built (its scripts name their own
path), so it is built in place and marked complete last: an unfinished one is rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ...errors import InputError

# The versions measured in docs/bench.md; pip resolves the rest on top of this interpreter's packages.
SIDE_ENVS: dict[str, tuple[str, ...]] = {
    "optimum": ("sentence-transformers[onnx,openvino]==5.7.0", "transformers==4.57.6", "optimum-onnx==0.1.0",
                "optimum-intel==1.27.0", "openvino==2026.4.1"),
    "fastembed": ("fastembed==0.9.1",),
}
# What each environment's report line names.
SIDE_ENV_PACKAGES: dict[str, tuple[str, ...]] = {
    "optimum": ("sentence-transformers", "transformers", "optimum-onnx", "optimum-intel", "openvino", "onnxruntime"),
    "fastembed": ("fastembed", "onnxruntime", "tokenizers"),
}
_COMPLETE = "onnxport-complete"


def envs_root() -> Path:
    return Path(os.environ.get("ONNXPORT_BENCH_ENVS") or Path.home() / ".cache" / "onnxport" / "bench-envs")


def env_dir(name: str) -> Path:
    """Where the venv for `name` lives: one per pin set and Python version."""
    key = "\n".join((sys.version, sys.executable, *SIDE_ENVS[name]))
    return envs_root() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def env_python(name: str) -> Path:
    folder = env_dir(name)
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(name: str, say=None, timeout: float = 1800) -> Path:
    """The python of the side environment `name`, built first if needed. A failure (no
    package index, a pin that does not resolve) raises InputError with pip's last words."""
    folder, python = env_dir(name), env_python(name)
    if (folder / _COMPLETE).exists() and python.exists():
        return python
    if folder.exists():
        shutil.rmtree(folder)  # unfinished: an interrupted build
    pins = SIDE_ENVS[name]
    if say:
        say(f"building the side environment {folder.name} once: pip install {' '.join(pins)}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    steps = ([sys.executable, "-m", "venv", "--system-site-packages", str(folder)],
             [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins])
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            shutil.rmtree(folder, ignore_errors=True)
            raise InputError(f"building the side environment for {name} took over {timeout:.0f} s") from None
        if done.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            lines = [line for line in (done.stderr or done.stdout).splitlines()
                     if line.strip() and "is ignored" not in line]
            raise InputError(f"could not build the side environment for {name} ({' '.join(pins)}): "
                             f"{lines[-1].strip() if lines else f'exit code {done.returncode}'}")
    (folder / _COMPLETE).write_text("\n".join(pins) + "\n")
    return python
