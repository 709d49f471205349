"""ResNet-18/34/50 (ImageNet family) and ResNet-20/32/56 (CIFAR family) from spec tables.

Layout (``"same"`` padding everywhere):

* stem ``cifar``: 3x3 conv, stride 1 (``stem_conv/bn/relu``), no pooling;
  stem ``imagenet``: 7x7 conv, stride 2, then 3x3 max-pool, stride 2 (``stem_pool``).
* stages 1..4 of 64, 128, 256, 512 base channels (x4 at the output of
  bottleneck blocks); the first block of stages 2..4 has stride 2. Blocks are
  named ``stage{s}_block{b}`` (both 1-based), see :mod:`models.blocks`.
* head: ``head_pool`` (global average pooling), optional ``head_dropout``,
  Dense ``logits``.

Parameter counts (``model.count_params()``, which includes the BatchNorm
moving statistics; trainable counts equal the usual PyTorch numbers):
ResNet-18 CIFAR 32x32x3/10 classes: 11,183,562 total, 11,173,962 trainable;
ResNet-50 ImageNet 224x224x3/1000 classes: 25,610,152 total, 25,557,032
trainable. ``tf_keras.applications.ResNet50`` reports 25,636,712 because its
convolutions carry biases in front of BatchNorm; these do not.

The CIFAR ResNets of He et al. 2016 (section 4.2), ``resnet20``, ``resnet32``
and ``resnet56``, are 6n+2 layers deep: a 3x3 stem of 16 channels, three
stages of n basic blocks with 16, 32 and 64 channels (stride 2 at the first
block of stages 2 and 3), global pooling and the logits. Where the shape
changes, the shortcut is a 1x1 convolution + BN (the paper's option B; its
option A pads with zeros, which TFLite would run as a PAD + strided slice).
ResNet-20 CIFAR 32x32x3/10 classes: 272,474 trainable parameters (paper:
0.27 M). Same layer names as the ImageNet family (``stem_conv``,
``stage2_block1_conv1``, ..., ``logits``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from models import blocks
from models.registry import BuildOptions, Stem, register

if TYPE_CHECKING:
    import tf_keras as keras

__all__ = ["CIFAR_RESNET_SPECS", "RESNET_SPECS", "STAGE_WIDTHS", "build_cifar_resnet", "build_resnet"]

# depth -> (block type, blocks per stage)
RESNET_SPECS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)
STEM_WIDTH = 64

# depth -> basic blocks per stage (depth = 6n + 2)
CIFAR_RESNET_SPECS: dict[int, int] = {20: 3, 32: 5, 56: 9}
CIFAR_STAGE_WIDTHS = (16, 32, 64)
CIFAR_STEM_WIDTH = 16

_BLOCK_FNS = {
    "basic": blocks.apply_basic_block,
    "bottleneck": blocks.apply_bottleneck_block,
}


def build_resnet(depth: int, name: str, options: BuildOptions) -> keras.Model:
    """Builds the ResNet of the given depth from :data:`RESNET_SPECS`.

    Args:
        depth: A key of :data:`RESNET_SPECS`.
        name: The model name.
        options: Validated build options.

    Returns:
        A functional ``tf_keras.Model`` that outputs logits.
    """
    block_type, blocks_per_stage = RESNET_SPECS[depth]
    return _build(name, options, _BLOCK_FNS[block_type], STEM_WIDTH, STAGE_WIDTHS, blocks_per_stage)


def build_cifar_resnet(depth: int, name: str, options: BuildOptions) -> keras.Model:
    """Builds the CIFAR ResNet of the given depth from :data:`CIFAR_RESNET_SPECS`.

    Args:
        depth: A key of :data:`CIFAR_RESNET_SPECS` (20, 32 or 56).
        name: The model name.
        options: Validated build options.

    Returns:
        A functional ``tf_keras.Model`` that outputs logits.
    """
    n = CIFAR_RESNET_SPECS[depth]
    return _build(
        name, options, blocks.apply_basic_block, CIFAR_STEM_WIDTH, CIFAR_STAGE_WIDTHS, (n,) * len(CIFAR_STAGE_WIDTHS)
    )


def _build(
    name: str,
    options: BuildOptions,
    apply_block,
    stem_width: int,
    stage_widths: tuple[int, ...],
    blocks_per_stage: tuple[int, ...],
) -> keras.Model:
    """Stem, stages of ``apply_block`` (stride 2 at the first block of every stage but the first), head."""
    import tf_keras as keras

    width, seed = options.width_multiplier, options.seed

    inputs = keras.Input(shape=options.input_shape, name="input")
    kernel_size, stride = (3, 1) if options.stem is Stem.CIFAR else (7, 2)
    x = blocks.apply_conv_bn(
        inputs, blocks.scale_width(stem_width, width), kernel_size, stride, "stem", seed=seed
    )
    if options.stem is Stem.IMAGENET:
        x = keras.layers.MaxPool2D(3, strides=2, padding="same", name="stem_pool")(x)

    for stage, (base_filters, num_blocks) in enumerate(zip(stage_widths, blocks_per_stage), 1):
        filters = blocks.scale_width(base_filters, width)
        for block in range(1, num_blocks + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = apply_block(x, filters, stride, f"stage{stage}_block{block}", seed=seed)

    outputs = blocks.apply_classifier_head(x, options.num_classes, options.dropout, seed=seed)
    return keras.Model(inputs, outputs, name=name)


for _depth in RESNET_SPECS:
    register(f"resnet{_depth}", functools.partial(build_resnet, _depth))
for _depth in CIFAR_RESNET_SPECS:
    register(f"resnet{_depth}", functools.partial(build_cifar_resnet, _depth))
