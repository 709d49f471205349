"""Quantizers of tfq's QAT scheme, built on TFMOT's.

Weights use TFMOT's :class:`LastValueQuantizer` (the range follows the current
weights), activations :class:`MovingAverageQuantizer` and the model input
:class:`AllValuesQuantizer`, all with ``symmetric``/``per_axis``/``narrow_range``
set from a :class:`~tfq.qat.config.QATConfig`. Two small additions:

* Activation quantizers can be *frozen*: each one owns a boolean
  ``<name>_frozen`` variable; while it is True, training uses the stored
  min/max instead of updating them (:func:`tfq.qat.train.freeze_ranges`).
* :class:`DepthwiseWeightsQuantizer` quantizes a DepthwiseConv2D kernel
  ``(kh, kw, in, multiplier)`` per *output* channel (``in * multiplier`` scales),
  the layout TFLite's ``DEPTHWISE_CONV_2D`` uses. TFMOT's per-axis quantizer
  would use the last axis, i.e. one scale per multiplier.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from tfq.qat.config import QATConfig

__all__ = [
    "DepthwiseWeightsQuantizer",
    "FreezableAllValuesQuantizer",
    "FreezableMovingAverageQuantizer",
    "activation_quantizer",
    "custom_objects",
    "input_quantizer",
    "weight_quantizer",
]

_q = tfmot.quantization.keras.quantizers

NUM_BITS = 8


class _FreezableMixin:
    """Adds a ``<name>_frozen`` flag; while set, training does not move the range."""

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, tf.Variable]:
        variables = super().build(tensor_shape, name, layer)  # type: ignore[misc]
        variables["frozen"] = layer.add_weight(
            name + "_frozen",
            shape=(),
            dtype=tf.bool,
            initializer=keras.initializers.Constant(False),
            trainable=False,
        )
        return variables

    def __call__(self, inputs: tf.Tensor, training: Any, weights: dict[str, Any], **kwargs: Any) -> tf.Tensor:
        parent = super().__call__  # type: ignore[misc]
        if isinstance(training, bool) and not training:
            return parent(inputs, False, weights, **kwargs)
        frozen = weights.get("frozen")
        if frozen is None:
            return parent(inputs, training, weights, **kwargs)
        return tf.cond(
            frozen,
            lambda: parent(inputs, False, weights, **kwargs),
            lambda: parent(inputs, training, weights, **kwargs),
        )


class FreezableMovingAverageQuantizer(_FreezableMixin, _q.MovingAverageQuantizer):
    """TFMOT's moving-average activation quantizer with a freeze flag."""


class FreezableAllValuesQuantizer(_FreezableMixin, _q.AllValuesQuantizer):
    """TFMOT's all-values (running min/max) quantizer with a freeze flag."""


class DepthwiseWeightsQuantizer(_q.LastValueQuantizer):
    """Per-output-channel quantizer for ``(kh, kw, in, multiplier)`` depthwise kernels.

    With ``per_axis=False`` it is a plain per-tensor :class:`LastValueQuantizer`.
    """

    def build(self, tensor_shape: Any, name: str, layer: keras.layers.Layer) -> dict[str, tf.Variable]:
        shape = tf.TensorShape(tensor_shape)
        return super().build(self._flat_shape(shape), name, layer)

    @staticmethod
    def _flat_shape(shape: tf.TensorShape) -> tf.TensorShape:
        kh, kw, cin, mult = shape.as_list()
        return tf.TensorShape([kh, kw, 1, cin * mult])

    def __call__(self, inputs: tf.Tensor, training: Any, weights: dict[str, Any], **kwargs: Any) -> tf.Tensor:
        shape = inputs.shape
        flat = tf.reshape(inputs, self._flat_shape(shape))
        out = super().__call__(flat, training, weights, **kwargs)
        return tf.reshape(out, shape)


def weight_quantizer(config: QATConfig, *, depthwise: bool = False, per_channel_capable: bool = True) -> _q.Quantizer:
    """The weight quantizer for one layer kind.

    Args:
      config: The QAT configuration.
      depthwise: The kernel is a DepthwiseConv2D kernel.
      per_channel_capable: False for kernels TFLite quantizes per tensor (Dense).
    """
    per_axis = config.per_channel and per_channel_capable
    cls = DepthwiseWeightsQuantizer if depthwise else _q.LastValueQuantizer
    return cls(
        num_bits=NUM_BITS, per_axis=per_axis, symmetric=config.weights.symmetric,
        narrow_range=config.weights.narrow_range,
    )


def activation_quantizer(config: QATConfig) -> _q.Quantizer:
    """The quantizer of layer outputs (per tensor, moving-average range)."""
    return FreezableMovingAverageQuantizer(
        num_bits=NUM_BITS, per_axis=False, symmetric=config.activations.symmetric, narrow_range=False
    )


def input_quantizer(config: QATConfig) -> _q.Quantizer:
    """The quantizer of the model input (per tensor, running min/max as in TFMOT)."""
    return FreezableAllValuesQuantizer(
        num_bits=NUM_BITS, per_axis=False, symmetric=config.activations.symmetric, narrow_range=False
    )


def custom_objects() -> dict[str, type]:
    """Classes needed to deserialize a model using these quantizers."""
    return {
        "FreezableMovingAverageQuantizer": FreezableMovingAverageQuantizer,
        "FreezableAllValuesQuantizer": FreezableAllValuesQuantizer,
        "DepthwiseWeightsQuantizer": DepthwiseWeightsQuantizer,
    }
