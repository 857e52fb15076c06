"""The runtime-only install (`pip install onnxport`, no extras) serves artifacts on its own.

A fresh virtualenv (no system site packages) gets the plain install of this repo: numpy,
onnxruntime, tokenizers, onnx, click, rich, and no torch or transformers (checked). The
artifacts are exported here, in the torch environment, and every answer the venv gives is
checked against an independent reference computed here: the same artifact run through
its PyTorch source (`backend="torch"`). The CLI verbs that need no torch (inspect,
optimize, verify, quantize, profile) run there too, and `export` must say which extra to
install instead of failing with a traceback.

Building the venv needs a package index (pip's ordinary one); a pip that cannot reach it
fails the test with pip's own output, it is never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import onnxport
from onnxport.core.sample_texts import builtin_texts

pytestmark = [pytest.mark.runtime_only, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
EXPORT_HINT = 'pip install "onnxport[export]"'

TEXTS = [
    "AC sleeper bus from Bangalore to Mumbai tomorrow",
    "hello world",
    "Book two tickets on the 9:45 pm Volvo to Chennai for next Friday.",
    "The quick brown fox jumps over the lazy dog.",
    "東京は日本の首都です。",
    "naïve café",
    "Prices rose 4.7% year over year, to $1,299.99 per unit.",
    "Is ONNX really faster than PyTorch on a CPU?",
]

# Copied out of the repo before `pip install`, so the build writes no build/ or egg-info
# into the work tree; everything else (pyproject, README, src, ...) goes along.
_NOT_COPIED = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache",
                                     ".import_linter_cache", ".benchmarks", ".venv*", "artifacts", "*.onnx",
                                     "*.onnx.data")


# ---------------------------------------------------------------- the venv

@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> types.SimpleNamespace:
    """A fresh venv with `pip install <this repo>` (no extras, not editable)."""
    root = tmp_path_factory.mktemp("runtime-only")
    home = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(home)], check=True, capture_output=True, text=True)
    bin_dir = home / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "CONDA_PREFIX")}
    env.update(VIRTUAL_ENV=str(home), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONNOUSERSITE="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONIOENCODING="utf-8", COLUMNS="200", NO_COLOR="1")

    source = shutil.copytree(REPO, root / "source", ignore=_NOT_COPIED)
    try:
        installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                    str(source)], env=env, cwd=root, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"`pip install {source}` into a fresh venv did not finish in {error.timeout} s; "
                    "can pip reach its package index?")
    if installed.returncode != 0:
        output = (installed.stdout + installed.stderr)[-4000:]
        unreachable = any(s in output for s in ("No matching distribution", "Could not find a version",
                                                "NewConnectionError", "Max retries exceeded",
                                                "Temporary failure in name resolution", "Network is unreachable"))
        why = ("pip could not reach a package index to install the runtime dependencies"
               if unreachable else "pip failed")
        pytest.fail(f"`pip install {source}` (the runtime-only install) into a fresh venv failed: {why}; "
                    f"exit {installed.returncode}:\n{output}")
    return types.SimpleNamespace(home=home, python=python, onnxport=bin_dir / "onnxport", env=env)


def run_python(venv, code: str, *args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv.python), "-c", code, *map(str, args)], cwd=cwd, env=venv.env,
                          capture_output=True, text=True, timeout=timeout)


def run_cli(venv, *args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv.onnxport), *map(str, args)], cwd=cwd, env=venv.env, capture_output=True,
                          text=True, timeout=timeout)


def shown(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stdout + result.stderr, shown(result)


def manifest(artifact: Path) -> dict:
    return json.loads((artifact / "onnxport.json").read_text(encoding="utf-8"))


# Runs in the venv after the work is done: nothing on the runtime path may have pulled in
# the torch side, even one whose import is guarded.
NOTHING_HEAVY = """
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers", "safetensors") if m in sys.modules)
assert not heavy, f"the runtime path imported {heavy}"
"""


# ---------------------------------------------------------------- artifacts (exported here, with torch)

@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, minilm_artifact, tiny_token_classifier_folder, tiny_sequence_classifier_folder):
    root = tmp_path_factory.mktemp("runtime-only-artifacts")
    made = types.SimpleNamespace(
        # two copies of the session's MiniLM: one only read (embed), one optimized and re-verified
        minilm=Path(shutil.copytree(minilm_artifact, root / "minilm")),
        minilm_opt=Path(shutil.copytree(minilm_artifact, root / "minilm-opt")),
        ner=onnxport.export(tiny_token_classifier_folder, out=root / "ner").path,
        cls=onnxport.export(tiny_sequence_classifier_folder, out=root / "cls").path,
    )
    for art in (made.minilm, made.minilm_opt, made.ner, made.cls):
        recorded = manifest(art)["files"]
        assert list(recorded) == ["model.onnx"], recorded
        assert recorded["model.onnx"]["verification"]["verdict"] == "passed"
    return made


@pytest.fixture()
def texts_file(tmp_path) -> Path:
    path = tmp_path / "texts.json"
    path.write_text(json.dumps(TEXTS, ensure_ascii=False), encoding="utf-8")
    return path


def write_lines(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(t.replace("\n", " ").replace("\t", " ") + "\n" for t in texts), encoding="utf-8")
    return path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- the install itself

def test_the_venv_is_the_runtime_install_without_torch(venv, tmp_path):
    for module in ("torch", "transformers", "sentence_transformers"):
        result = run_python(venv, f"import {module}", cwd=tmp_path)
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, \
            f"`import {module}` must fail in the runtime-only venv:\n{shown(result)}"
    result = run_python(venv, "import sys, onnxport, numpy, onnxruntime, tokenizers, onnx, click, rich\n"
                              "print(onnxport.__file__)\n" + NOTHING_HEAVY, cwd=tmp_path)
    assert result.returncode == 0, shown(result)
    where = Path(result.stdout.strip().splitlines()[-1]).resolve()
    assert venv.home.resolve() in where.parents, f"onnxport came from {where}, not from the venv's install"


# ---------------------------------------------------------------- pipelines against PyTorch

EMBED = """
import json, sys
import numpy as np
import onnxport
art, texts_file, out = sys.argv[1:4]
pipeline = onnxport.load(art)
print(pipeline.model_file)
np.save(out, pipeline.embed(json.load(open(texts_file, encoding="utf-8"))))
""" + NOTHING_HEAVY


def test_embed_matches_pytorch(venv, artifacts, texts_file, tmp_path):
    expected = onnxport.load(artifacts.minilm, backend="torch").embed(TEXTS)

    result = run_python(venv, EMBED, artifacts.minilm, texts_file, tmp_path / "api.npy", cwd=tmp_path)
    assert result.returncode == 0, shown(result)
    assert result.stdout.split() == ["model.onnx"]
    got = np.load(tmp_path / "api.npy")
    assert got.shape == expected.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(got, expected, atol=1e-4)

    cli = run_cli(venv, "embed", artifacts.minilm, write_lines(tmp_path / "in.txt", TEXTS), "-o",
                  tmp_path / "cli.npy", cwd=tmp_path)
    assert cli.returncode == 0, shown(cli)
    np.testing.assert_allclose(np.load(tmp_path / "cli.npy"), expected, atol=1e-4)


EXTRACT = """
import json, sys
import onnxport
art, texts_file, out = sys.argv[1:4]
entities = onnxport.load(art).extract(json.load(open(texts_file, encoding="utf-8")))
json.dump(entities, open(out, "w", encoding="utf-8"))
""" + NOTHING_HEAVY


def spans(rows: list[list[dict]]) -> list[list[tuple]]:
    return [[(e["label"], e["start"], e["end"], e["text"]) for e in row] for row in rows]


def test_ner_matches_pytorch(venv, artifacts, texts_file, tmp_path):
    expected = spans(onnxport.load(artifacts.ner, backend="torch").extract(TEXTS))
    assert sum(map(len, expected)) > 0, "the tiny random classifier should tag something"

    result = run_python(venv, EXTRACT, artifacts.ner, texts_file, tmp_path / "api.json", cwd=tmp_path)
    assert result.returncode == 0, shown(result)
    assert spans(json.loads((tmp_path / "api.json").read_text(encoding="utf-8"))) == expected

    cli = run_cli(venv, "ner", artifacts.ner, write_lines(tmp_path / "in.txt", TEXTS), "-o", tmp_path / "cli.jsonl",
                  cwd=tmp_path)
    assert cli.returncode == 0, shown(cli)
    records = jsonl(tmp_path / "cli.jsonl")
    assert [r["text"] for r in records] == TEXTS
    assert spans([r["entities"] for r in records]) == expected


CLASSIFY = """
import json, sys
import onnxport
art, texts_file, out = sys.argv[1:4]
labels = onnxport.load(art).classify(json.load(open(texts_file, encoding="utf-8")), top_k=3)
json.dump(labels, open(out, "w", encoding="utf-8"))
""" + NOTHING_HEAVY


def test_classify_matches_pytorch(venv, artifacts, texts_file, tmp_path):
    expected = onnxport.load(artifacts.cls, backend="torch").classify(TEXTS, top_k=3)

    result = run_python(venv, CLASSIFY, artifacts.cls, texts_file, tmp_path / "api.json", cwd=tmp_path)
    assert result.returncode == 0, shown(result)
    got = json.loads((tmp_path / "api.json").read_text(encoding="utf-8"))
    assert [[x["label"] for x in row] for row in got] == [[x["label"] for x in row] for row in expected]
    np.testing.assert_allclose([[x["score"] for x in row] for row in got],
                               [[x["score"] for x in row] for row in expected], atol=1e-4)

    cli = run_cli(venv, "classify", artifacts.cls, write_lines(tmp_path / "in.txt", TEXTS), "-o",
                  tmp_path / "cli.jsonl", cwd=tmp_path)
    assert cli.returncode == 0, shown(cli)
    assert [r["labels"][0]["label"] for r in jsonl(tmp_path / "cli.jsonl")] == [row[0]["label"] for row in expected]


def test_torch_side_of_the_api_names_the_extra(venv, artifacts, tmp_path):
    code = """
