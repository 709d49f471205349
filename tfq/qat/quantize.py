"""Annotate a Keras model with tfq's QuantizeConfigs and apply fake quantization.

The one-call entry point is composed of public steps, as in TFMOT::

    plan = plan_model(model, config)                 # what happens to each layer
    annotated = annotate_model(model, config)        # quantize_annotate_layer per layer
    qat_model = apply(annotated, config)             # quantize_apply with TfqQuantizeScheme
    # or simply
    qat_model = quantize_model(model, config)

Layers are annotated one by one with an explicit
:class:`~tfq.qat.quantize_configs.TfqQuantizeConfig` from the registry table.
Layers matching ``config.keep_float`` are not annotated (they stay float); a
float layer whose output feeds quantized layers gets an output-only config,
so its INT8 consumers have a range. A layer the registry does not know fails
with its name and the two ways out (:func:`annotate` or ``keep_float``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import warnings
from typing import Any, Iterator, Mapping

import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras.quantize_annotate import QuantizeAnnotate

from tfq.configs import ConfigError
from tfq.qat import layers as tfq_layers
from tfq.qat import quantize_configs
from tfq.qat import quantizers
from tfq.qat.config import QATConfig
from tfq.qat.registry import TfqQuantizeRegistry, UnsupportedLayerError
from tfq.qat.scheme import TfqQuantizeScheme
from tfq.qat.transforms import is_fusable_relu

__all__ = [
    "LayerPlan",
    "QuantizationPlan",
    "UnsupportedLayerError",
    "annotate",
    "annotate_model",
    "apply",
    "custom_objects",
    "load_qat_model",
    "plan_model",
    "quantize_model",
    "quantize_scope",
]

log = logging.getLogger(__name__)

_qk = tfmot.quantization.keras
_WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")
def custom_objects() -> dict[str, Any]:
    """Every class a saved tfq QAT model needs (pass to ``load_model``)."""
    objs: dict[str, Any] = {}
    objs.update(quantizers.custom_objects())
    objs.update(quantize_configs.custom_objects())
    objs.update(tfq_layers.custom_objects())
    return objs


@contextlib.contextmanager
def quantize_scope() -> Iterator[None]:
    """TFMOT's ``quantize_scope`` plus tfq's quantizers, configs and layers."""
    with _qk.quantize_scope(custom_objects()):
        yield


def annotate(layer: keras.layers.Layer, quantize_config: Any = None) -> keras.layers.Layer:
    """Marks a layer for quantization with an explicit QuantizeConfig.

    Use it for a custom layer (or to override the registry for one layer)
    while building the model; :func:`quantize_model` keeps such annotations.

    Args:
      layer: The layer to annotate (not yet called).
      quantize_config: A ``tfmot.quantization.keras.QuantizeConfig``; None
        uses the registry's config for the layer type.

    Returns:
      The annotated layer (a TFMOT ``QuantizeAnnotate`` wrapper).
    """
    return _qk.quantize_annotate_layer(layer, quantize_config)


# --------------------------------------------------------------------------- plan


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """What happens to one layer of the FP32 model.

    Attributes:
      name: Layer name.
      type: Layer class name.
      action: ``quantize`` (registry config), ``custom`` (user QuantizeConfig),
        ``float`` (kept float, nothing inserted), ``float_exit`` (kept float,
        output quantized for INT8 consumers) or ``input``.
      group: Names of the layers TFLite fuses with this one (Conv, BN, ReLU).
      matched_by: The keep_float pattern that selected this layer's group.
    """

    name: str
    type: str
    action: str
    group: tuple[str, ...] = ()
    matched_by: str | None = None


@dataclasses.dataclass(frozen=True)
class QuantizationPlan:
    """The per-layer plan of :func:`plan_model`."""

    layers: tuple[LayerPlan, ...]

    def by_name(self) -> dict[str, LayerPlan]:
        return {p.name: p for p in self.layers}

    @property
    def float_layers(self) -> list[str]:
        """Layers kept float (islands and their exits)."""
        return [p.name for p in self.layers if p.action in ("float", "float_exit")]

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [dataclasses.asdict(p) for p in self.layers], "float_layers": self.float_layers}


def _graph(model: keras.Model) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Producers and consumers of each layer, by name (from the model config)."""
    producers: dict[str, list[str]] = {layer.name: [] for layer in model.layers}
    consumers: dict[str, list[str]] = {layer.name: [] for layer in model.layers}
    if isinstance(model, keras.Sequential):
        names = [layer.name for layer in model.layers]
        for a, b in zip(names, names[1:]):
            producers[b].append(a)
            consumers[a].append(b)
        return producers, consumers
    for entry in model.get_config()["layers"]:
        name = entry.get("name") or entry["config"]["name"]
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise UnsupportedLayerError(
                f"Layer {name!r} (type {entry['class_name']}) is called {len(nodes)} times in the model; "
                "tfq's QAT scheme needs each layer called once (a shared layer would need one range per call)"
            )
        for node in nodes:
            for inbound in _inbound_names(node):
                producers[name].append(inbound)
                consumers[inbound].append(name)
    return producers, consumers


