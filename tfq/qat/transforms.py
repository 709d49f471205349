"""The layout transform of tfq's QAT scheme: graph rewrites before wrapping.

Built on TFMOT's public graph-transformation API
(``tfmot.quantization.keras.graph_transformations``): each rewrite is a
``Transform`` with a layer ``pattern`` and a ``replacement``, applied by TFMOT's
``ModelTransformer`` to the layers that were annotated for quantization.

1. :class:`InputQuantize` puts a ``QuantizeLayer`` after the model input
   (as TFMOT's default scheme does), with tfq's input quantizer.
2. :class:`FoldConvBatchNorm` replaces ``Conv2D|DepthwiseConv2D ->
   BatchNormalization`` by one :class:`~tfq.qat.layers.FoldedConvBatchNorm`
   whose folded kernel is fake-quantized (see that module for why).
3. :class:`FuseReLU` mirrors TFLite's activation fusion: for ``Conv|Dense|Add ->
   ReLU/ReLU6`` the producer's output is not quantized; only the ReLU's is.

Layers kept float are never annotated, so no pattern matches them.
"""

from __future__ import annotations

import collections
from typing import Any

import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import utils as tfmot_utils
from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer

from tfq.qat import quantizers as q
from tfq.qat.config import QATConfig
from tfq.qat.layers import FoldedConvBatchNorm
from tfq.qat.quantize_configs import TfqQuantizeConfig
from tfq.qat.registry import TfqQuantizeRegistry

__all__ = ["FoldConvBatchNorm", "FuseReLU", "InputQuantize", "TfqLayoutTransform", "is_fusable_relu"]

_gt = tfmot.quantization.keras.graph_transformations
Transform = _gt.transforms.Transform
LayerNode = _gt.transforms.LayerNode
LayerPattern = _gt.transforms.LayerPattern
ModelTransformer = _gt.model_transformer.ModelTransformer


def is_fusable_relu(layer_config: dict[str, Any], class_name: str) -> bool:
    """True for a ReLU/ReLU6 that TFLite fuses into the producing op."""
    if class_name == "ReLU":
        max_value = layer_config.get("max_value")
        return (
            max_value in (None, 6, 6.0)
            and float(layer_config.get("negative_slope") or 0.0) == 0.0
            and float(layer_config.get("threshold") or 0.0) == 0.0
        )
    if class_name == "Activation":
        return layer_config.get("activation") in ("relu", "relu6")
    return False


def _quantize_config(node: LayerNode) -> Any:
    return node.metadata.get("quantize_config")


def _is_tfq_config(config: Any) -> bool:
    return isinstance(config, TfqQuantizeConfig) and not config.keep_float


def _serialize_layer(layer: keras.layers.Layer) -> dict[str, Any]:
    layer_config = tfmot_utils.serialize_layer(layer, use_legacy_format=True)
    layer_config["name"] = layer_config["config"]["name"]
    return layer_config


class InputQuantize(Transform):
    """``InputLayer`` -> ``InputLayer -> QuantizeLayer`` with tfq's input quantizer."""

    def __init__(self, config: QATConfig):
        self._config = config

    def pattern(self) -> LayerPattern:
        return LayerPattern("InputLayer")

    def replacement(self, match_layer: LayerNode) -> LayerNode:
        quant_layer = QuantizeLayer(q.input_quantizer(self._config))
        return LayerNode(_serialize_layer(quant_layer), input_layers=[match_layer])

    def custom_objects(self) -> dict[str, Any]:
        return {"QuantizeLayer": QuantizeLayer, **q.custom_objects()}


class FoldConvBatchNorm(Transform):
    """``Conv2D|DepthwiseConv2D -> BatchNormalization`` -> ``FoldedConvBatchNorm``.

    The folded layer takes the convolution's name and carries its weights, the
    BatchNorm's parameters and statistics, and tfq's weight quantizer.
    """

    def __init__(self, config: QATConfig, registry: TfqQuantizeRegistry):
        self._config = config
        self._registry = registry

    def pattern(self) -> LayerPattern:
        return LayerPattern(
            "BatchNormalization|SyncBatchNormalization",
            inputs=[LayerPattern("Conv2D|DepthwiseConv2D", config={"activation": "linear"})],
        )

    def replacement(self, match_layer: LayerNode) -> LayerNode:
        bn_node = match_layer
        conv_node = match_layer.input_layers[0]
        if not (_is_tfq_config(_quantize_config(bn_node)) and _is_tfq_config(_quantize_config(conv_node))):
            return match_layer  # a user-supplied QuantizeConfig wins
        conv_class = conv_node.layer["class_name"]
        conv_config = dict(conv_node.layer["config"])
        name = conv_config["name"]
        folded = FoldedConvBatchNorm(
            conv_class=conv_class,
            conv_config=conv_config,
            bn_config=dict(bn_node.layer["config"]),
            weight_quantizer=q.weight_quantizer(self._config, depthwise=conv_class == "DepthwiseConv2D"),
            source_layers=(name, bn_node.layer["config"]["name"]),
            name=name,
        )
        weights = collections.OrderedDict(list(conv_node.weights.items()) + list(bn_node.weights.items()))
        rule = self._registry.rule(folded)
        return LayerNode(
            _serialize_layer(folded),
            weights=weights,
            metadata={"quantize_config": self._registry.config_for_rule(rule)},
        )

    def custom_objects(self) -> dict[str, Any]:
        return {"FoldedConvBatchNorm": FoldedConvBatchNorm, **q.custom_objects()}


class FuseReLU(Transform):
    """``Conv|Dense|Add -> ReLU/ReLU6``: quantize after the ReLU only."""

    def pattern(self) -> LayerPattern:
        return LayerPattern(
            "ReLU|Activation",
            inputs=[LayerPattern("Conv2D|DepthwiseConv2D|Dense|FoldedConvBatchNorm|Add")],
        )

    def replacement(self, match_layer: LayerNode) -> LayerNode:
        relu_node = match_layer
        producer = match_layer.input_layers[0]
        if not is_fusable_relu(relu_node.layer["config"], relu_node.layer["class_name"]):
            return match_layer
        producer_config = _quantize_config(producer)
        if not (_is_tfq_config(producer_config) and _is_tfq_config(_quantize_config(relu_node))):
            return match_layer
        producer.metadata["quantize_config"] = producer_config.without_output()
        return match_layer

    def custom_objects(self) -> dict[str, Any]:
        return {}


class TfqLayoutTransform(tfmot.quantization.keras.QuantizeLayoutTransform):
    """Applies :class:`InputQuantize`, :class:`FoldConvBatchNorm` and :class:`FuseReLU`."""

    def __init__(self, config: QATConfig, registry: TfqQuantizeRegistry):
        self._config = config
        self._registry = registry

    def transforms(self) -> list[Transform]:
        return [
            InputQuantize(self._config),
            FoldConvBatchNorm(self._config, self._registry),
            FuseReLU(),
        ]

    def apply(self, model: keras.Model, layer_quantize_map: dict[str, Any]) -> tuple[keras.Model, dict[str, Any]]:
        return ModelTransformer(
            model, self.transforms(), set(layer_quantize_map.keys()), layer_quantize_map
        ).transform()
