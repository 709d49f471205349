"""tfq's QuantizeConfig: one class, parameterized by a registry row.

A :class:`TfqQuantizeConfig` implements TFMOT's
:class:`tfmot.quantization.keras.QuantizeConfig` for any layer: which weight
attributes get the weight quantizer, which activation attributes get the
activation quantizer (TFMOT's ``QuantizeAwareActivation`` puts the fake quant
after ``linear``/``relu``), and whether the layer output gets one. The registry
(:mod:`tfq.qat.registry`) fills it from its table; the layout transform
(:mod:`tfq.qat.transforms`) switches the output/activation quantizer off where
TFLite fuses the next op (Conv -> ReLU, Add -> ReLU).

A config with ``keep_float=True`` marks the last layer of a float island that
feeds INT8 layers: the layer stays float and only its output is quantized, so
its INT8 consumers get a range.
"""

from __future__ import annotations

from typing import Any, Sequence

import tensorflow_model_optimization as tfmot
import tf_keras as keras

from tfq.qat import quantizers as tfq_quantizers

__all__ = ["TfqQuantizeConfig", "custom_objects"]

_QuantizeConfig = tfmot.quantization.keras.QuantizeConfig


def _module_objects() -> dict[str, Any]:
    q = tfmot.quantization.keras.quantizers
    objs: dict[str, Any] = {
        name: getattr(q, name) for name in ("LastValueQuantizer", "MovingAverageQuantizer", "AllValuesQuantizer")
    }
    objs.update(tfq_quantizers.custom_objects())
    return objs


def _serialize(quantizer: Any) -> Any:
    return None if quantizer is None else keras.utils.serialize_keras_object(quantizer)


def _deserialize(data: Any) -> Any:
    if data is None or not isinstance(data, dict):
        return data
    return keras.utils.deserialize_keras_object(data, module_objects=_module_objects())


class TfqQuantizeConfig(_QuantizeConfig):
    """QuantizeConfig of tfq's scheme for one layer.

    Args:
      weight_attrs: Layer attributes holding weights to fake-quantize
        (``kernel``, ``depthwise_kernel``).
      activation_attrs: Layer attributes holding activation functions whose
        result is fake-quantized (``activation``).
      quantize_output: Fake-quantize the layer output.
      weight_quantizer: Quantizer for ``weight_attrs``.
      activation_quantizer: Quantizer for ``activation_attrs`` and the output.
      keep_float: The layer is kept float (only its output is quantized).
    """

    def __init__(
        self,
        weight_attrs: Sequence[str] = (),
        activation_attrs: Sequence[str] = (),
        quantize_output: bool = False,
        weight_quantizer: Any = None,
        activation_quantizer: Any = None,
        keep_float: bool = False,
    ):
        self.weight_attrs = list(weight_attrs)
        self.activation_attrs = list(activation_attrs)
        self.quantize_output = bool(quantize_output)
        self.weight_quantizer = _deserialize(weight_quantizer)
        self.activation_quantizer = _deserialize(activation_quantizer)
        self.keep_float = bool(keep_float)
        if self.weight_attrs and self.weight_quantizer is None:
            raise ValueError(f"weight attributes {self.weight_attrs} need a weight_quantizer")
        if (self.activation_attrs or self.quantize_output) and self.activation_quantizer is None:
            raise ValueError("activation/output quantization needs an activation_quantizer")

    def __repr__(self) -> str:
        return (
            f"TfqQuantizeConfig(weights={self.weight_attrs}, activations={self.activation_attrs}, "
            f"output={self.quantize_output}, keep_float={self.keep_float})"
        )

    # QuantizeConfig interface ----------------------------------------------------
    def get_weights_and_quantizers(self, layer: keras.layers.Layer) -> list[tuple[Any, Any]]:
        return [(getattr(layer, attr), self.weight_quantizer) for attr in self.weight_attrs]

    def get_activations_and_quantizers(self, layer: keras.layers.Layer) -> list[tuple[Any, Any]]:
        return [(getattr(layer, attr), self.activation_quantizer) for attr in self.activation_attrs]

    def set_quantize_weights(self, layer: keras.layers.Layer, quantize_weights: list[Any]) -> None:
        if len(quantize_weights) != len(self.weight_attrs):
            raise ValueError(
                f"layer {layer.name!r}: got {len(quantize_weights)} quantized weights for "
                f"attributes {self.weight_attrs}"
            )
        for attr, weight in zip(self.weight_attrs, quantize_weights):
            current = getattr(layer, attr)
            if current.shape != weight.shape:
                raise ValueError(
                    f"layer {layer.name!r}: quantized {attr} has shape {weight.shape}, expected {current.shape}"
                )
            setattr(layer, attr, weight)

    def set_quantize_activations(self, layer: keras.layers.Layer, quantize_activations: list[Any]) -> None:
        if len(quantize_activations) != len(self.activation_attrs):
            raise ValueError(
                f"layer {layer.name!r}: got {len(quantize_activations)} quantized activations for "
                f"attributes {self.activation_attrs}"
            )
        for attr, activation in zip(self.activation_attrs, quantize_activations):
            setattr(layer, attr, activation)

    def get_output_quantizers(self, layer: keras.layers.Layer) -> list[Any]:
        return [self.activation_quantizer] if self.quantize_output else []

    # Variants used by the layout transform ----------------------------------------
    def without_output(self) -> "TfqQuantizeConfig":
        """The same config with no output or activation quantization (a fused producer)."""
        return TfqQuantizeConfig(
            self.weight_attrs, (), False, self.weight_quantizer, self.activation_quantizer, self.keep_float
        )

    # Serialization ----------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        return {
            "weight_attrs": list(self.weight_attrs),
            "activation_attrs": list(self.activation_attrs),
            "quantize_output": self.quantize_output,
            "weight_quantizer": _serialize(self.weight_quantizer),
            "activation_quantizer": _serialize(self.activation_quantizer),
            "keep_float": self.keep_float,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "TfqQuantizeConfig":
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TfqQuantizeConfig) and self.get_config() == other.get_config()

    def __ne__(self, other: object) -> bool:
        return not self == other


def custom_objects() -> dict[str, type]:
    """Classes needed to deserialize a model using these configs."""
    return {"TfqQuantizeConfig": TfqQuantizeConfig}