def _inbound_names(node: Any) -> list[str]:
    """Layer names in one serialized inbound node (legacy list or new dict format)."""
    out: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            if "args" in item:  # Keras 3 style
                walk(item["args"])
                return
            if item.get("class_name") == "__keras_tensor__":
                out.append(item["config"]["keras_history"][0])
                return
            for v in item.values():
                walk(v)
        elif isinstance(item, (list, tuple)):
            if len(item) in (3, 4) and isinstance(item[0], str) and isinstance(item[1], int):
                out.append(item[0])
                return
            for v in item:
                walk(v)

    walk(node)
    return out


def _fusion_groups(model: keras.Model, consumers: Mapping[str, list[str]]) -> dict[str, tuple[str, ...]]:
    """Maps each layer to the group TFLite fuses it into (Conv/Dense [+BN] [+ReLU], Add [+ReLU])."""
    by_name = {layer.name: layer for layer in model.layers}
    group_of: dict[str, tuple[str, ...]] = {}

    def single_consumer(name: str) -> keras.layers.Layer | None:
        cons = consumers.get(name, [])
        return by_name[cons[0]] if len(cons) == 1 else None

    for layer in model.layers:
        cls = type(layer).__name__
        if cls not in _WEIGHTED and cls != "Add":
            continue
        chain = [layer.name]
        nxt = single_consumer(layer.name)
        if cls in ("Conv2D", "DepthwiseConv2D", "Dense") and nxt is not None and type(nxt).__name__ in (
            "BatchNormalization", "SyncBatchNormalization"
        ):
            chain.append(nxt.name)
            nxt = single_consumer(nxt.name)
        if nxt is not None and is_fusable_relu(nxt.get_config(), type(nxt).__name__):
            chain.append(nxt.name)
        group = tuple(chain)
        for name in group:
            group_of.setdefault(name, group)
    for layer in model.layers:
        group_of.setdefault(layer.name, (layer.name,))
    return group_of


def _is_input(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.InputLayer)


def plan_model(
    model: keras.Model,
    config: QATConfig,
    quantize_configs: Mapping[str, Any] | None = None,
) -> QuantizationPlan:
    """Decides what happens to each layer, and validates the request.

    Args:
      model: A built functional or Sequential FP32 model.
      config: Supplies ``keep_float`` and the registry's quantizers.
      quantize_configs: Explicit QuantizeConfigs by layer name (override the
        registry, e.g. for custom layers).

    Returns:
      The plan, one entry per layer in model order.

    Raises:
      ConfigError: A ``keep_float`` pattern matches no layer (the message lists
        the layer names), or a ``quantize_configs`` key is not a layer.
      UnsupportedLayerError: A layer to quantize has no registry row and no
        explicit config (the message names it and the ways out).
    """
    if not isinstance(model, keras.Model) or not (isinstance(model, keras.Sequential) or model._is_graph_network):
        raise TypeError(f"expected a functional or Sequential tf_keras model, got {type(model).__name__}")
    quantize_configs = dict(quantize_configs or {})
    names = [layer.name for layer in model.layers]
    unknown = sorted(set(quantize_configs) - set(names))
    if unknown:
        raise ConfigError(f"quantize_configs names unknown layer(s) {unknown}; layers are: {', '.join(names)}")
    registry = TfqQuantizeRegistry(config)
    producers, consumers = _graph(model)
    groups = _fusion_groups(model, consumers)

    # Keep-float selection, expanded to whole fusion groups.
    float_set: dict[str, str] = {}
    for pattern in config.keep_float:
        hits = [n for n in names if re.fullmatch(pattern, n) and not _is_input(model.get_layer(n))]
        if not hits:
            raise ConfigError(
                f"keep_float pattern {pattern!r} matches no layer (patterns must match the whole name); "
                f"layer names are: {', '.join(n for n in names if not _is_input(model.get_layer(n)))}"
            )
        for hit in hits:
            for member in groups[hit]:
                float_set.setdefault(member, pattern)
    expanded = sorted(set(float_set) - {n for p in config.keep_float for n in names if re.fullmatch(p, n)})
    if expanded:
        log.info("keep_float also keeps the fused layers %s float (TFLite fuses them)", expanded)

    plans = []
    for layer in model.layers:
        cls = type(layer).__name__
        group = groups[layer.name]
        if _is_input(layer):
            plans.append(LayerPlan(layer.name, cls, "input", group))
            continue
        if layer.name in float_set:
            if isinstance(layer, QuantizeAnnotate) or layer.name in quantize_configs:
                raise ConfigError(
                    f"layer {layer.name!r} is both annotated with a QuantizeConfig and kept float by "
                    f"keep_float pattern {float_set[layer.name]!r}; choose one"
                )
            feeds_int8 = any(c not in float_set for c in consumers[layer.name])
            action = "float_exit" if feeds_int8 else "float"
            plans.append(LayerPlan(layer.name, cls, action, group, float_set[layer.name]))
            continue
        if isinstance(layer, QuantizeAnnotate) or layer.name in quantize_configs:
            plans.append(LayerPlan(layer.name, cls, "custom", group))
            continue
        registry.check(layer)  # raises UnsupportedLayerError with the way out
        plans.append(LayerPlan(layer.name, cls, "quantize", group))

    _warn_weightless_islands(model, plans, producers, float_set)
    return QuantizationPlan(tuple(plans))


