"""Building blocks shared by the architectures, as plain functions on Keras tensors.

Every layer gets an explicit name built from the ``name`` prefix the caller
passes (``stage2_block1`` -> ``stage2_block1_conv1``, ``stage2_block1_bn1``,
...), so two builds of a model have identical layer names and name-based
quantization rules can target them. Convolutions have no bias (each is
followed by ``BatchNormalization``) and use ``"same"`` padding, so stride-2
layers work down to 1x1 inputs.

Weights are seeded per layer: the seed of a layer's initializer is derived
from the model seed and the layer's name, so builds are reproducible without
touching global random state and do not depend on the order layers are built.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf
    import tf_keras as keras

__all__ = [
    "apply_basic_block",
    "apply_bottleneck_block",
    "apply_classifier_head",
    "apply_conv_bn",
    "apply_inverted_residual",
    "he_normal",
    "layer_seed",
    "scale_width",
]


def scale_width(channels: int, multiplier: float, divisor: int = 8) -> int:
    """Scales a channel count by a width multiplier.

    At ``multiplier == 1.0`` the base count is returned unchanged. Otherwise the
    scaled count is rounded to the nearest multiple of ``divisor``, is at least
    ``divisor``, and is never rounded down by more than 10%.

    Args:
        channels: The base channel count.
        multiplier: The width multiplier, positive.
        divisor: Channel counts are rounded to multiples of this.

    Returns:
        The scaled channel count.
    """
    if multiplier == 1.0:
        return channels
    scaled = channels * multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return rounded


def layer_seed(seed: int | None, layer_name: str) -> int | None:
    """Derives a layer's initializer seed from the model seed and the layer name."""
    if seed is None:
        return None
    return zlib.crc32(f"{seed}/{layer_name}".encode()) & 0x7FFFFFFF


def he_normal(seed: int | None, layer_name: str) -> keras.initializers.Initializer:
    """Returns a He-normal initializer seeded for ``layer_name`` (see :func:`layer_seed`)."""
    import tf_keras as keras

    return keras.initializers.HeNormal(seed=layer_seed(seed, layer_name))


def apply_conv_bn(
    x: tf.Tensor,
    filters: int,
    kernel_size: int,
    stride: int,
    name: str,
    suffix: str = "",
    *,
    relu: bool = True,
    relu_max_value: float | None = None,
    seed: int | None = None,
) -> tf.Tensor:
    """Applies Conv2D (no bias) + BatchNormalization (+ ReLU).

    Layers are named ``{name}_conv{suffix}``, ``{name}_bn{suffix}`` and
    ``{name}_relu{suffix}``.

    Args:
        x: Input tensor, channels last.
        filters: Output channels.
        kernel_size: Square kernel size.
        stride: Convolution stride.
        name: Layer name prefix.
        suffix: Appended to each layer name, e.g. ``"1"``.
        relu: Whether to end with a ReLU.
        relu_max_value: Caps the ReLU (6.0 gives ReLU6); ``None`` for plain ReLU.
        seed: Model seed for the kernel initializer, or ``None``.

    Returns:
        The output tensor.
    """
    import tf_keras as keras

    conv_name = f"{name}_conv{suffix}"
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer=he_normal(seed, conv_name),
        name=conv_name,
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn{suffix}")(x)
    if relu:
        x = keras.layers.ReLU(relu_max_value, name=f"{name}_relu{suffix}")(x)
    return x


def _apply_shortcut(
    x: tf.Tensor, out_channels: int, stride: int, name: str, seed: int | None
) -> tf.Tensor:
    """Returns ``x``, or a 1x1 conv + BN projection of it when the shape changes."""
    if stride == 1 and x.shape[-1] == out_channels:
        return x
    return apply_conv_bn(x, out_channels, 1, stride, f"{name}_shortcut", relu=False, seed=seed)


def _apply_add_relu(residual: tf.Tensor, shortcut: tf.Tensor, name: str) -> tf.Tensor:
    import tf_keras as keras

    x = keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def apply_basic_block(
    x: tf.Tensor, filters: int, stride: int, name: str, *, seed: int | None = None
) -> tf.Tensor:
    """Applies a ResNet basic block: two 3x3 conv-BN layers and a shortcut.

    Layers: ``{name}_conv1/bn1/relu1``, ``{name}_conv2/bn2``, optionally
    ``{name}_shortcut_conv/shortcut_bn``, then ``{name}_add`` and ``{name}_out``
    (the final ReLU).

    Args:
        x: Input tensor, channels last.
        filters: Output channels.
        stride: Stride of the first convolution (and of the projection).
        name: Layer name prefix, e.g. ``"stage2_block1"``.
        seed: Model seed for the kernel initializers, or ``None``.

    Returns:
        The output tensor, with ``filters`` channels.
    """
    y = apply_conv_bn(x, filters, 3, stride, name, "1", seed=seed)
    y = apply_conv_bn(y, filters, 3, 1, name, "2", relu=False, seed=seed)
    return _apply_add_relu(y, _apply_shortcut(x, filters, stride, name, seed), name)


