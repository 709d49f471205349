"""Fine-tuning a fake-quant model: low learning rate, freezing, checkpoints, resume.

The optimizer and schedule are the baseline's (SGD with momentum, linear
warm-up then cosine decay, from :mod:`tfq.train`) with the peak learning rate
lowered (default 1/100 of the baseline's). Two switches, both applied at the
start of an epoch so a resumed run behaves exactly like an uninterrupted one:

* **BatchNorm freeze** (``freeze_bn_after=K``): from epoch K on, folded
  Conv+BN layers stop using batch statistics and stop updating their moving
  statistics (:func:`freeze_batchnorm`); the training graph is then the
  deployed arithmetic. Plain BatchNormalization layers (in float islands) are
  switched to inference mode too.
* **Range freeze** (``freeze_ranges_after=K``): from epoch K on, activation
  quantizers keep their min/max (:func:`freeze_ranges`).

Each epoch appends one line to ``metrics.jsonl`` and keeps the best model on
the *validation* split; ``backup/`` (Keras ``BackupAndRestore``) holds the last
finished epoch so the same command resumes after an interruption.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from typing import Any, Callable

import tensorflow as tf
import tf_keras as keras

from tfq.qat.layers import FoldedConvBatchNorm
from tfq.rundir import RunDir

__all__ = [
    "BEST_FILE",
    "FreezeCallback",
    "QATEpochLogger",
    "fine_tune",
    "freeze_batchnorm",
    "freeze_ranges",
    "frozen_state",
]

log = logging.getLogger(__name__)

BEST_FILE = "model_qat.h5"


def _inner(layer: keras.layers.Layer) -> keras.layers.Layer:
    return getattr(layer, "layer", layer)


def freeze_batchnorm(model: keras.Model, frozen: bool = True) -> list[str]:
    """Freezes (or unfreezes) BatchNorm statistics of a QAT model.

    Folded Conv+BN layers switch through their ``bn_frozen`` variable (no
    retracing needed). Plain BatchNormalization layers (float islands, or a
    standalone BN) are made non-trainable, which in TF2 Keras runs them in
    inference mode; the caller must rebuild the train function
    (:class:`FreezeCallback` does).

    Returns:
      Names of the plain BatchNormalization layers whose mode changed.
    """
    changed = []
    for layer in model.layers:
        inner = _inner(layer)
        if isinstance(inner, FoldedConvBatchNorm):
            inner.bn_frozen.assign(frozen)
        elif isinstance(inner, keras.layers.BatchNormalization) and inner.trainable == frozen:
            inner.trainable = not frozen
            changed.append(inner.name)
    return changed


def freeze_ranges(model: keras.Model, frozen: bool = True) -> int:
    """Freezes (or unfreezes) every activation quantizer range; returns how many."""
    from tfq.qat.ranges import quantizer_sites

    n = 0
    for site in quantizer_sites(model):
        if site.frozen_var is not None:
            site.frozen_var.assign(frozen)
            n += 1
    return n


def frozen_state(model: keras.Model) -> dict[str, bool]:
    """``{"bn": all folded BN frozen, "ranges": all ranges frozen}``."""
    from tfq.qat.ranges import quantizer_sites

    bn = [bool(_inner(l).bn_frozen.numpy()) for l in model.layers if isinstance(_inner(l), FoldedConvBatchNorm)]
    ranges = [bool(s.frozen_var.numpy()) for s in quantizer_sites(model) if s.frozen_var is not None]
    return {"bn": bool(bn) and all(bn), "ranges": bool(ranges) and all(ranges)}


class FreezeCallback(keras.callbacks.Callback):
    """Applies ``freeze_bn_after``/``freeze_ranges_after`` at the start of each epoch.

    Args:
      freeze_bn_after: First (0-based) epoch with frozen BatchNorm, or None.
      freeze_ranges_after: First (0-based) epoch with frozen ranges, or None.
    """

    def __init__(self, freeze_bn_after: int | None, freeze_ranges_after: int | None):
        super().__init__()
        self.freeze_bn_after = freeze_bn_after
        self.freeze_ranges_after = freeze_ranges_after

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.freeze_bn_after is not None and epoch >= self.freeze_bn_after:
            changed = freeze_batchnorm(self.model)
            if changed:
                self.model.make_train_function(force=True)
            if epoch == self.freeze_bn_after or changed:
                log.info("epoch %d: BatchNorm statistics frozen", epoch + 1)
        if self.freeze_ranges_after is not None and epoch >= self.freeze_ranges_after:
            n = freeze_ranges(self.model)
            if epoch == self.freeze_ranges_after:
                log.info("epoch %d: %d activation ranges frozen", epoch + 1, n)


class QATEpochLogger(keras.callbacks.Callback):
    """Writes ``metrics.jsonl`` and keeps the best QAT model on validation top-1.

    A later epoch wins ties (it has seen more of the frozen phases). The best
    score survives a resume through ``best.json``.

    Args:
      run: The run directory.
      schedule: The learning-rate schedule (for the ``lr`` column).
      steps_per_epoch: Optimizer steps per epoch.
      extra: Called at each epoch end; its dict is merged into the record.
    """

    def __init__(self, run: RunDir, schedule: Any, steps_per_epoch: int,
                 extra: Callable[[int], dict[str, Any]] | None = None):
        super().__init__()
        self.run = run
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self.extra = extra
        best = run.read_json("best.json") if run.exists("best.json") else {}
        self.best = float(best.get("val_top1", -1.0))
        self._t0 = 0.0
        self._trimmed = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._trimmed:
            # After a resume, drop lines of epochs that finished after the last backup.
            self._trimmed = True
            records = self.run.read_jsonl("metrics.jsonl")
            kept = [r for r in records if r.get("epoch", 0) <= epoch]
            if len(kept) != len(records):
                self.run.write_text("metrics.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        record: dict[str, Any] = {"epoch": epoch + 1, "time_s": round(time.perf_counter() - self._t0, 3)}
        for k, v in (logs or {}).items():
            record[k] = float(v)
        if not math.isfinite(record.get("loss", 0.0)):
            raise FloatingPointError(f"QAT diverged at epoch {epoch + 1}: loss={record['loss']}")
        record["lr"] = float(self.schedule((epoch + 1) * self.steps_per_epoch - 1))
        record.update({f"{k}_frozen": v for k, v in frozen_state(self.model).items()})
        if self.extra is not None:
            record.update(self.extra(epoch))
        self.run.append_jsonl("metrics.jsonl", record)
        val = record.get("val_top1")
        if val is not None and val >= self.best:
            self.best = val
            tmp = self.run.file(f".{BEST_FILE}.tmp.h5")
            from tfq.qat.quantize import quantize_scope

            with quantize_scope(), warnings.catch_warnings():
                # HDF5 on purpose: TFMOT models do not reload from the .keras format.
                warnings.filterwarnings("ignore", message=".*HDF5 file.*")
                self.model.save(tmp, overwrite=True)
            os.replace(tmp, self.run.file(BEST_FILE))
            self.run.write_json("best.json", {"epoch": epoch + 1, "val_top1": val})
            log.info("epoch %d: best val_top1=%.4f, saved %s", epoch + 1, val, BEST_FILE)


def fine_tune(
    qat_model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    *,
    run: RunDir,
    optimizer_config: Any,
    epochs: int,
    steps_per_epoch: int,
    freeze_bn_after: int | None = None,
    freeze_ranges_after: int | None = None,
    num_classes: int,
    verbose: int = 2,
    extra: Callable[[int], dict[str, Any]] | None = None,
    teacher: keras.Model | None = None,
    distill_temperature: float = 4.0,
    distill_weight: float = 0.5,
) -> keras.callbacks.History:
    """Compiles and fine-tunes ``qat_model`` into ``run`` (resuming from ``run/backup``).

    Args:
      qat_model: The fake-quant model (ranges already initialized).
      train_ds: Repeating training dataset of ``(x, one_hot)`` batches.
      val_ds: Validation dataset of ``(x, one_hot)`` batches.
      run: The QAT run directory.
      optimizer_config: A :class:`tfq.train.OptimizerConfig` with the QAT
        learning rate (schedule and optimizer come from :mod:`tfq.train`).
      epochs: Total epochs.
      steps_per_epoch: Steps per epoch.
      freeze_bn_after: See :class:`FreezeCallback`.
      freeze_ranges_after: See :class:`FreezeCallback`.
      num_classes: For the top-5 metric.
      verbose: Keras verbosity.
      extra: Extra per-epoch metrics (see :class:`QATEpochLogger`).
      teacher: The FP32 model to distill from (:mod:`tfq.qat.distill`); None
        trains on the labels only. Must not share variables with ``qat_model``.
      distill_temperature: Softening temperature of the teacher term.
      distill_weight: Share of the teacher term in the loss.

    Returns:
      The Keras history of this session.
    """
    from tfq.train import make_optimizer, make_schedule

    schedule = make_schedule(optimizer_config, steps_per_epoch, epochs)
    smoothing = getattr(optimizer_config, "label_smoothing", 0.0)
    if teacher is not None:
        from tfq.qat import distill

        train_ds = distill.with_teacher_logits(train_ds, teacher)
        loss = distill.DistillationLoss(num_classes, distill_temperature, distill_weight, label_smoothing=smoothing)
        metrics = distill.label_metrics(num_classes)
    else:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
        metrics = [
            keras.metrics.CategoricalAccuracy(name="top1"),
            keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes), name="top5"),
        ]
    qat_model.compile(optimizer=make_optimizer(optimizer_config, schedule), loss=loss, metrics=metrics)
    callbacks = [
        FreezeCallback(freeze_bn_after, freeze_ranges_after),
        QATEpochLogger(run, schedule, steps_per_epoch, extra),
        keras.callbacks.BackupAndRestore(str(run.file("backup")), delete_checkpoint=False),
    ]
    return qat_model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
