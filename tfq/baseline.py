"""Finding and loading FP32 baselines written by the training stage.

Later stages (PTQ, QAT, sensitivity, mixed precision) start from a baseline:
the best Keras model of a complete ``train`` run, its dataset (reloaded with
the same :class:`~tfq.data.DataConfig`, so the same splits) and the exact
preprocessing saved beside it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import tfq  # noqa: F401
from tfq.rundir import DEFAULT_ROOT, RunDir, RunDirError, find_runs
from tfq.train import MODEL_FILE, TrainConfig, run_name


class BaselineNotFoundError(RunDirError):
    """No usable FP32 baseline; the message holds the command that trains one."""


def train_command(model: str, dataset: str | None) -> str:
    """The command line that trains a baseline for ``model`` on ``dataset``."""
    return f"python -m pipelines.train --model {model} --dataset {dataset or 'digits'}"


class Baseline:
    """A complete training run, loaded lazily.

    Attributes:
      run: The training run directory.
      config: Its resolved :class:`TrainConfig`.
    """

    def __init__(self, run: RunDir):
        self.run = run
        self.config = TrainConfig.from_dict(run.read_json("config.json"))

    def __repr__(self) -> str:
        return f"Baseline({str(self.run.path)!r})"

    @property
    def name(self) -> str:
        return run_name(self.config.model.name, self.config.data.name)

    @functools.cached_property
    def preprocessing(self):
        from tfq.preprocessing import Preprocessing

        return Preprocessing.load(self.run.file("preprocessing.json"))

    @functools.cached_property
    def dataset(self):
        """The dataset with the same splits; preprocessing as saved in the run."""
        from tfq.data import load_dataset

        ds = load_dataset(self.config.data)
        ds.preprocessing = self.preprocessing
        return ds

    @functools.cached_property
    def model(self):
        """A fresh copy of the best Keras model (safe mode, not compiled)."""
        return self.load_model()

    def load_model(self):
        """Loads a new copy of the model (callers may change it freely)."""
        import tf_keras as keras

        return keras.models.load_model(self.run.file(MODEL_FILE), compile=False, safe_mode=True)

    @property
    def results(self) -> dict:
        return self.run.read_json("results.json") if self.run.exists("results.json") else {}


def load_baseline(path: str | os.PathLike) -> Baseline:
    """Opens a complete training run directory.

    Raises:
      BaselineNotFoundError: The directory is missing, is not a training run,
        did not finish, or has no model file.
    """
    path = Path(path)
    if not path.is_dir():
        raise BaselineNotFoundError(f"baseline run directory not found: {path}")
    try:
        run = RunDir.open(path)
    except RunDirError as e:
        raise BaselineNotFoundError(str(e)) from None
    manifest = run.manifest()
    if manifest.get("kind") != "train":
        raise BaselineNotFoundError(f"{path} is a {manifest.get('kind')!r} run, not a training run")
    if manifest.get("status") != "complete" or not run.exists(MODEL_FILE):
        raise BaselineNotFoundError(
            f"training run {path} did not finish (status {manifest.get('status')!r}); "
            f"run the same training command again to resume it"
        )
    return Baseline(run)


def find_baseline(model: str, dataset: str | None = None, root: str | os.PathLike = DEFAULT_ROOT) -> RunDir | None:
    """The newest complete training run of ``model`` (on ``dataset`` if given)."""
    runs = find_runs(root, kind="train", model=model, dataset=dataset)
    return runs[0] if runs else None


def resolve_baseline(
    model: str, dataset: str | None = None, baseline_dir: str | os.PathLike | None = None, root=DEFAULT_ROOT
) -> Baseline:
    """The baseline given explicitly, or the newest matching one.

    Raises:
      BaselineNotFoundError: With the training command in its message.
    """
    if baseline_dir is not None:
        return load_baseline(baseline_dir)
    run = find_baseline(model, dataset, root)
    if run is None:
        where = f" on {dataset}" if dataset else ""
        raise BaselineNotFoundError(
            f"no complete FP32 baseline for {model}{where} under {root}/. Train one first:\n"
            f"  {train_command(model, dataset)}\n"
            f"or pass --baseline RUN_DIR."
        )
    return load_baseline(run.path)