def apply_bottleneck_block(
    x: tf.Tensor,
    filters: int,
    stride: int,
    name: str,
    *,
    expansion: int = 4,
    seed: int | None = None,
) -> tf.Tensor:
    """Applies a ResNet bottleneck block: 1x1, 3x3, 1x1 conv-BN and a shortcut.

    The stride sits on the 3x3 convolution (ResNet v1.5, as in torchvision and
    tensorflow/models). Layers: ``{name}_conv1/bn1/relu1`` ..
    ``{name}_conv3/bn3``, optionally ``{name}_shortcut_conv/shortcut_bn``, then
    ``{name}_add`` and ``{name}_out``.

    Args:
        x: Input tensor, channels last.
        filters: Channels of the inner convolutions.
        stride: Stride of the 3x3 convolution (and of the projection).
        name: Layer name prefix, e.g. ``"stage2_block1"``.
        expansion: The block outputs ``filters * expansion`` channels.
        seed: Model seed for the kernel initializers, or ``None``.

    Returns:
        The output tensor, with ``filters * expansion`` channels.
    """
    out_channels = filters * expansion
    y = apply_conv_bn(x, filters, 1, 1, name, "1", seed=seed)
    y = apply_conv_bn(y, filters, 3, stride, name, "2", seed=seed)
    y = apply_conv_bn(y, out_channels, 1, 1, name, "3", relu=False, seed=seed)
    return _apply_add_relu(y, _apply_shortcut(x, out_channels, stride, name, seed), name)


def apply_inverted_residual(
    x: tf.Tensor,
    filters: int,
    stride: int,
    expansion: int,
    name: str,
    *,
    seed: int | None = None,
) -> tf.Tensor:
    """Applies a MobileNetV2 inverted residual block with a linear bottleneck.

    1x1 expansion conv-BN-ReLU6 (skipped when ``expansion == 1``), 3x3
    depthwise conv-BN-ReLU6, 1x1 projection conv-BN without activation, and an
    identity shortcut when the stride is 1 and the channel count is unchanged.
    Layers: ``{name}_expand_conv/bn/relu``, ``{name}_dw_conv/bn/relu``,
    ``{name}_project_conv/bn`` and ``{name}_add``.

    Args:
        x: Input tensor, channels last.
        filters: Output channels.
        stride: Stride of the depthwise convolution.
        expansion: Expansion factor ``t`` of the hidden channels.
        name: Layer name prefix, e.g. ``"block3"``.
        seed: Model seed for the kernel initializers, or ``None``.

    Returns:
        The output tensor, with ``filters`` channels.
    """
    import tf_keras as keras

    in_channels = x.shape[-1]
    y = x
    if expansion != 1:
        y = apply_conv_bn(
            y, in_channels * expansion, 1, 1, f"{name}_expand", relu_max_value=6.0, seed=seed
        )
    dw_name = f"{name}_dw_conv"
    y = keras.layers.DepthwiseConv2D(
        3,
        strides=stride,
        padding="same",
        use_bias=False,
        depthwise_initializer=he_normal(seed, dw_name),
        name=dw_name,
    )(y)
    y = keras.layers.BatchNormalization(name=f"{name}_dw_bn")(y)
    y = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(y)
    y = apply_conv_bn(y, filters, 1, 1, f"{name}_project", relu=False, seed=seed)
    if stride == 1 and in_channels == filters:
        y = keras.layers.Add(name=f"{name}_add")([x, y])
    return y


def apply_classifier_head(
    x: tf.Tensor, num_classes: int, dropout: float, *, seed: int | None = None
) -> tf.Tensor:
    """Applies global average pooling, optional dropout and a Dense logits layer.

    Layers: ``head_pool``, ``head_dropout`` (only when ``dropout > 0``) and
    ``logits`` (no softmax).

    Args:
        x: Input feature map, channels last.
        num_classes: Number of logits.
        dropout: Dropout rate; 0 adds no layer.
        seed: Model seed for the dropout and the Dense initializer, or ``None``.

    Returns:
        The logits tensor, shape ``(batch, num_classes)``.
    """
    import tf_keras as keras

    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout > 0:
        x = keras.layers.Dropout(
            dropout, seed=layer_seed(seed, "head_dropout"), name="head_dropout"
        )(x)
    return keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.GlorotUniform(seed=layer_seed(seed, "logits")),
        name="logits",
    )(x)
