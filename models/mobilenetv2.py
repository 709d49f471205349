"""MobileNetV2 (Sandler et al., 2018) from the standard (t, c, n, s) spec table.

Layout (``"same"`` padding everywhere):

* stem: 3x3 conv to 32 channels + BN + ReLU6 (``stem_conv/bn/relu``), stride 2
  for ``imagenet``, stride 1 for ``cifar``.
* 17 inverted residual blocks ``block1`` .. ``block17`` (see
  :func:`models.blocks.apply_inverted_residual`) from :data:`MOBILENETV2_SPEC`.
  With the ``cifar`` stem the second row (24 channels) also gets stride 1, so
  the network downsamples 8x instead of 32x: 32x32 inputs end at 4x4 and
  8x8 inputs at 1x1 (the usual CIFAR adaptation).
* head: 1x1 conv to 1280 channels + BN + ReLU6 (``head_conv/bn/relu``),
  ``head_pool``, optional ``head_dropout``, Dense ``logits``.

The width multiplier scales the stem and block channels (rounded to multiples
of 8); the 1280 head channels only grow, for multipliers above 1. At width 1.0
with the ImageNet stem, 224x224x3 and 1000 classes the model has 3,538,984
parameters, as ``tf_keras.applications.MobileNetV2``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models import blocks
from models.registry import BuildOptions, Stem, register

if TYPE_CHECKING:
    import tf_keras as keras

__all__ = ["HEAD_WIDTH", "MOBILENETV2_SPEC", "STEM_WIDTH", "build_mobilenetv2"]

# (expansion t, output channels c, repeats n, stride of the first repeat s)
MOBILENETV2_SPEC: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_WIDTH = 32
HEAD_WIDTH = 1280
# Rows of MOBILENETV2_SPEC whose stride becomes 1 with the cifar stem.
_CIFAR_UNSTRIDED_ROWS = frozenset({1})


@register("mobilenetv2")
def build_mobilenetv2(name: str, options: BuildOptions) -> keras.Model:
    """Builds ``mobilenetv2``.

    Args:
        name: The model name.
        options: Validated build options.

    Returns:
        A functional ``tf_keras.Model`` that outputs logits.
    """
    import tf_keras as keras

    width, seed = options.width_multiplier, options.seed
    cifar = options.stem is Stem.CIFAR

    inputs = keras.Input(shape=options.input_shape, name="input")
    x = blocks.apply_conv_bn(
        inputs,
        blocks.scale_width(STEM_WIDTH, width),
        3,
        1 if cifar else 2,
        "stem",
        relu_max_value=6.0,
        seed=seed,
    )

    block = 0
    for row, (expansion, channels, repeats, first_stride) in enumerate(MOBILENETV2_SPEC):
        if cifar and row in _CIFAR_UNSTRIDED_ROWS:
            first_stride = 1
        filters = blocks.scale_width(channels, width)
        for repeat in range(repeats):
            block += 1
            stride = first_stride if repeat == 0 else 1
            x = blocks.apply_inverted_residual(
                x, filters, stride, expansion, f"block{block}", seed=seed
            )

    head_width = blocks.scale_width(HEAD_WIDTH, width) if width > 1.0 else HEAD_WIDTH
    x = blocks.apply_conv_bn(x, head_width, 1, 1, "head", relu_max_value=6.0, seed=seed)
    outputs = blocks.apply_classifier_head(x, options.num_classes, options.dropout, seed=seed)
    return keras.Model(inputs, outputs, name=name)
