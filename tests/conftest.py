"""Shared fixtures: a tiny trained baseline, the real data folder, options.

``tiny_baseline`` trains ``smallcnn`` (width 0.25) on the bundled digits for a
few epochs once per test session (a few seconds) and hands its complete run
directory to every stage's tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import tfq  # noqa: F401  (Keras 2 before TensorFlow, for every test)

from tfq_support import REPO, SHARED_DATA, tiny_train_config  # noqa: F401  (plain helpers, importable by name)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow test: pass --runslow to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; skips when it is absent."""
    if not (SHARED_DATA / "cifar10" / "train_labels.npy").is_file():
        pytest.skip(f"real image data not found at {SHARED_DATA} (see shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_baseline(tmp_path_factory) -> Path:
    """A complete ``train`` run directory (smallcnn on digits, a few epochs)."""
    from tfq.rundir import RunDir
    from tfq.train import train

    cfg = tiny_train_config()
    run = RunDir.create(
        kind="train",
        out=tmp_path_factory.mktemp("baseline") / "smallcnn-digits",
        meta={"model": cfg.model.name, "dataset": cfg.data.name},
    )
    train(cfg, run, verbose=0)
    return run.path


@pytest.fixture
def subprocess_env() -> dict:
    """Environment for running ``python -m ...`` from the repository root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


PYTHON = sys.executable
