"""Keras layers introduced by tfq's QAT layout transform.

:class:`FoldedConvBatchNorm` replaces a ``Conv2D``/``DepthwiseConv2D`` followed
by ``BatchNormalization``. It fake-quantizes the *folded* kernel
``W * gamma / sqrt(moving_var + eps)``, which is exactly the INT8 kernel the
TFLite converter writes, so per-tensor and per-channel weights both convert
to the scales that were trained.

Why not TFMOT's default layout? TFMOT keeps Conv and BN apart and quantizes
the unfolded kernel; the converter then folds BN into the already
quantized kernel. That is exact for per-channel scales (BN scales each output
channel), but with a per-tensor scale the folded kernel no longer lies on one
grid and the converter leaves those convolutions in float (checked with
TF 2.21: ``CONV_2D`` with FLOAT32 weights and DEQUANTIZE/QUANTIZE around it).

Training follows the folding recipe of Jacob et al. (2018) as PyTorch's
``ConvBn2d`` implements it: the kernel is folded with the *moving* variance
(so the weight grid is the deployed one), the convolution output is divided
back by the folding scale and normalized with the *batch* statistics, which
also update the moving statistics. Once the statistics are frozen
(``bn_frozen``, see :func:`tfq.qat.train.freeze_batchnorm`) and at inference,
the layer computes ``conv(x, fq(W * s)) + (beta - mean * s)``: the deployed
arithmetic.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfq.qat import quantizers as tfq_quantizers

__all__ = ["FoldedConvBatchNorm", "custom_objects"]

_CONV_TYPES = {"Conv2D": keras.layers.Conv2D, "DepthwiseConv2D": keras.layers.DepthwiseConv2D}


class FoldedConvBatchNorm(keras.layers.Layer):
    """A Conv2D/DepthwiseConv2D with its BatchNormalization folded in, for QAT.

    Args:
      conv_class: ``"Conv2D"`` or ``"DepthwiseConv2D"``.
      conv_config: The convolution's Keras config (its ``activation`` is
        applied after the batch normalization).
      bn_config: The BatchNormalization's Keras config (``axis`` must be the
        channel axis, -1 or 3).
      weight_quantizer: A TFMOT quantizer (or its serialized form) for the
        folded kernel; None leaves the kernel float.
      source_layers: Names of the layers this one replaces (conv, bn), kept for
        keep-float rules, range initialization and reports.
      **kwargs: Base layer arguments (``name``...).
    """

    def __init__(
        self,
        conv_class: str,
        conv_config: dict[str, Any],
        bn_config: dict[str, Any],
        weight_quantizer: Any = None,
        source_layers: tuple[str, ...] | list[str] = (),
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if conv_class not in _CONV_TYPES:
            raise ValueError(f"conv_class must be one of {sorted(_CONV_TYPES)}, got {conv_class!r}")
        self.conv_class = conv_class
        conv_config = dict(conv_config)
        self.activation = keras.activations.get(conv_config.pop("activation", "linear"))
        conv_config["activation"] = "linear"
        conv_config["name"] = f"{kwargs.get('name', 'folded')}_conv"
        conv_config.pop("trainable", None)
        self.conv_config = conv_config
        self.bn_config = dict(bn_config)
        axis = self.bn_config.get("axis", -1)
        if isinstance(axis, (list, tuple)):
            axis = axis[0] if len(axis) == 1 else axis
        if axis not in (-1, 3):
            raise ValueError(f"FoldedConvBatchNorm needs channels-last BatchNormalization, got axis={axis!r}")
        self.momentum = float(self.bn_config.get("momentum", 0.99))
        self.epsilon = float(self.bn_config.get("epsilon", 1e-3))
        self.center = bool(self.bn_config.get("center", True))
        self.scale = bool(self.bn_config.get("scale", True))
        if isinstance(weight_quantizer, dict):
            with keras.utils.custom_object_scope(tfq_quantizers.custom_objects()):
                weight_quantizer = keras.utils.deserialize_keras_object(
                    weight_quantizer, module_objects=_quantizer_module_objects()
                )
        self.weight_quantizer = weight_quantizer
        self.source_layers = tuple(source_layers)
        # The inner convolution only holds the kernel and computes the op.
        self.conv = _CONV_TYPES[conv_class].from_config(conv_config)

    # ------------------------------------------------------------------ build
    def build(self, input_shape: tf.TensorShape) -> None:
        input_shape = tf.TensorShape(input_shape)
        self.conv.build(input_shape)
        out_channels = self.conv.compute_output_shape(input_shape)[-1]
        self.out_channels = int(out_channels)
        self.gamma = self.add_weight(
            "gamma", shape=(self.out_channels,), initializer="ones", trainable=self.scale
        )
        self.beta = self.add_weight(
            "beta", shape=(self.out_channels,), initializer="zeros", trainable=self.center
        )
        self.moving_mean = self.add_weight(
            "moving_mean", shape=(self.out_channels,), initializer="zeros", trainable=False
        )
        self.moving_variance = self.add_weight(
            "moving_variance", shape=(self.out_channels,), initializer="ones", trainable=False
        )
        self.bn_frozen = self.add_weight(
            "bn_frozen", shape=(), dtype=tf.bool, initializer=keras.initializers.Constant(False), trainable=False
        )
        self._quantizer_vars = None
        if self.weight_quantizer is not None:
            self._quantizer_vars = self.weight_quantizer.build(self.kernel.shape, "kernel", self)
        super().build(input_shape)

    @property
    def kernel(self) -> tf.Variable:
        """The unfolded convolution kernel."""
        return self.conv.depthwise_kernel if self.conv_class == "DepthwiseConv2D" else self.conv.kernel

    def _fold_shape(self) -> list[int]:
        # Scale broadcast over the kernel's output channels.
        if self.conv_class == "DepthwiseConv2D":
            kh, kw, cin, mult = self.kernel.shape.as_list()
            return [1, 1, cin, mult]
        return [1, 1, 1, self.out_channels]

    def folded_kernel(self) -> tf.Tensor:
        """``W * gamma / sqrt(moving_var + eps)`` (unquantized)."""
        return self.kernel * tf.reshape(self._scale_factor(), self._fold_shape())

    def _scale_factor(self) -> tf.Tensor:
        gamma = self.gamma if self.scale else tf.ones_like(self.moving_variance)
        return gamma * tf.math.rsqrt(self.moving_variance + self.epsilon)

    def _conv(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        conv = self.conv
        if self.conv_class == "DepthwiseConv2D":
            strides = (1,) + tuple(conv.strides) + (1,)
            return tf.nn.depthwise_conv2d(
                inputs, kernel, strides=strides, padding=conv.padding.upper(), dilations=conv.dilation_rate
            )
        return tf.nn.conv2d(
            inputs, kernel, strides=conv.strides, padding=conv.padding.upper(), dilations=conv.dilation_rate
        )

    def _conv_bias(self) -> tf.Tensor | None:
        return self.conv.bias if self.conv.use_bias else None

    # ------------------------------------------------------------------ call
    def call(self, inputs: tf.Tensor, training: Any = None) -> tf.Tensor:
        if training is None:
            training = keras.backend.learning_phase()
        scale = self._scale_factor()
        kernel = self.kernel * tf.reshape(scale, self._fold_shape())
        if self.weight_quantizer is not None:
            quantizer, qvars = self.weight_quantizer, self._quantizer_vars
            kernel = tf.__internal__.smart_cond.smart_cond(
                training,
                lambda: quantizer(kernel, True, weights=qvars),
                lambda: quantizer(kernel, False, weights=qvars),
            )
        y = self._conv(inputs, kernel)
        conv_bias = self._conv_bias()

        def inference() -> tf.Tensor:
            mean = self.moving_mean if conv_bias is None else self.moving_mean - conv_bias
            return y + (self.beta - mean * scale)

        def batch_statistics() -> tf.Tensor:
            # The unfolded, unnormalized convolution output (plus its bias).
            raw = tf.math.divide_no_nan(y, scale)
            if conv_bias is not None:
                raw = raw + conv_bias
            mean, var = tf.nn.moments(raw, axes=[0, 1, 2])
            # Keras' fused BatchNormalization keeps the unbiased variance.
            n = tf.cast(tf.reduce_prod(tf.shape(raw)[:3]), var.dtype)
            self._update_moving(mean, var * n / tf.maximum(n - 1.0, 1.0))
            gamma = self.gamma if self.scale else 1.0
            return (raw - mean) * (gamma * tf.math.rsqrt(var + self.epsilon)) + self.beta

        if isinstance(training, bool) and not training:
            out = inference()
        else:
            out = tf.__internal__.smart_cond.smart_cond(
                training,
                lambda: tf.cond(self.bn_frozen, inference, batch_statistics),
                inference,
            )
        return self.activation(out)

    def _update_moving(self, mean: tf.Tensor, var: tf.Tensor) -> None:
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + var * (1.0 - m))

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return self.conv.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        conv_config = dict(self.conv_config)
        conv_config["activation"] = keras.activations.serialize(self.activation)
        config.update(
            {
                "conv_class": self.conv_class,
                "conv_config": conv_config,
                "bn_config": self.bn_config,
                "weight_quantizer": (
                    None if self.weight_quantizer is None
                    else keras.utils.serialize_keras_object(self.weight_quantizer)
                ),
                "source_layers": list(self.source_layers),
            }
        )
        return config


def _quantizer_module_objects() -> dict[str, Any]:
    import tensorflow_model_optimization as tfmot

    q = tfmot.quantization.keras.quantizers
    objs = {name: getattr(q, name) for name in ("LastValueQuantizer", "MovingAverageQuantizer", "AllValuesQuantizer")}
    objs.update(tfq_quantizers.custom_objects())
    return objs


def custom_objects() -> dict[str, type]:
    """Classes needed to deserialize a model holding these layers."""
    return {"FoldedConvBatchNorm": FoldedConvBatchNorm}
