"""edge/ runs with numpy and a LiteRT interpreter only: no TensorFlow and nothing from tfq, models, pipelines."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_support import REPO, subprocess_env

FORBIDDEN = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "keras")
# The repository's other packages: edge is imported by them, never the reverse.
FORBIDDEN_REPO = ("tfq", "models", "pipelines", "benchmarks")


def edge_modules() -> list[str]:
    mods = []
    for path in sorted((REPO / "edge").rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods.append(".".join(parts))
    return mods


def test_edge_sources_import_no_tensorflow_and_nothing_from_the_rest_of_the_repo():
    for path in sorted((REPO / "edge").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in FORBIDDEN + FORBIDDEN_REPO, f"{path}: imports {name}"


def test_importing_every_edge_module_loads_no_tensorflow_and_no_tfq():
    mods = edge_modules()
    code = textwrap.dedent(f"""
        import importlib, sys
        for m in {mods!r}:
            importlib.import_module(m)
        bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN + FORBIDDEN_REPO!r})
        print('LOADED', bad)
        sys.exit(1 if bad else 0)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "edge.bench" in mods and "edge.android" in mods


def test_bench_runs_with_tensorflow_and_tfq_made_unimportable(tmp_path, model_path, eval_npz):
    """Packages that raise on import shadow tensorflow, tfq, models, pipelines for the CLIs and their workers."""
    for name in ("tensorflow",) + FORBIDDEN_REPO:
        blocker = tmp_path / "block" / name
        blocker.mkdir(parents=True)
        (blocker / "__init__.py").write_text(f"raise ImportError('edge must not import {name}')\n")
    env = subprocess_env()
    env["PYTHONPATH"] = str(tmp_path / "block") + os.pathsep + env["PYTHONPATH"]
    proc = subprocess.run([sys.executable, "-m", "edge.bench", model_path("int8"), model_path("int16x8"),
                           "--runs", "3", "--warmup", "0", "--eval", eval_npz],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("| ok ") == 2
    proc = subprocess.run([sys.executable, "-m", "edge.edgetpu", "check", model_path("int8")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr


def _locked(name: str) -> str:
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if re.match(rf"{re.escape(name)}==", line, re.I):
            return line.strip()
    raise AssertionError(f"{name} is not in requirements.lock")


@pytest.mark.venv
def test_edge_bench_in_a_venv_with_only_numpy_and_litert(tmp_path, model_path, eval_npz):
    """Creates a venv holding only numpy + ai-edge-litert (and their own dependencies) and runs edge.bench."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                          _locked("numpy"), _locked("ai-edge-litert"), "-c", str(REPO / "requirements.lock")],
                         capture_output=True, text=True, timeout=900)
    if pip.returncode != 0:
        if re.search(r"NewConnectionError|Temporary failure in name resolution|No matching distribution|"
                     r"Could not fetch|ConnectTimeout", pip.stdout + pip.stderr):
            pytest.skip(f"package registry unreachable: {pip.stderr.strip().splitlines()[-1:]}")
        pytest.fail(pip.stdout + pip.stderr)
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            check=True).stdout.lower()
    assert "tensorflow" not in listed and "keras" not in listed
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    proc = subprocess.run([str(python), "-m", "edge.bench", model_path("int8"), model_path("float32"),
                           "--runs", "5", "--warmup", "1", "--eval", eval_npz, "--json", str(tmp_path / "b.json")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("| ok ") == 2
    proc = subprocess.run([str(python), "-m", "edge.edgetpu", "check", model_path("int16x8")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1 and "is INT16" in proc.stdout, proc.stderr
