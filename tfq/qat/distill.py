"""Knowledge distillation for QAT: the FP32 baseline teaches its fake-quant copy.

The teacher's logits travel with the labels: :func:`with_teacher_logits` maps
a ``(x, one_hot)`` dataset to ``(x, concat([one_hot, teacher(x)]))``, computed
on the same (augmented) batch the student sees, and :class:`DistillationLoss`
splits ``y_true`` again. Keeping the teacher out of the student model leaves
the QAT model, its callbacks (BatchNorm and range freezing), its checkpoints
and its conversion exactly as in plain QAT. A ``y_true`` that carries only the
labels (the validation set) gives the plain label loss, so ``val_loss`` stays
comparable with a run without distillation.

Example::

    train_ds = with_teacher_logits(train_ds, teacher)
    model.compile(loss=DistillationLoss(num_classes=10, temperature=4.0, weight=0.5),
                  metrics=label_metrics(10))
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

__all__ = ["DistillationLoss", "label_metrics", "with_teacher_logits"]


def with_teacher_logits(ds: tf.data.Dataset, teacher: keras.Model) -> tf.data.Dataset:
    """Appends the teacher's logits (inference mode, no gradient) to each batch's labels.

    Args:
      ds: A dataset of ``(x, one_hot)`` batches.
      teacher: The FP32 model (logits out). It is set non-trainable.

    Returns:
      A dataset of ``(x, concat([one_hot, teacher_logits], axis=-1))`` batches.
    """
    teacher.trainable = False

    def add(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits = tf.stop_gradient(tf.cast(teacher(x, training=False), y.dtype))
        return x, tf.concat([y, logits], axis=-1)

    return ds.map(add, num_parallel_calls=1)


class DistillationLoss(keras.losses.Loss):
    """``(1 - w) * CE(labels, s) + w * T**2 * KL(softmax(t / T) || softmax(s / T))``.

    ``y_true`` is ``[one_hot | teacher_logits]`` (``2 * num_classes`` wide), or
    only ``one_hot`` (then the loss is the plain cross-entropy, unweighted).

    Args:
      num_classes: Width of the one-hot labels.
      temperature: Softening temperature ``T`` (> 0).
      weight: Share ``w`` of the soft term, in ``[0, 1]``.
      label_smoothing: For the label cross-entropy.
    """

    def __init__(self, num_classes: int, temperature: float = 4.0, weight: float = 0.5,
                 label_smoothing: float = 0.0, name: str = "distillation", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not 0 <= weight <= 1:
            raise ValueError(f"weight must be in [0, 1], got {weight!r}")
        self.num_classes = int(num_classes)
        self.temperature = float(temperature)
        self.weight = float(weight)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_pred = tf.cast(y_pred, tf.float32)
        y_true = tf.cast(y_true, tf.float32)
        labels = y_true[..., : self.num_classes]
        ce = keras.losses.categorical_crossentropy(
            labels, y_pred, from_logits=True, label_smoothing=self.label_smoothing
        )
        if y_true.shape[-1] == self.num_classes:
            return ce
        t = self.temperature
        teacher = y_true[..., self.num_classes:]
        p_teacher = tf.nn.softmax(teacher / t, axis=-1)
        kl = tf.reduce_sum(
            p_teacher * (tf.nn.log_softmax(teacher / t, axis=-1) - tf.nn.log_softmax(y_pred / t, axis=-1)),
            axis=-1,
        )
        return (1.0 - self.weight) * ce + self.weight * t * t * kl

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(), "num_classes": self.num_classes, "temperature": self.temperature,
            "weight": self.weight, "label_smoothing": self.label_smoothing,
        }


def label_metrics(num_classes: int) -> list[keras.metrics.Metric]:
    """top-1 and top-5 that read only the label part of ``y_true``."""
    n = num_classes

    def top1(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return keras.metrics.categorical_accuracy(y_true[..., :n], y_pred)

    def top5(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return keras.metrics.top_k_categorical_accuracy(y_true[..., :n], y_pred, k=min(5, n))

    return [keras.metrics.MeanMetricWrapper(top1, name="top1"), keras.metrics.MeanMetricWrapper(top5, name="top5")]
