"""``smallcnn``: a small, fast CNN for tiny inputs (8x8 digits, 32x32 CIFAR).

Three stages of two 3x3 conv-BN-ReLU layers (32, 64, 128 base channels,
``stage{s}_conv{c}/bn{c}/relu{c}``), a 2x2 max-pool (``stage{s}_pool``)
between stages only while the feature map is at least 2x2, then
``head_pool``, optional ``head_dropout`` and Dense ``logits``. The network
has no separate stem: ``stem="imagenet"`` gives the first convolution
stride 2 to cut the cost on large inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models import blocks
from models.registry import BuildOptions, Stem, register

if TYPE_CHECKING:
    import tf_keras as keras

__all__ = ["CONVS_PER_STAGE", "STAGE_WIDTHS", "build_smallcnn"]

STAGE_WIDTHS = (32, 64, 128)
CONVS_PER_STAGE = 2


@register("smallcnn")
def build_smallcnn(name: str, options: BuildOptions) -> keras.Model:
    """Builds ``smallcnn``.

    Args:
        name: The model name.
        options: Validated build options.

    Returns:
        A functional ``tf_keras.Model`` that outputs logits.
    """
    import tf_keras as keras

    inputs = keras.Input(shape=options.input_shape, name="input")
    x = inputs
    for stage, base_filters in enumerate(STAGE_WIDTHS, 1):
        filters = blocks.scale_width(base_filters, options.width_multiplier)
        for conv in range(1, CONVS_PER_STAGE + 1):
            stride = 2 if stage == 1 and conv == 1 and options.stem is Stem.IMAGENET else 1
            x = blocks.apply_conv_bn(
                x, filters, 3, stride, f"stage{stage}", str(conv), seed=options.seed
            )
        if stage < len(STAGE_WIDTHS) and min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPool2D(2, name=f"stage{stage}_pool")(x)

    outputs = blocks.apply_classifier_head(
        x, options.num_classes, options.dropout, seed=options.seed
    )
    return keras.Model(inputs, outputs, name=name)
