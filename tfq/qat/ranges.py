"""Activation-range initialization of a QAT model from PTQ calibration.

TFMOT starts every activation quantizer at ``[-6, 6]`` and moves it with an
exponential moving average (decay 0.999), so the first few hundred steps
train against ranges that have nothing to do with the data. tfq starts from
the ranges PTQ would deploy instead:

1. a PTQ run of the same baseline that recorded its ranges
   (``<mode>_<method>_ranges.json``, written by ``pipelines.ptq``), or
2. the same calibration run here: :func:`tfq.ptq.prepare_calibration` on the
   calib split and :func:`tfq.calibration.compute_ranges` with the configured
   method.

PTQ ranges are keyed by TFLite tensor name of the calibrated FP32 model
(``model/stage1_block1_relu1/Relu;model/stage1_block1_conv1/Conv2D``); the
first layer named is the one producing the tensor. Each quantizer of the QAT
model (a *site*) quantizes the output of one FP32 layer, so the two meet on
layer names (:func:`site_layer_ranges`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from tfq.qat.convert import layers_of_tensor

__all__ = [
    "RangeSite",
    "apply_ranges",
    "calibrate_ranges",
    "find_ptq_ranges",
    "init_ranges",
    "init_weight_ranges",
    "layer_ranges_from_tensor_ranges",
    "quantizer_sites",
    "read_ranges",
]

log = logging.getLogger(__name__)

INPUT = "<input>"
OUTPUT = "<output>"


@dataclasses.dataclass
class RangeSite:
    """One activation quantizer of a QAT model.

    Attributes:
      wrapper: Name of the QAT layer holding the variables.
      prefix: Variable prefix (``output``, ``post_activation``, or the
        ``QuantizeLayer``'s own name).
      source: The FP32 layer whose output it quantizes (:data:`INPUT` for the
        model input).
      min_var, max_var: The range variables.
      frozen_var: The freeze flag (tfq quantizers), or None.
      aliases: Other FP32 layers computing the same tensor (the convolution
        of a folded Conv+BN: the converter drops a BN it can fold silently).
    """

    wrapper: str
    prefix: str
    source: str
    min_var: Any
    max_var: Any
    frozen_var: Any = None
    aliases: tuple[str, ...] = ()

    @property
    def range(self) -> tuple[float, float]:
        return float(self.min_var.numpy()), float(self.max_var.numpy())


def _var_suffix(variable: Any) -> str:
    return variable.name.split("/")[-1].split(":")[0]


def quantizer_sites(qat_model: Any) -> list[RangeSite]:
    """Lists the activation quantizers of a QAT model and what they quantize.

    Weight quantizers (``kernel_min``...) are not sites: their ranges follow
    the weights.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer

    from tfq.qat.layers import FoldedConvBatchNorm

    sites = []
    for layer in qat_model.layers:
        aliases: tuple[str, ...] = ()
        if isinstance(layer, QuantizeLayer):
            prefixes, source = (layer.name,), INPUT  # TFMOT names its variables after the layer
        elif hasattr(layer, "quantize_config") and hasattr(layer, "layer"):
            inner = layer.layer
            if isinstance(inner, FoldedConvBatchNorm):
                source, aliases = inner.source_layers[-1], tuple(reversed(inner.source_layers[:-1]))
            else:
                source = inner.name
            prefixes = ("output", "post_activation")
        else:
            continue
        by_suffix = {_var_suffix(v): v for v in layer.weights}
        for prefix in prefixes:
            lo, hi = by_suffix.get(f"{prefix}_min"), by_suffix.get(f"{prefix}_max")
            if lo is None or hi is None or lo.shape.rank != 0:
                continue
            sites.append(RangeSite(layer.name, prefix, source, lo, hi, by_suffix.get(f"{prefix}_frozen"), aliases))
    return sites


def init_weight_ranges(qat_model: Any) -> int:
    """Sets every weight quantizer's min/max from the current weights.

    TFMOT's ``LastValueQuantizer`` only records a range in training mode, so
    a fresh QAT model (and its conversion) would quantize kernels with the
    initial [-6, 6] range until the first training step. This runs each
    weight quantizer once in training mode, on the tensor it quantizes (the
    folded kernel for a :class:`~tfq.qat.layers.FoldedConvBatchNorm`).

    Returns:
      The number of weight quantizers initialized.
    """
    from tfq.qat.layers import FoldedConvBatchNorm

    n = 0
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", None)
        for weight, quantizer, qvars in getattr(layer, "_weight_vars", []):
            quantizer(weight, True, weights=qvars)
            n += 1
        if isinstance(inner, FoldedConvBatchNorm) and inner.weight_quantizer is not None:
            inner.weight_quantizer(inner.folded_kernel(), True, weights=inner._quantizer_vars)
            n += 1
    return n


# --------------------------------------------------------------------------- ranges by layer


def layer_ranges_from_tensor_ranges(
    tensor_ranges: Mapping[str, tuple[float, float]],
    *,
    output_layer: str | None = None,
) -> dict[str, tuple[float, float]]:
    """Re-keys ranges from TFLite tensor names to FP32 layer names.

    A tensor is keyed by the layer producing it (the first name, e.g. the ReLU
    of ``relu/Relu;bn/FusedBatchNormV3;conv/Conv2D``); the other layers it
    names are keys too unless some tensor is produced by them, so a folded
    Conv+BN whose tensor is named after the convolution alone still finds its
    range. The model input (``serving_default_*``) maps to :data:`INPUT`; an
    unnamed model output (``StatefulPartitionedCall:0``) to ``output_layer``.
    """
    out: dict[str, tuple[float, float]] = {}
    secondary: dict[str, tuple[float, float]] = {}
    for name, (lo, hi) in tensor_ranges.items():
        layers = layers_of_tensor(name)
        value = (float(lo), float(hi))
        if layers:
            out.setdefault(layers[0], value)
            for other in layers[1:]:
                secondary.setdefault(other, value)
        elif name.startswith("serving_default_"):
            out.setdefault(INPUT, value)
        elif output_layer and name.startswith("StatefulPartitionedCall"):
            out.setdefault(output_layer, value)
    for layer, value in secondary.items():
        out.setdefault(layer, value)
    return out


def read_ranges(path: str | Path) -> dict[str, tuple[float, float]]:
    """Reads a PTQ ``*_ranges.json`` (``{"ranges": {tensor: {"min", "max", ...}}}``)."""
    import json

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    ranges = data.get("ranges", data)
    out = {}
    for name, r in ranges.items():
        if isinstance(r, Mapping) and "min" in r and "max" in r:
            out[name] = (float(r["min"]), float(r["max"]))
    if not out:
        raise ValueError(f"{path} holds no ranges")
    return out


def find_ptq_ranges(ptq_run: str | Path, method: str) -> Path | None:
    """The ranges file of a PTQ run for INT8 with ``method``, or None."""
    run = Path(ptq_run)
    for name in (f"int8_{method}_ranges.json", f"int8_{method}_per_channel_ranges.json",
                 f"int8_{method}_per_tensor_ranges.json"):
        if (run / name).is_file():
            return run / name
    return None


def calibrate_ranges(
    fp32_model: Any,
    samples: np.ndarray,
    method: str,
    symmetric: bool,
    state: Any = None,
) -> tuple[dict[str, tuple[float, float]], Any]:
    """Calibrates the FP32 model the way PTQ does; returns tensor ranges and the state.

    Args:
      fp32_model: The Keras FP32 model.
      samples: Representative samples (preprocessed float images).
      method: ``minmax``, ``percentile``, ``kl`` or ``mse``.
      symmetric: Symmetric activation ranges.
      state: A :class:`tfq.ptq.CalibrationState` to reuse.

    Returns:
      ``({tensor_name: (min, max)}, state)``.
    """
    from tfq.calibration import CalibrationConfig, compute_ranges
    from tfq.ptq import prepare_calibration

    if state is None:
        state = prepare_calibration(fp32_model, samples)
    ranges = compute_ranges(state.stats, CalibrationConfig(method=method, symmetric=symmetric))
    return {name: (r.min, r.max) for name, r in ranges.items()}, state


def _finalize(lo: float, hi: float, symmetric: bool) -> tuple[float, float]:
    """The range in the quantizer's form (idempotent: a finalized range is kept)."""
    from tfq.calibration import QuantGrid, finalize_range

    grid = QuantGrid()
    if symmetric and hi > 0 and math.isclose(-lo, hi * (grid.positive_levels + 1) / grid.positive_levels,
                                             rel_tol=1e-6):
        return lo, hi  # already [-T * 128/127, T]
    return finalize_range(lo, hi, grid, symmetric)


def apply_ranges(
    sites: Iterable[RangeSite],
    layer_ranges: Mapping[str, tuple[float, float]],
    *,
    symmetric: bool,
) -> dict[str, Any]:
    """Writes ranges into the quantizers' min/max variables.

    Args:
      sites: From :func:`quantizer_sites`.
      layer_ranges: ``{fp32 layer name | INPUT: (min, max)}``.
      symmetric: Put every range in symmetric form (zero point 0).

    Returns:
      ``{"set": {site: [min, max]}, "missing": [site, ...]}``.
    """
    done: dict[str, list[float]] = {}
    missing: list[str] = []
    for site in sites:
        key = f"{site.wrapper}/{site.prefix}"
        r = next((layer_ranges[k] for k in (site.source, *site.aliases) if k in layer_ranges), None)
        if r is None or not (math.isfinite(r[0]) and math.isfinite(r[1])):
            missing.append(key)
            continue
        lo, hi = _finalize(r[0], r[1], symmetric)
        site.min_var.assign(lo)
        site.max_var.assign(hi)
        done[key] = [lo, hi]
    if missing:
        log.warning("no calibrated range for %d quantizer(s), they start at TFMOT's default: %s",
                    len(missing), ", ".join(missing))
    return {"set": done, "missing": missing}


def init_ranges(
    qat_model: Any,
    fp32_model: Any,
    *,
    method: str,
    symmetric: bool,
    ptq_ranges_file: str | Path | None = None,
    samples: np.ndarray | None = None,
    state: Any = None,
) -> dict[str, Any]:
    """Initializes every activation quantizer of ``qat_model`` from PTQ calibration.

    Args:
      qat_model: The model from :func:`tfq.qat.quantize_model`.
      fp32_model: The FP32 model it was made from.
      method: Calibration method.
      symmetric: Symmetric activation ranges (as in the QAT config).
      ptq_ranges_file: A PTQ run's ranges; when None, ``samples`` are calibrated.
      samples: Representative samples for the calibration here.
      state: A :class:`tfq.ptq.CalibrationState` to reuse.

    Returns:
      A JSON-able record: source (``ptq_run``/``calibrated``), file, method and
      the ranges set/missing; ``state`` (not JSON) holds the calibration state
      when one was computed.
    """
    output_layer = fp32_model.layers[-1].name
    if ptq_ranges_file is not None:
        tensor_ranges = read_ranges(ptq_ranges_file)
        source = "ptq_run"
    else:
        if samples is None and state is None:
            raise ValueError("init_ranges needs a PTQ ranges file, calibration samples or a calibration state")
        tensor_ranges, state = calibrate_ranges(fp32_model, samples, method, symmetric, state)
        source = "calibrated"
    layer_ranges = layer_ranges_from_tensor_ranges(tensor_ranges, output_layer=output_layer)
    result = apply_ranges(quantizer_sites(qat_model), layer_ranges, symmetric=symmetric)
    log.info("initialized %d activation ranges from %s (%s)", len(result["set"]), source,
             ptq_ranges_file or f"{method} calibration")
    record = {"source": source, "file": str(ptq_ranges_file) if ptq_ranges_file else None, "method": method,
              **result}
    return {"record": record, "state": state}
