"""tfq's QAT registry: one table row per supported Keras layer type.

Each :class:`Rule` says which weight attributes get the weight quantizer,
which activation attributes get the activation quantizer, and whether the
layer output is quantized. The table is data; :class:`TfqQuantizeRegistry`
looks layers up by their exact class (a subclass is a custom layer with
unknown arithmetic, so it is not matched) and builds a
:class:`~tfq.qat.quantize_configs.TfqQuantizeConfig` from the row and the
:class:`~tfq.qat.config.QATConfig`.

Why these rows (TFLite INT8 kernels):

* Conv2D / DepthwiseConv2D / Dense: weights quantized, the result is quantized
  after the built-in activation (``linear``/``relu``); the layout transform
  folds BatchNormalization and fuses a following ReLU/ReLU6 into them.
* Add / Concatenate / GlobalAveragePooling2D (``MEAN``) / BatchNormalization
  (standalone) / ReLU / Activation: they compute new values, so their output
  gets its own range.
* MaxPooling2D / GlobalMaxPooling2D / Flatten / Reshape / Dropout /
  ZeroPadding2D: they only move or select values that are already on the
  input's grid, so TFLite keeps the input scale and nothing is inserted.
* AveragePooling2D: TFLite's INT8 ``AVERAGE_POOL_2D`` requires the output
  scale to equal the input scale. A range of its own (TFMOT's default) makes
  the converter requantize -- and clip -- the input *before* averaging, which
  the fake-quant model does not simulate; so it keeps the input grid too.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

import tensorflow_model_optimization as tfmot
import tf_keras as keras

from tfq.qat import quantizers as q
from tfq.qat.config import QATConfig
from tfq.qat.layers import FoldedConvBatchNorm
from tfq.qat.quantize_configs import TfqQuantizeConfig

__all__ = ["RULES", "Rule", "TfqQuantizeRegistry", "UnsupportedLayerError", "unsupported_message"]

L = keras.layers


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one layer type is quantized.

    Attributes:
      layer_type: The exact Keras class.
      weights: Weight attributes fake-quantized with the weight quantizer.
      activations: Activation attributes fake-quantized after the activation.
      quantize_output: Fake-quantize the layer output.
      per_channel: The weights may be per-channel (Conv2D, DepthwiseConv2D);
        False keeps them per-tensor whatever the config says (Dense).
      depthwise: The weight is a depthwise kernel (per output channel =
        ``in * multiplier``).
      fuses_relu: A following ReLU/ReLU6 is fused into this op by TFLite.
      config_allowed: Layer config values that are supported, e.g.
        ``{"activation": ("linear", "relu")}``; other values are rejected.
    """

    layer_type: type
    weights: tuple[str, ...] = ()
    activations: tuple[str, ...] = ()
    quantize_output: bool = False
    per_channel: bool = False
    depthwise: bool = False
    fuses_relu: bool = False
    config_allowed: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)


_ACTS = ("linear", "relu")

# The registry table. One row per layer type; order is irrelevant.
RULES: tuple[Rule, ...] = (
    #    layer type                 weights                 activations      output  per-ch depthwise fuses_relu
    Rule(L.Conv2D, ("kernel",), ("activation",), False, True, False, True, {"activation": _ACTS}),
    Rule(L.DepthwiseConv2D, ("depthwise_kernel",), ("activation",), False, True, True, True, {"activation": _ACTS}),
    Rule(FoldedConvBatchNorm, (), ("activation",), False, True, False, True, {}),
    Rule(L.Dense, ("kernel",), ("activation",), False, False, False, True, {"activation": _ACTS}),
    Rule(L.Add, quantize_output=True, fuses_relu=True),
    Rule(L.Concatenate, quantize_output=True),
    Rule(L.ReLU, quantize_output=True, config_allowed={"negative_slope": (0, 0.0), "threshold": (0, 0.0)}),
    Rule(L.Activation, quantize_output=True, config_allowed={"activation": ("relu", "relu6", "linear")}),
    Rule(L.BatchNormalization, quantize_output=True),
    Rule(L.AveragePooling2D),  # same scale in and out in TFLite
    Rule(L.GlobalAveragePooling2D, quantize_output=True),
    Rule(L.MaxPooling2D),
    Rule(L.GlobalMaxPooling2D),
    Rule(L.Flatten),
    Rule(L.Reshape),
    Rule(L.Dropout),
    Rule(L.ZeroPadding2D),
)


