"""Contenders in processes of their own, each answering the bench's commands in turn.

A worker is a fresh interpreter (this one, or a side environment's) running a contender
script (scripts.py) and then the loop below: one JSON command per line on stdin, one JSON
answer per line on a private copy of stdout (anything the libraries print goes to a log
file instead). `run` commands are timed inside the worker, around the contender's call
alone, with garbage collection off, as the in-process timing does; outputs come back
through a pickle file. So PyTorch's and onnxruntime's thread pools never share a process,
a side environment's libraries never meet onnxport's, and one contender's memory does not
weigh on another's.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from .scripts import PRELUDE

# Before the script: answers go to a duplicate of stdout; stdout itself becomes stderr.
_WORKER_HEAD = """
import os
_answers = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
"""
_WORKER_LOOP = """
import gc, pickle
from importlib import metadata

def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None

_answers.write(json.dumps({"ready": True, "detail": detail,
                           "python": sys.executable,
                           "versions": {p: _version(p) for p in args.get("packages", [])}}) + "\\n")
for _line in sys.stdin:
    _command = json.loads(_line)
    try:
        if _command["op"] == "run":
            _enabled = gc.isenabled()
            gc.disable()
            try:
                _begun = time.perf_counter()
                run(_command["texts"], _command["batch_size"])
                _answer = {"seconds": time.perf_counter() - _begun}
            finally:
                if _enabled:
                    gc.enable()
        elif _command["op"] == "outputs":
            with open(_command["path"], "wb") as _file:
                pickle.dump(outputs(_command["texts"]), _file, protocol=4)
            _answer = {"done": True}
        elif _command["op"] == "collect":
            gc.collect()
            _answer = {"done": True}
        else:
            break
    except Exception as _error:
        _answer = {"error": f"{type(_error).__name__}: {_error}"}
    _answers.write(json.dumps(_answer) + "\\n")
"""

WORKER_ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
              "PYTHONWARNINGS": "ignore"}


def worker_env() -> dict[str, str]:
    """No hub look-ups, no tokenizers threads of its own, no warnings on the log; a side
    environment must not be steered to another Python's standard library."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env.update(WORKER_ENV)
    return env


class ProcessRunner:
    """A loaded contender in its own process: `timed_run` is the worker's own timing of one
    call; `run` is the same (the bench's warm-up); `outputs` the per-text outputs for quality."""

    def __init__(self, script: str, args: dict, python: str | Path | None = None, *, wait: bool = True) -> None:
        """Start the worker; with `wait`, also wait until it has loaded. Without, several
        workers load at once; `wait_ready` (or the first command) waits for this one."""
        self.folder = Path(tempfile.mkdtemp(prefix="onnxport-bench-worker-"))
        self.log = self.folder / "worker.log"
        self.detail = self.versions = self.python = None
        self.ready = False
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [str(python or sys.executable), "-c", PRELUDE + _WORKER_HEAD + script + _WORKER_LOOP,
                 json.dumps(args)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=worker_env(),
                start_new_session=True)  # Ctrl-C reaches the bench, which closes its workers
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Until the contender has loaded; if it cannot, its error (no process or files are left)."""
        if self.ready:
            return
        try:
            ready = self._answer()
        except BaseException:
            self.close()
            raise
        self.detail, self.versions, self.python = ready.get("detail"), ready.get("versions"), ready.get("python")
        self.ready = True

    def timed_run(self, texts: list[str], batch_size: int) -> float:
        return self._ask({"op": "run", "texts": list(texts), "batch_size": batch_size})["seconds"]

    run = timed_run

    def outputs(self, texts: list[str]) -> list[dict[str, np.ndarray]]:
        path = self.folder / "outputs.pickle"
        self._ask({"op": "outputs", "texts": list(texts), "path": str(path)})
        with open(path, "rb") as file:  # written by our own worker, a moment ago
            result = pickle.load(file)
        path.unlink()
        return result

    def collect(self) -> None:
        self._ask({"op": "collect"})

    def close(self) -> None:
        """Ask the worker to exit (kill it if it does not), and remove its files; safe to repeat."""
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _ask(self, command: dict) -> dict:
        self.wait_ready()
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except OSError:
            pass  # it died: _answer says why
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:  # the worker ended: its last words are on the log
            self.process.wait()
            raise InputError(self._last_words() or f"the worker ended with exit code {self.process.returncode}")
        answer = json.loads(line)
        if "error" in answer:
            raise InputError(answer["error"])
        return answer

    def _last_words(self) -> str | None:
        lines = [line.strip() for line in self.log.read_text(errors="replace").splitlines()
                 if line.strip() and not line.startswith(("  ", "Traceback"))]
        return lines[-1][:400] if lines else None
