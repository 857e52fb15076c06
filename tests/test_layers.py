"""The one-way layers hold: `lint-imports` keeps every contract in pyproject.toml, and it
really breaks when a lower layer reaches up, imports torch, or closes an import cycle."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def run_lint(cwd: Path, source_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_repository_keeps_every_contract():
    result = run_lint(REPO, REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


@pytest.fixture()
def package_copy(tmp_path) -> Path:
    """The package and the import-linter configuration, copied where they can be broken."""
    shutil.copytree(REPO / "src" / "onnxport", tmp_path / "src" / "onnxport",
                    ignore=shutil.ignore_patterns("__pycache__"))
    text = (REPO / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(text[text.index("[tool.importlinter]"):])
    return tmp_path


def test_the_copy_is_what_lint_imports_reads(package_copy):
    # Without this the tests below could pass by linting the installed package instead.
    (package_copy / "src" / "onnxport" / "core" / "canary.py").write_text("import torch\n")
    result = run_lint(package_copy, package_copy / "src")
    assert result.returncode != 0
    assert "onnxport.core.canary -> torch" in result.stdout


def test_a_runtime_module_importing_torch_breaks_the_build(package_copy):
    session = package_copy / "src" / "onnxport" / "runtime" / "session.py"
    session.write_text(session.read_text() + "\n\ndef _to_torch(x):\n    import torch\n\n    return torch.as_tensor(x)\n")
    result = run_lint(package_copy, package_copy / "src")
    assert result.returncode != 0
    assert "Only convert touches torch" in result.stdout and "BROKEN" in result.stdout
    assert "onnxport.runtime.session -> torch" in result.stdout


def test_a_lower_layer_reaching_up_breaks_the_build(package_copy):
    pipelines = package_copy / "src" / "onnxport" / "runtime" / "pipelines.py"
    pipelines.write_text(pipelines.read_text() + "\n\ndef _reference(art):\n"
                         "    from ..convert.references import TorchReference\n\n    return TorchReference(art)\n")
    result = run_lint(package_copy, package_copy / "src")
    assert result.returncode != 0
    assert "onnxport.runtime.pipelines -> onnxport.convert.references" in result.stdout


def test_a_lazy_import_cycle_breaks_the_build(package_copy):
    # convert.references is imported by convert.exporter; a lazy import back closes a cycle.
    references = package_copy / "src" / "onnxport" / "convert" / "references.py"
    references.write_text(references.read_text() + "\n\ndef _late():\n    from . import exporter\n\n"
                          "    return exporter\n")
    result = run_lint(package_copy, package_copy / "src")
    assert result.returncode != 0
    assert "No import cycles" in result.stdout and "BROKEN" in result.stdout


def test_the_server_reaching_into_the_exporter_breaks_the_build(package_copy):
    # serve sits above convert in the layer order, so only its own contract catches this.
    models = package_copy / "src" / "onnxport" / "serve" / "models.py"
    models.write_text(models.read_text() + "\n\ndef _reexport(path):\n"
                      "    from ..convert.exporter import export\n\n    return export(path)\n")
    result = run_lint(package_copy, package_copy / "src")
    assert result.returncode != 0
    assert "The server and Ray jobs run artifacts" in result.stdout and "BROKEN" in result.stdout
    assert "onnxport.serve.models -> onnxport.convert.exporter" in result.stdout