class UnsupportedLayerError(ValueError):
    """A layer has no row in the registry and no explicit QuantizeConfig."""


def unsupported_message(layer: keras.layers.Layer, reason: str = "") -> str:
    """The error text for an unsupported layer, with the two ways out."""
    why = f" ({reason})" if reason else ""
    return (
        f"Layer {layer.name!r} (type {type(layer).__name__}) is not supported by tfq's QAT scheme{why}; "
        f"annotate it with tfq.qat.annotate(layer, quantize_config=...) or keep it float with "
        f"keep_float=[{re.escape(layer.name)!r}]"
    )


def _activation_name(value: Any) -> Any:
    if isinstance(value, dict):  # serialized activation object
        return value.get("config", {}).get("name", value.get("class_name"))
    return value


class TfqQuantizeRegistry(tfmot.quantization.keras.QuantizeRegistry):
    """Looks layers up in :data:`RULES` and builds their QuantizeConfigs.

    Args:
      config: Decides the quantizers (granularity, symmetry).
      rules: The table (defaults to :data:`RULES`).
      float_layers: Names of layers kept float in the model being quantized;
        :meth:`supports` is False for them, so TFMOT's ``quantize_apply`` does
        not add an output quantizer inside a float island.
    """

    def __init__(self, config: QATConfig, rules: tuple[Rule, ...] = RULES, float_layers: tuple[str, ...] = ()):
        self.config = config
        self.float_layers = frozenset(float_layers)
        self._rules = {rule.layer_type: rule for rule in rules}
        if len(self._rules) != len(rules):
            raise ValueError("the registry table lists a layer type twice")

    def rule(self, layer: keras.layers.Layer) -> Rule | None:
        """The row of this layer's exact class, or None."""
        return self._rules.get(type(layer))

    def check(self, layer: keras.layers.Layer) -> Rule:
        """Returns the layer's row.

        Raises:
          UnsupportedLayerError: No row, or a config value the row does not
            allow (e.g. a Conv2D with a ``softmax`` activation).
        """
        rule = self.rule(layer)
        if rule is None:
            raise UnsupportedLayerError(unsupported_message(layer))
        config = layer.get_config()
        for key, allowed in rule.config_allowed.items():
            value = _activation_name(config.get(key))
            if value not in allowed:
                raise UnsupportedLayerError(
                    unsupported_message(layer, f"{key}={value!r}; supported: {', '.join(map(str, allowed))}")
                )
        return rule

    def supports(self, layer: keras.layers.Layer) -> bool:
        if layer.name in self.float_layers:
            return False
        try:
            self.check(layer)
        except UnsupportedLayerError:
            return False
        return True

    def get_quantize_config(self, layer: keras.layers.Layer) -> TfqQuantizeConfig:
        """The QuantizeConfig for ``layer`` under this registry's config.

        Raises:
          UnsupportedLayerError: See :meth:`check`.
        """
        rule = self.check(layer)
        return self.config_for_rule(rule)

    def config_for_rule(self, rule: Rule) -> TfqQuantizeConfig:
        """Builds the QuantizeConfig of one table row."""
        wq = (
            q.weight_quantizer(self.config, depthwise=rule.depthwise, per_channel_capable=rule.per_channel)
            if rule.weights else None
        )
        aq = q.activation_quantizer(self.config) if (rule.activations or rule.quantize_output) else None
        return TfqQuantizeConfig(rule.weights, rule.activations, rule.quantize_output, wq, aq)

    def output_config(self) -> TfqQuantizeConfig:
        """A config that only quantizes the layer output."""
        return TfqQuantizeConfig((), (), True, None, q.activation_quantizer(self.config))

    def keep_float_exit_config(self) -> TfqQuantizeConfig:
        """The config of a float layer whose output feeds INT8 layers."""
        return TfqQuantizeConfig((), (), True, None, q.activation_quantizer(self.config), keep_float=True)

    def table(self) -> list[dict[str, Any]]:
        """The table as plain rows (for docs and reports)."""
        return [
            {
                "layer": r.layer_type.__name__,
                "weights": list(r.weights),
                "activations": list(r.activations),
                "quantize_output": r.quantize_output,
                "per_channel": r.per_channel,
                "fuses_relu": r.fuses_relu,
            }
            for r in self._rules.values()
        ]