def _warn_weightless_islands(
    model: keras.Model, plans: list[LayerPlan], producers: Mapping[str, list[str]], float_set: Mapping[str, str]
) -> None:
    """Warns about float layers the converter will compute in INT8 anyway."""
    for p in plans:
        if p.name not in float_set or p.type in _WEIGHTED:
            continue
        if model.get_layer(p.name).weights:
            continue
        ins = producers[p.name]
        if ins and all(i not in float_set for i in ins) and p.group == (p.name,):
            warnings.warn(
                f"keep_float: layer {p.name!r} (type {p.type}) has no weights and only INT8 inputs; "
                "it stays float in the Keras model but the TFLite converter computes it in INT8. "
                "Keep a layer with weights (Conv2D/DepthwiseConv2D/Dense) float to start a float island.",
                stacklevel=3,
            )


# --------------------------------------------------------------------------- annotate / apply


def annotate_model(
    model: keras.Model,
    config: QATConfig,
    quantize_configs: Mapping[str, Any] | None = None,
    plan: QuantizationPlan | None = None,
) -> keras.Model:
    """Returns a clone of ``model`` with every quantized layer annotated.

    The caller's model is not modified. See :func:`plan_model` for the
    arguments and errors.
    """
    quantize_configs = dict(quantize_configs or {})
    plan = plan or plan_model(model, config, quantize_configs)
    registry = TfqQuantizeRegistry(config)
    actions = plan.by_name()

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        fresh = layer.__class__.from_config(layer.get_config())
        p = actions[layer.name]
        if p.action == "quantize":
            return _qk.quantize_annotate_layer(fresh, registry.get_quantize_config(layer))
        if p.action == "custom":
            if isinstance(layer, QuantizeAnnotate):
                return fresh
            return _qk.quantize_annotate_layer(fresh, quantize_configs[layer.name])
        if p.action == "float_exit":
            return _qk.quantize_annotate_layer(fresh, registry.keep_float_exit_config())
        return fresh

    with quantize_scope():
        annotated = keras.models.clone_model(model, clone_function=clone)
        annotated.set_weights(model.get_weights())
    return annotated


def apply(annotated: keras.Model, config: QATConfig, float_layers: tuple[str, ...] = ()) -> keras.Model:
    """``quantize_apply`` with :class:`TfqQuantizeScheme`; returns the fake-quant model.

    Args:
      annotated: From :func:`annotate_model` (or annotated by hand).
      config: The QAT configuration.
      float_layers: The plan's float layers (``QuantizationPlan.float_layers``).
    """
    with quantize_scope():
        return _qk.quantize_apply(annotated, scheme=TfqQuantizeScheme(config, tuple(float_layers)))


def quantize_model(
    model: keras.Model,
    config: QATConfig,
    quantize_configs: Mapping[str, Any] | None = None,
) -> keras.Model:
    """Plans, annotates and applies fake quantization in one call.

    Args:
      model: The FP32 model (not modified).
      config: The QAT configuration.
      quantize_configs: Explicit QuantizeConfigs by layer name.

    Returns:
      A new tf_keras model with fake quantization, weights copied from
      ``model`` and weight ranges set from them (activation ranges start at
      TFMOT's defaults; see :func:`tfq.qat.ranges.init_ranges`).
    """
    from tfq.qat.ranges import init_weight_ranges

    plan = plan_model(model, config, quantize_configs)
    if not any(p.action in ("quantize", "custom", "float_exit") for p in plan.layers):
        raise ConfigError("keep_float keeps every layer float; nothing is left to quantize")
    qat_model = apply(annotate_model(model, config, quantize_configs, plan), config, tuple(plan.float_layers))
    init_weight_ranges(qat_model)  # weight ranges follow the weights from the start
    return qat_model


def load_qat_model(path: str) -> keras.Model:
    """Loads a QAT model saved with ``model.save`` (``.keras``/``.h5``/SavedModel)."""
    with quantize_scope():
        return keras.models.load_model(path, compile=False)