import sys
import onnxport
from onnxport.errors import MissingDependency
for name, call in [("export", lambda: onnxport.export(out=sys.argv[2])),
                   ("load torch", lambda: onnxport.load(sys.argv[1], backend="torch"))]:
    try:
        call()
    except MissingDependency as error:
        assert 'pip install "onnxport[export]"' in str(error), (name, str(error))
    else:
        raise AssertionError(f"{name} worked without torch")
print("ok")
""" + NOTHING_HEAVY
    result = run_python(venv, code, artifacts.cls, tmp_path / "never", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.split() == ["ok"], shown(result)
    assert not (tmp_path / "never").exists()


# ---------------------------------------------------------------- the CLI verbs that need no torch

def test_inspect(venv, artifacts, tmp_path):
    result = run_cli(venv, "inspect", artifacts.ner, cwd=tmp_path)
    assert result.returncode == 0, shown(result)
    no_traceback(result)
    as_json = run_cli(venv, "inspect", artifacts.ner / "model.onnx", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, shown(as_json)
    assert isinstance(json.loads(as_json.stdout), dict)


def hint_intact(result: subprocess.CompletedProcess) -> None:
    """Where the output names the extra, it names it whole (rich markup must not eat `[export]`)."""
    assert 'pip install "onnxport"' not in result.stdout + result.stderr, shown(result)


def test_verify_without_torch_is_not_verified_and_keeps_the_export_verdict(venv, artifacts, tmp_path):
    art = Path(shutil.copytree(artifacts.minilm, tmp_path / "minilm"))
    exported = manifest(art)["files"]["model.onnx"]["verification"]
    assert exported["reference"].startswith("pytorch") and exported["verdict"] == "passed"

    # model.onnx has nothing to be compared with here: "not verified", exit 1, and the verdict
    # PyTorch gave at export stays on record.
    result = run_cli(venv, "verify", art, cwd=tmp_path, timeout=600)
    assert result.returncode == 1, shown(result)
    no_traceback(result)
    assert "NOT VERIFIED" in result.stdout + result.stderr, shown(result)
    assert EXPORT_HINT in result.stdout + result.stderr, shown(result)
    kept = manifest(art)["files"]["model.onnx"]["verification"]
    assert kept["verdict"] == "passed" and kept["reference"].startswith("pytorch"), kept
    assert kept == exported
    hint_intact(result)


def test_optimize_and_verify_judge_against_the_verified_fp32_model(venv, artifacts, tmp_path):
    art = artifacts.minilm_opt
    exported = manifest(art)["files"]["model.onnx"]["verification"]

    optimized = run_cli(venv, "optimize", art, cwd=tmp_path, timeout=600)
    assert optimized.returncode == 0, shown(optimized)
    no_traceback(optimized)
    report = manifest(art)["files"]["model.opt.onnx"]["verification"]
    assert report["reference"].startswith("fp32 model.onnx"), report["reference"]
    assert report["verdict"] == "passed", report

    again = run_cli(venv, "verify", art, "--model-file", "model.opt.onnx", cwd=tmp_path, timeout=600)
    assert again.returncode == 0, shown(again)
    no_traceback(again)
    report = manifest(art)["files"]["model.opt.onnx"]["verification"]
    assert report["reference"].startswith("fp32 model.onnx") and report["verdict"] == "passed", report
    assert manifest(art)["files"]["model.onnx"]["verification"] == exported
    hint_intact(optimized)
    hint_intact(again)


def test_quantize_records_a_verdict(venv, artifacts, tmp_path):
    art = Path(shutil.copytree(artifacts.cls, tmp_path / "cls"))
    texts = write_lines(tmp_path / "calibration.txt", builtin_texts(24))
    result = run_cli(venv, "quantize", art, "--texts", texts, cwd=tmp_path, timeout=600)
    no_traceback(result)
    assert (art / "model.int8.onnx").exists(), shown(result)
    verdict = manifest(art)["files"]["model.int8.onnx"]["verification"]["verdict"]
    assert verdict in ("passed", "failed"), verdict
    assert result.returncode == (0 if verdict == "passed" else 1), shown(result)


def test_profile(venv, artifacts, tmp_path):
    result = run_cli(venv, "profile", artifacts.ner, "--model", "fp32", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, shown(result)
    no_traceback(result)


def test_export_says_which_extra_to_install(venv, tmp_path):
    out = tmp_path / "X"
    result = run_cli(venv, "export", "-o", out, cwd=tmp_path)
    assert result.returncode == 2, shown(result)
    assert EXPORT_HINT in result.stderr, shown(result)
    no_traceback(result)
    assert not out.exists()
