"""FP32 baseline training: seeded, resumable, distributed when hardware allows.

The command ``python -m pipelines.train`` drives :func:`train`. A training run
directory holds (see ``tfq.rundir``)::

    run.json            kind "train", model, dataset, status
    config.json         the resolved TrainConfig
    preprocessing.json  the input transform every later stage applies
    dataset.json        split sizes and the split rule
    model.keras         the best model on the validation split (never test): highest
                        top-1, ties broken by the lower validation loss
    best.json           epoch and validation top-1 of model.keras
    metrics.jsonl       one line per epoch: loss, accuracy, val_*, lr, time
    results.json        test top-1/top-5, Keras latency, parameter count
    backup/             the last completed epoch (model + optimizer), for resume
    tensorboard/        TensorBoard logs

Optimization: SGD with (Nesterov) momentum, linear warm-up then cosine decay
to zero, decoupled weight decay (not applied to BatchNorm and biases),
optional label smoothing. Resume restores the model, optimizer and epoch
counter from ``backup/`` (written at the end of every epoch), so killing a run
mid-epoch and starting the same command again repeats only the unfinished
epoch.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import math
import os
import sys
import time
from typing import Any

import tfq  # noqa: F401  (Keras 2 before TensorFlow)
from tfq.configs import ConfigBase
from tfq.data import DataConfig
from tfq.rundir import RunDir

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"


class Stem(str, enum.Enum):
    CIFAR = "cifar"
    IMAGENET = "imagenet"


@dataclasses.dataclass(frozen=True)
class ModelConfig(ConfigBase):
    """Which network to build.

    Attributes:
      name: A registered model name (``models.available_models()``) or a path
        to the user's own ``.keras`` file or SavedModel directory.
      width_multiplier: Scales channel counts.
      stem: ``cifar`` (3x3 conv, for small images) or ``imagenet`` (7x7 + pool).
      dropout: Dropout before the classifier.
    """

    name: str = "smallcnn"
    width_multiplier: float = 1.0
    stem: Stem = Stem.CIFAR
    dropout: float = 0.0

    def __post_init__(self):
        if not self.name:
            raise ValueError("model name must not be empty")
        if self.width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be > 0, got {self.width_multiplier}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig(ConfigBase):
    """SGD with momentum, warm-up + cosine schedule, weight decay.

    Attributes:
      lr: Peak learning rate (after warm-up).
      momentum: SGD momentum.
      nesterov: Use Nesterov momentum.
      weight_decay: Decoupled weight decay (skips BatchNorm and biases).
      warmup_epochs: Linear warm-up length in epochs (may be fractional).
      min_lr_ratio: Final learning rate as a fraction of ``lr``.
      label_smoothing: Cross-entropy label smoothing.
    """

    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.0
    label_smoothing: float = 0.0

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclasses.dataclass(frozen=True)
class TrainConfig(ConfigBase):
    """Everything that defines a baseline training run.

    Attributes:
      model: The network.
      data: The dataset, its splits and augmentation.
      optimizer: Optimizer and schedule.
      epochs: Number of epochs.
      batch_size: Global batch size (split across replicas).
      seed: Seeds Python, NumPy and TensorFlow, data shuffling and splits.
      deterministic: Enable TensorFlow op determinism (bitwise repeatable on CPU).
      latency_runs: Timed single-image Keras inferences for ``results.json``.
    """

    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    epochs: int = 30
    batch_size: int = 128
    seed: int = 0
    deterministic: bool = True
    latency_runs: int = 50

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.latency_runs < 1:
            raise ValueError(f"latency_runs must be >= 1, got {self.latency_runs}")


def default_train_config(model: str = "smallcnn", dataset: str = "digits") -> TrainConfig:
    """A sensible default for a model and dataset (the digits set is tiny)."""
    cfg = TrainConfig(model=ModelConfig(name=model), data=DataConfig(name=dataset))
    if dataset == "digits":
        # 1,257 training images of 8x8: small batches, more epochs, seconds per epoch.
        cfg = cfg.replace(epochs=30, batch_size=32, optimizer=cfg.optimizer.replace(lr=0.05))
    return cfg


#: Named training recipes (``pipelines.train --preset NAME``): complete
#: :class:`TrainConfig` objects; ``--dataset`` and the other flags apply on top.
PRESETS: dict[str, TrainConfig] = {
    # He et al. 2016's CIFAR ResNet-20 recipe, shortened for a 2-core CPU: SGD
    # + Nesterov momentum 0.9, batch 128, peak lr 0.1 after one warm-up epoch,
    # cosine decay to zero (instead of the paper's steps at 32k/48k of 64k
    # iterations), weight decay 5e-4 (a short schedule wants more than the
    # paper's 1e-4), pad-4 random crops and horizontal flips. 80 epochs gave
    # 90.12 % test top-1 on the shared CIFAR-10 (docs/baselines/resnet20-cifar10/);
    # 160 epochs (51k iterations, the paper has 64k) is the default.
    "resnet20_cifar10": TrainConfig(
        model=ModelConfig(name="resnet20"),
        data=DataConfig(name="cifar10"),
        optimizer=OptimizerConfig(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, warmup_epochs=1.0),
        epochs=160,
        batch_size=128,
    ),
}


def get_preset(name: str) -> TrainConfig:
    """Returns the training preset ``name``.

    Raises:
      ConfigError: On an unknown name; the message lists the presets.
    """
    from tfq.configs import ConfigError

    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown training preset {name!r}; presets are: {', '.join(sorted(PRESETS))}") from None


def run_name(model: str, dataset: str) -> str:
    """``<model>-<dataset>`` with paths and prefixes reduced to safe names."""

    def clean(s: str) -> str:
        s = s.rstrip("/\\")
        if ":" in s:
            prefix, _, rest = s.partition(":")
            s = f"{prefix}-{os.path.splitext(os.path.basename(rest.rstrip('/')))[0]}"
        elif os.sep in s or s.endswith((".keras", ".h5")):
            s = os.path.splitext(os.path.basename(s))[0]
        return "".join(c if c.isalnum() or c in "._-" else "_" for c in s) or "x"

    return f"{clean(model)}-{clean(dataset)}"


# ---------------------------------------------------------------------------
# Strategy, schedule, optimizer


def choose_strategy():
    """Picks the ``tf.distribute`` strategy for the hardware present.

    ``TF_CONFIG`` set -> ``MultiWorkerMirroredStrategy``; several GPUs ->
    ``MirroredStrategy``; otherwise the default single-device strategy.
    """
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    # One device: the default strategy places ops on the GPU when there is one.
    # (Keras' BackupAndRestore, used for resume, rejects OneDeviceStrategy.)
    return tf.distribute.get_strategy()


def make_schedule(opt: OptimizerConfig, steps_per_epoch: int, epochs: int):
    """Linear warm-up to ``opt.lr`` then cosine decay to ``opt.lr * min_lr_ratio``."""
    import tf_keras as keras
    import tensorflow as tf

    total = max(1, steps_per_epoch * epochs)
    warmup = min(int(round(opt.warmup_epochs * steps_per_epoch)), total - 1)

    @keras.utils.register_keras_serializable(package="tfq")
    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, peak, total_steps, warmup_steps, min_ratio):
            self.peak = float(peak)
            self.total_steps = int(total_steps)
            self.warmup_steps = int(warmup_steps)
            self.min_ratio = float(min_ratio)

        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = self.peak * (step + 1.0) / max(1.0, float(self.warmup_steps))
            progress = (step - self.warmup_steps) / max(1.0, float(self.total_steps - self.warmup_steps))
            progress = tf.clip_by_value(progress, 0.0, 1.0)
            cos = self.peak * (self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + tf.cos(math.pi * progress)))
            return tf.where(step < self.warmup_steps, warm, cos)

        def get_config(self):
            return {
                "peak": self.peak,
                "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps,
                "min_ratio": self.min_ratio,
            }

    return WarmupCosine(opt.lr, total, warmup, opt.min_lr_ratio)


def make_optimizer(opt: OptimizerConfig, schedule):
    """SGD with momentum and decoupled weight decay (skipping BN and biases)."""
    import tf_keras as keras

    sgd = keras.optimizers.SGD(
        learning_rate=schedule,
        momentum=opt.momentum,
        nesterov=opt.nesterov,
        weight_decay=opt.weight_decay or None,
    )
    if opt.weight_decay:
        sgd.exclude_from_weight_decay(var_names=["bn", "batch_norm", "bias", "beta", "gamma"])
    return sgd


def seed_everything(seed: int, deterministic: bool) -> None:
    import tf_keras as keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


# ---------------------------------------------------------------------------
# Callbacks


def _epoch_callback_class():
    import tf_keras as keras

    class EpochLogger(keras.callbacks.Callback):
        """Writes ``metrics.jsonl`` and keeps the best model on validation top-1.

        The best score survives a resume: it is read back from ``best.json``.
        """

        def __init__(self, run: RunDir, schedule, steps_per_epoch: int):
            super().__init__()
            self.run = run
            self.schedule = schedule
            self.steps_per_epoch = steps_per_epoch
            best = run.read_json("best.json") if run.exists("best.json") else {}
            self.best = (float(best.get("val_top1", -1.0)), -float(best.get("val_loss", math.inf)))
            self._t0 = 0.0
            self._trimmed = False

        def on_epoch_begin(self, epoch, logs=None):
            if not self._trimmed:
                # After a resume, ``epoch`` is the first epoch not in the backup:
                # drop lines of epochs that finished after the last backup.
                self._trimmed = True
                records = self.run.read_jsonl("metrics.jsonl")
                kept = [r for r in records if r.get("epoch", 0) <= epoch]
                if len(kept) != len(records):
                    self.run.write_text("metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            record = {"epoch": epoch + 1, "time_s": round(time.perf_counter() - self._t0, 3)}
            for k, v in logs.items():
                record[k] = float(v)
            record["lr"] = float(self.schedule((epoch + 1) * self.steps_per_epoch - 1))
            val = record.get("val_top1")
            if val is not None and not math.isfinite(record.get("loss", 0.0)):
                raise FloatingPointError(f"training diverged at epoch {epoch + 1}: loss={record['loss']}")
            self.run.append_jsonl("metrics.jsonl", record)
            # Best on validation: top-1, ties broken by the lower validation loss
            # (a small validation split saturates at 100% early in training).
            score = (val, -record.get("val_loss", math.inf)) if val is not None else None
            if score is not None and score > self.best:
                self.best = score
                tmp = self.run.file(f".{MODEL_FILE}.tmp.keras")
                self.model.save(tmp, overwrite=True)
                os.replace(tmp, self.run.file(MODEL_FILE))
                self.run.write_json(
                    "best.json", {"epoch": epoch + 1, "val_top1": val, "val_loss": record.get("val_loss")}
                )
                log.info("epoch %d: new best val_top1=%.4f, saved %s", epoch + 1, val, MODEL_FILE)

    return EpochLogger


# ---------------------------------------------------------------------------
# Training


def build_network(cfg: ModelConfig, input_shape: tuple[int, int, int], num_classes: int, seed: int | None = None):
    """Builds a registered model, or loads the user's own model file."""
    import models

    if models.is_model_path(cfg.name):
        model = models.load_model(cfg.name)
        out = model.outputs[0].shape[-1]
        if out != num_classes:
            raise ValueError(f"model {cfg.name} has {out} outputs but the dataset has {num_classes} classes")
        return model
    return models.build_model(
        cfg.name,
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        width_multiplier=cfg.width_multiplier,
        stem=cfg.stem.value,
        dropout=cfg.dropout,
        seed=seed,
    )


