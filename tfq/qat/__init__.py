"""Quantization-aware training with TFMOT and tfq's own QuantizeConfigs.

The package follows TFMOT's layout, one module per concept:

* :mod:`tfq.qat.config` -- :class:`QATConfig` (TensorFlow-free).
* :mod:`tfq.qat.quantizers` -- weight/activation quantizers from the config.
* :mod:`tfq.qat.quantize_configs` -- :class:`TfqQuantizeConfig`.
* :mod:`tfq.qat.registry` -- the registry *table* (:data:`RULES`).
* :mod:`tfq.qat.layers` / :mod:`tfq.qat.transforms` -- Conv+BN folding and ReLU
  fusion (the layout transform); :mod:`tfq.qat.scheme` ties both together.
* :mod:`tfq.qat.quantize` -- plan, annotate, apply (:func:`quantize_model`).
* :mod:`tfq.qat.ranges` -- range initialization from PTQ calibration.
* :mod:`tfq.qat.train` -- fine-tuning, BatchNorm/range freezing, resume.
* :mod:`tfq.qat.convert` -- ``.tflite`` conversion (INT8 + FP16 float layers).

Importing :mod:`tfq.qat` itself is cheap; TensorFlow loads on first use of a
function below.
"""

from __future__ import annotations

import importlib
from typing import Any

from tfq.qat.config import (
    PRESETS,
    ActivationQuant,
    CalibrationMethodName,
    Distillation,
    Granularity,
    QATConfig,
    WeightQuant,
    preset,
)

_LAZY = {
    "annotate": "tfq.qat.quantize",
    "annotate_model": "tfq.qat.quantize",
    "apply": "tfq.qat.quantize",
    "custom_objects": "tfq.qat.quantize",
    "load_qat_model": "tfq.qat.quantize",
    "plan_model": "tfq.qat.quantize",
    "quantize_model": "tfq.qat.quantize",
    "quantize_scope": "tfq.qat.quantize",
    "UnsupportedLayerError": "tfq.qat.registry",
    "RULES": "tfq.qat.registry",
    "TfqQuantizeRegistry": "tfq.qat.registry",
    "TfqQuantizeConfig": "tfq.qat.quantize_configs",
    "TfqQuantizeScheme": "tfq.qat.scheme",
    "FoldedConvBatchNorm": "tfq.qat.layers",
    "convert_to_tflite": "tfq.qat.convert",
    "check_agreement": "tfq.qat.convert",
    "init_ranges": "tfq.qat.ranges",
    "fine_tune": "tfq.qat.train",
    "DistillationLoss": "tfq.qat.distill",
    "with_teacher_logits": "tfq.qat.distill",
}

__all__ = [
    "PRESETS",
    "ActivationQuant",
    "CalibrationMethodName",
    "Distillation",
    "Granularity",
    "QATConfig",
    "WeightQuant",
    "preset",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tfq.qat' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
