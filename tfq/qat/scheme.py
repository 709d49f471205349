"""tfq's QAT scheme: the layout transform plus the registry, as TFMOT expects.

Pass it to ``tfmot.quantization.keras.quantize_apply(model, scheme=...)``;
:func:`tfq.qat.quantize_model` does that for you.
"""

from __future__ import annotations

import tensorflow_model_optimization as tfmot

from tfq.qat.config import QATConfig
from tfq.qat.registry import TfqQuantizeRegistry
from tfq.qat.transforms import TfqLayoutTransform

__all__ = ["TfqQuantizeScheme"]


class TfqQuantizeScheme(tfmot.quantization.keras.QuantizeScheme):
    """INT8 scheme with configurable weights/activations (see :class:`QATConfig`).

    Args:
      config: Weight granularity, activation symmetry.
      float_layers: Layers kept float (see :class:`TfqQuantizeRegistry`).
    """

    def __init__(self, config: QATConfig, float_layers: tuple[str, ...] = ()):
        self.config = config
        self._registry = TfqQuantizeRegistry(config, float_layers=tuple(float_layers))

    def get_layout_transformer(self) -> TfqLayoutTransform:
        return TfqLayoutTransform(self.config, self._registry)

    def get_quantize_registry(self) -> TfqQuantizeRegistry:
        return self._registry