def keras_latency_ms(model, x_one, runs: int, warmup: int = 5) -> dict[str, float]:
    """Single-image Keras inference latency (a compiled ``tf.function``)."""
    import tensorflow as tf

    from edge.metrics import latency_stats

    fn = tf.function(lambda t: model(t, training=False))
    x_one = tf.constant(x_one)
    for _ in range(warmup):
        fn(x_one)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn(x_one).numpy()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return latency_stats(samples)


def predict_logits(model, x, batch_size: int = 256):
    """Logits for preprocessed float inputs, in batches."""
    import numpy as np

    outs = [model(x[i : i + batch_size], training=False).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, model.outputs[0].shape[-1]), np.float32)


def train(config: TrainConfig, run: RunDir, *, verbose: int | None = None) -> dict[str, Any]:
    """Trains a baseline into ``run`` (resuming from ``run/backup`` if present).

    Args:
      config: The resolved training config.
      run: A run directory created by :meth:`RunDir.create` (kind ``train``).
      verbose: Keras verbosity; default: a progress bar on a terminal, one line
        per epoch otherwise.

    Returns:
      The contents of ``results.json``.
    """
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from tfq.data import load_dataset, make_tf_dataset
    from edge.metrics import top_k_accuracy

    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    seed_everything(config.seed, config.deterministic)
    dataset = load_dataset(config.data)
    run.write_json("config.json", config.to_dict())
    dataset.preprocessing.save(run.file("preprocessing.json"), overwrite=True)  # same data on resume
    run.write_json("dataset.json", dataset.summary())
    log.info("dataset %s: %s", dataset.name, dataset.summary())

    strategy = choose_strategy()
    replicas = strategy.num_replicas_in_sync
    x_train, y_train = dataset.x("train"), dataset.y("train")
    steps_per_epoch = max(1, math.ceil(len(x_train) / config.batch_size))
    depth = dataset.num_classes

    def one_hot(x, y):
        return x, tf.one_hot(y, depth)

    train_ds = make_tf_dataset(
        x_train,
        y_train,
        dataset.preprocessing,
        batch_size=config.batch_size,
        training=True,
        augmentation=dataset.augmentation if config.data.augment else None,
        seed=config.seed,
    ).map(one_hot)
    val_ds = make_tf_dataset(
        dataset.x("val"), dataset.y("val"), dataset.preprocessing, batch_size=256, training=False
    ).map(one_hot)

    schedule = make_schedule(config.optimizer, steps_per_epoch, config.epochs)
    with strategy.scope():
        model = build_network(config.model, dataset.image_shape, dataset.num_classes, seed=config.seed)
        model.compile(
            optimizer=make_optimizer(config.optimizer, schedule),
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=config.optimizer.label_smoothing
            ),
            metrics=[
                keras.metrics.CategoricalAccuracy(name="top1"),
                keras.metrics.TopKCategoricalAccuracy(k=min(5, depth), name="top5"),
            ],
        )
    run.update_manifest(
        params=int(model.count_params()),
        strategy=type(strategy).__name__,
        replicas=replicas,
    )
    callbacks = [
        _epoch_callback_class()(run, schedule, steps_per_epoch),
        # Saves model + optimizer + epoch at each epoch end and restores them
        # when the same run starts again after an interruption.
        keras.callbacks.BackupAndRestore(str(run.file("backup")), delete_checkpoint=False),
        keras.callbacks.TensorBoard(str(run.file("tensorboard")), profile_batch=0),
    ]
    t0 = time.perf_counter()
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    train_seconds = time.perf_counter() - t0

    if not run.exists(MODEL_FILE):
        raise RuntimeError("training finished without a best model (no validation score)")
    best = keras.models.load_model(run.file(MODEL_FILE), compile=False, safe_mode=True)
    x_test, y_test = dataset.arrays("test")
    logits = predict_logits(best, x_test)
    results = {
        "model": config.model.name,
        "dataset": config.data.name,
        "params": int(best.count_params()),
        "best_epoch": run.read_json("best.json")["epoch"],
        "val_top1": run.read_json("best.json")["val_top1"],
        "test_top1": top_k_accuracy(logits, y_test, 1),
        "test_top5": top_k_accuracy(logits, y_test, min(5, depth)),
        "test_examples": int(len(y_test)),
        "keras_latency_ms": keras_latency_ms(best, x_test[:1], config.latency_runs),
        "train_seconds_this_session": round(train_seconds, 2),
        "model_size_bytes": os.path.getsize(run.file(MODEL_FILE)),
        "strategy": type(strategy).__name__,
        "tensorflow": tf.__version__,
    }
    if not np.all(np.isfinite(logits)):
        raise FloatingPointError("the trained model produces non-finite logits on the test split")
    run.write_json("results.json", results)
    run.mark_complete(test_top1=results["test_top1"])
    return results


def config_matches(run: RunDir, config: TrainConfig) -> bool:
    """True when ``run`` was started with exactly this configuration."""
    if not run.exists("config.json"):
        return False
    try:
        return TrainConfig.from_dict(run.read_json("config.json")) == config
    except (ValueError, json.JSONDecodeError):
        return False
