"""Fixtures for the edge runner and the TF-free tfq modules: committed tiny models, test doubles.

The ``.tflite`` files under ``tests/data`` are produced by ``tests/data/make_fixtures.py``.
The adb and edgetpu_compiler test doubles are small scripts put on disk in ``tmp_path``;
they stand in for the real tools, which are absent on the test machine.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from edge_support import REPO, subprocess_env  # noqa: F401  (helpers live in a uniquely named module)

DATA = REPO / "tests" / "data"
FAKE_ADB = Path(__file__).resolve().parent / "fake_adb.py"
FIXTURE_NAMES = ("float32", "dynamic", "fp16", "int8", "int8_uint8io", "int8_fixed_batch", "int16x8",
                 "int16x8_int16io", "dynamic_hw")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def model_path():
    """``model_path("int8") -> tests/data/int8.tflite``."""
    def get(name: str) -> str:
        path = DATA / f"{name}.tflite"
        assert path.is_file(), f"missing fixture {path}; run tests/data/make_fixtures.py"
        return str(path)
    return get


@pytest.fixture(scope="session")
def eval_npz() -> str:
    return str(DATA / "eval.npz")


def _write_executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


class FakeDevice:
    """Handle on the fake adb: its executable, device folder, log and environment switches."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = tmp / "device"
        self.log_path = tmp / "adb_log.jsonl"
        self.adb = _write_executable(tmp / "adb", f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_ADB}" "$@"\n')
        self.binary = tmp / "benchmark_model"
        self.binary.write_bytes(b"fake benchmark_model binary")
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("FAKE_ADB_ROOT", str(self.root))
        monkeypatch.setenv("FAKE_ADB_LOG", str(self.log_path))
        for var in ("FAKE_ADB_DEVICES", "FAKE_ADB_GONE_AFTER", "FAKE_BENCH_SLEEP", "FAKE_ADB_NOEXEC",
                    "FAKE_BENCH_OUTPUT", "ADB"):
            monkeypatch.delenv(var, raising=False)

    def set(self, **env: str) -> None:
        for key, value in env.items():
            self.monkeypatch.setenv(key, value)

    def calls(self) -> list[list[str]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log_path.read_text().splitlines()]

    def shell_commands(self) -> list[str]:
        return [c[c.index("shell") + 1] for c in self.calls() if "shell" in c]

    def files(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")
                      if p.is_file() and not p.name.startswith(".fake_adb"))


@pytest.fixture
def fake_device(tmp_path, monkeypatch) -> FakeDevice:
    """An emulated phone behind a fake ``adb`` executable (see tests/edge/fake_adb.py)."""
    return FakeDevice(tmp_path, monkeypatch)


# Log in the format edgetpu_compiler prints (learned from Coral's compiler documentation,
# https://coral.ai/docs/edgetpu/compiler/, and compiler output quoted in google-coral/edgetpu
# issues #60, #356 and #490); written for these tests, not copied.
FAKE_COMPILER = '''\
#!{python}
import os, shutil, sys
args = sys.argv[1:]
out_dir = "."
if "-o" in args:
    out_dir = args[args.index("-o") + 1]
model = args[-1]
stem = os.path.splitext(os.path.basename(model))[0]
mode = os.environ.get("FAKE_COMPILER_MODE", "all")
with open(os.environ.get("FAKE_COMPILER_ARGS", os.devnull), "w") as f:
    f.write(" ".join(args))
print("Edge TPU Compiler version 16.0.384591198")
print("Started a compilation timeout timer of 180 seconds.")
if mode == "fail":
    print("ERROR: Attempting to use a delegate that only supports static-sized tensors with a graph that has dynamic-sized tensors.")
    print("Compilation failed: Model failed in Tflite interpreter. Please ensure model can be loaded/run in Tflite interpreter.")
    print("Compilation child process completed within timeout period.")
    print("Compilation failed! ")
    sys.exit(1)
shutil.copyfile(model, os.path.join(out_dir, stem + "_edgetpu.tflite"))
with open(os.path.join(out_dir, stem + "_edgetpu.log"), "w") as f:
    f.write("Edge TPU Compiler version 16.0.384591198\\n")
print()
print("Model compiled successfully in 412 ms.")
print()
print("Input model: " + model)
print("Input size: 29.55KiB")
print("Output model: " + os.path.join(out_dir, stem + "_edgetpu.tflite"))
print("Output size: 61.23KiB")
print("On-chip memory used for caching model parameters: 24.50KiB")
print("On-chip memory remaining for caching model parameters: 7.91MiB")
print("Off-chip memory used for streaming uncached model parameters: 0.00B")
print("Number of Edge TPU subgraphs: 1")
print("Total number of operations: 7")
print("Operation log: " + os.path.join(out_dir, stem + "_edgetpu.log"))
print()
if mode == "partial":
    print("Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.")
    print("Number of operations that will run on Edge TPU: 4")
    print("Number of operations that will run on CPU: 3")
    print()
print("Operator                       Count      Status")
print()
if mode == "partial":
    print("QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some unspecified limitation")
    print("CONV_2D                        1          Mapped to Edge TPU")
    print("MAX_POOL_2D                    1          Mapped to Edge TPU")
    print("RESHAPE                        1          Mapped to Edge TPU")
    print("FULLY_CONNECTED                1          Mapped to Edge TPU")
    print("FULLY_CONNECTED                1          More than one subgraph is not supported")
    print("DEQUANTIZE                     1          Operation is working on an unsupported data type")
else:
    print("QUANTIZE                       1          Mapped to Edge TPU")
    print("CONV_2D                        1          Mapped to Edge TPU")
    print("MAX_POOL_2D                    1          Mapped to Edge TPU")
    print("RESHAPE                        1          Mapped to Edge TPU")
    print("FULLY_CONNECTED                2          Mapped to Edge TPU")
    print("DEQUANTIZE                     1          Mapped to Edge TPU")
print("Compilation child process completed within timeout period.")
print("Compilation succeeded! ")
'''


@pytest.fixture
def fake_compiler(tmp_path, monkeypatch) -> Path:
    """A fake ``edgetpu_compiler`` first on PATH; FAKE_COMPILER_MODE=all|partial|fail."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write_executable(bin_dir / "edgetpu_compiler", FAKE_COMPILER.format(python=sys.executable))
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("FAKE_COMPILER_ARGS", str(tmp_path / "compiler_args.txt"))
    monkeypatch.delenv("FAKE_COMPILER_MODE", raising=False)
    return bin_dir / "edgetpu_compiler"


@pytest.fixture
def no_tools_path(tmp_path, monkeypatch) -> None:
    """A PATH without adb or edgetpu_compiler (only the Python interpreter's folder)."""
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty) + os.pathsep + os.path.dirname(sys.executable))
    monkeypatch.delenv("ADB", raising=False)
