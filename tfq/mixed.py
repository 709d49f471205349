"""Mixed-precision ``.tflite`` models: per-layer precision plans, building, verification, search.

A :class:`PrecisionPlan` assigns a :class:`Precision` to every quantizable layer
(``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``FULLY_CONNECTED``) of a model through
ordered regex rules over layer names, first match wins, and a default::

    name: first_last_fp16
    default: int8
    rules:
      - {pattern: "@first", precision: fp16}   # first quantizable layer
      - {pattern: "@last", precision: fp16}    # last one (the classifier)

The pipeline, stage by stage (each a public step)::

    float .tflite  --quantizable_layers-->  [LayerOp]          (names from weight tensors)
    plan  --resolve-->  Assignment  (requested + what LiteRT runs, fallbacks noted)
    Assignment  --to_recipe-->  ai-edge-quantizer recipe (one exact-scope rule per op)
    recipe + calibration  --MixedBuilder.build-->  MixedModel (.tflite bytes)
    MixedModel  --verify_precision-->  tensor types read back from the flatbuffer

Building uses ai-edge-quantizer (AEQ): the Keras model is converted once to a
float ``.tflite``, calibrated once (min/max of every tensor), and each plan is
then a cheap ``Quantizer.quantize`` (well under a second for ResNet-18). What
LiteRT 2.3 runs is recorded in :data:`LITERT_SUPPORT` (see ``docs/mixed.md``):
INT4 weights run in ``CONV_2D`` and ``FULLY_CONNECTED`` only, so an
``int4_weights`` request on a depthwise convolution falls back to ``int8``
explicitly (noted in the assignment, never silently).

:func:`search_plan` is the greedy budgeted search used by ``pipelines.mixed``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfq.configs import ConfigBase, ConfigError
from edge.tflite_model import ModelSummary, read_model, summarize, write_model

log = logging.getLogger(__name__)

__all__ = [
    "Assignment",
    "Budget",
    "Candidate",
    "LITERT_SUPPORT",
    "LayerOp",
    "MixedBuilder",
    "MixedConfig",
    "MixedModel",
    "Objective",
    "PRECISIONS",
    "PRESETS",
    "PlanError",
    "PlanEvaluator",
    "Precision",
    "PrecisionMismatchError",
    "PrecisionPlan",
    "PrecisionRule",
    "SearchConfig",
    "SearchResult",
    "float_tflite",
    "keras_layer_names",
    "paired_drop_se",
    "pareto_front",
    "plot_pareto",
    "quantizable_layers",
    "search_plan",
    "tflite_logits",
    "verify_precision",
]


# --------------------------------------------------------------------------- precisions


class PlanError(ConfigError):
    """A precision plan is invalid or does not fit the model (names the layers)."""


class PrecisionMismatchError(RuntimeError):
    """The tensor types read back from a built ``.tflite`` differ from the plan."""


class Precision(str, enum.Enum):
    """What one layer computes in and how its weights are stored.

    ``INT8``: int8 weights (per channel) and int8 activations, integer kernel.
    ``INT4_WEIGHTS``: int4 weights (per channel) with int8 activations, integer
    kernel (``CONV_2D`` and ``FULLY_CONNECTED`` only).
    ``INT8_WEIGHT_ONLY`` / ``INT4_WEIGHT_ONLY``: integer weights expanded by a
    ``DEQUANTIZE`` op; the layer computes in float32.
    ``FP16``: float16 weights expanded by ``DEQUANTIZE``; computes in float32.
    ``FP32``: float32 weights and activations.
    """

    INT8 = "int8"
    INT4_WEIGHTS = "int4_weights"
    INT8_WEIGHT_ONLY = "int8_weight_only"
    INT4_WEIGHT_ONLY = "int4_weight_only"
    FP16 = "fp16"
    FP32 = "fp32"


@dataclasses.dataclass(frozen=True)
class PrecisionSpec:
    """How a :class:`Precision` looks inside a ``.tflite`` and how AEQ produces it.

    Attributes:
      weight_dtype: Storage type of the weight constant (``INT8``, ``INT4``,
        ``FLOAT16``, ``FLOAT32``).
      activation_dtype: Type of the op's input activation (``INT8`` or ``FLOAT32``).
      weight_bits: Bits per stored weight.
      dequantized_weights: True when a ``DEQUANTIZE`` op expands the weights
        to float32 before the op.
      rank: Orders precisions from most compressed (0) to most exact.
    """

    weight_dtype: str
    activation_dtype: str
    weight_bits: int
    dequantized_weights: bool
    rank: int


# One row per precision: the expected tensor types (checked by verify_precision).
PRECISIONS: dict[Precision, PrecisionSpec] = {
    Precision.INT4_WEIGHTS: PrecisionSpec("INT4", "INT8", 4, False, 0),
    Precision.INT8: PrecisionSpec("INT8", "INT8", 8, False, 1),
    Precision.INT4_WEIGHT_ONLY: PrecisionSpec("INT4", "FLOAT32", 4, True, 2),
    Precision.INT8_WEIGHT_ONLY: PrecisionSpec("INT8", "FLOAT32", 8, True, 3),
    Precision.FP16: PrecisionSpec("FLOAT16", "FLOAT32", 16, True, 4),
    Precision.FP32: PrecisionSpec("FLOAT32", "FLOAT32", 32, False, 5),
}

_ALL = frozenset(Precision)
_NO_INT4 = _ALL - {Precision.INT4_WEIGHTS, Precision.INT4_WEIGHT_ONLY}

# What LiteRT 2.3's CPU kernels (XNNPACK and the reference kernels) run, and
# what AEQ 0.10 produces, per op type (checked by tests/test_mixed.py).
LITERT_SUPPORT: dict[str, frozenset[Precision]] = {
    "CONV_2D": _ALL,
    "FULLY_CONNECTED": _ALL,
    "DEPTHWISE_CONV_2D": _NO_INT4,
}
# A precision an op type cannot run is replaced by this one (recorded as a fallback).
FALLBACK: dict[Precision, Precision] = {
    Precision.INT4_WEIGHTS: Precision.INT8,
    Precision.INT4_WEIGHT_ONLY: Precision.INT8_WEIGHT_ONLY,
}

FIRST, LAST = "@first", "@last"
SELECTORS = (FIRST, LAST)


# --------------------------------------------------------------------------- plans


@dataclasses.dataclass(frozen=True)
class PrecisionRule(ConfigBase):
    """One rule: layers whose name matches ``pattern`` get ``precision``.

    ``pattern`` is a Python regex searched in the layer name (``re.search``,
    like AEQ's scopes; anchor with ``^...$`` for an exact name), or one of the
    selectors ``@first`` / ``@last`` (the first / last quantizable layer in
    execution order).
    """

    pattern: str
    precision: Precision

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str) or not self.pattern:
            raise PlanError(f"rule pattern must be a non-empty string, got {self.pattern!r}")
        if self.pattern.startswith("@") and self.pattern not in SELECTORS:
            raise PlanError(f"unknown selector {self.pattern!r}; valid selectors are {', '.join(SELECTORS)}")
        if self.pattern not in SELECTORS:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise PlanError(f"rule pattern {self.pattern!r} is not a valid regex: {e}") from None
        object.__setattr__(self, "precision", _precision(self.precision, f"rule {self.pattern!r}"))

    def matches(self, name: str, position: int, count: int) -> bool:
        """True when this rule selects layer ``name`` at ``position`` of ``count``."""
        if self.pattern == FIRST:
            return position == 0
        if self.pattern == LAST:
            return position == count - 1
        return re.search(self.pattern, name) is not None


def _precision(value: Any, where: str) -> Precision:
    if isinstance(value, Precision):
        return value
    try:
        return Precision(value)
    except ValueError:
        valid = ", ".join(p.value for p in Precision)
        raise PlanError(f"{where}: unknown precision {value!r}; valid precisions are {valid}") from None


@dataclasses.dataclass(frozen=True)
class PrecisionPlan(ConfigBase):
    """Ordered precision rules plus a default; first matching rule wins.

    Attributes:
      default: Precision of layers no rule matches. It also decides the
        layers without weights (ADD, MEAN, ...): int8 when the default has
        int8 activations, float32 otherwise.
      rules: Ordered :class:`PrecisionRule` s.
      name: A label used in file names and reports.
      description: Free text.
    """

    default: Precision = Precision.INT8
    rules: tuple[PrecisionRule, ...] = ()
    name: str = "custom"
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "default", _precision(self.default, "plan default"))
        object.__setattr__(self, "rules", tuple(self.rules))
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", self.name or ""):
            raise PlanError(f"plan name must be a file-name-safe word, got {self.name!r}")

    # Construction ---------------------------------------------------------------
    @classmethod
    def preset(cls, name: str) -> "PrecisionPlan":
        """Returns a named preset (see :data:`PRESETS`)."""
        try:
            return PRESETS[name]
        except KeyError:
            raise PlanError(f"unknown plan preset {name!r}; presets are: {', '.join(sorted(PRESETS))}") from None

    @classmethod
    def from_rule_strings(
        cls, items: Sequence[str], default: Precision | str = Precision.INT8, name: str = "custom"
    ) -> "PrecisionPlan":
        """Builds a plan from ``"REGEX=PRECISION"`` strings (command line ``--rule``).

        The last ``=`` separates the pattern from the precision, so patterns may
        contain ``=``.
        """
        rules = []
        for item in items:
            if "=" not in item:
                raise PlanError(f"a rule must look like REGEX=PRECISION, got {item!r}")
            pattern, precision = item.rsplit("=", 1)
            rules.append(PrecisionRule(pattern.strip(), _precision(precision.strip(), f"rule {item!r}")))
        return cls(default=_precision(default, "default"), rules=tuple(rules), name=name)

    @classmethod
    def from_assignment(
        cls,
        precisions: Mapping[str, Precision],
        default: Precision = Precision.INT8,
        name: str = "custom",
        description: str = "",
    ) -> "PrecisionPlan":
        """A plan with one exact-name rule per layer whose precision is not ``default``."""
        rules = tuple(
            PrecisionRule(f"^{re.escape(layer)}$", p) for layer, p in precisions.items() if p != default
        )
        return cls(default=default, rules=rules, name=name, description=description)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PrecisionPlan":
        """Loads a YAML or JSON plan file; a preset name is accepted too."""
        if not os.path.exists(os.fspath(path)) and str(path) in PRESETS:
            return cls.preset(str(path))
        return super().load(path)

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the plan as YAML (``.yaml``/``.yml``) or JSON, atomically."""
        from tfq.rundir import atomic_write_text

        path = Path(path)
        atomic_write_text(path, self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json() + "\n")
        return path

    def to_yaml(self) -> str:
        """The plan as YAML, keys in a readable order."""
        import yaml

        data = self.to_dict()
        ordered = {k: data[k] for k in ("name", "description", "default", "rules")}
        return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None, width=100)

    # Resolution -----------------------------------------------------------------
    def resolve(self, layers: Sequence[str]) -> dict[str, Precision]:
        """Assigns a precision to every layer name (first matching rule wins).

        Args:
          layers: Quantizable layer names in execution order.

        Returns:
          ``{layer: precision}`` in the order of ``layers``.

        Raises:
          PlanError: A rule matches no layer (the message lists the layers).
        """
        layers = list(layers)
        out: dict[str, Precision] = {}
        used = [False] * len(self.rules)
        effective = [False] * len(self.rules)
        for pos, layer in enumerate(layers):
            chosen = None
            for i, rule in enumerate(self.rules):
                if rule.matches(layer, pos, len(layers)):
                    used[i] = True
                    if chosen is None:
                        chosen = rule.precision
                        effective[i] = True
            out[layer] = self.default if chosen is None else chosen
        unused = [self.rules[i] for i, u in enumerate(used) if not u]
        if unused:
            listed = ", ".join(f"{r.pattern!r} -> {r.precision.value}" for r in unused)
            raise PlanError(
                f"plan {self.name!r}: rule(s) {listed} match no quantizable layer; "
                f"the layers are: {', '.join(layers) or '(none)'}"
            )
        for i, rule in enumerate(self.rules):
            if not effective[i]:
                log.warning("plan %s: rule %r only matches layers taken by earlier rules", self.name, rule.pattern)
        return out


def _preset(name: str, description: str, default: Precision, *rules: tuple[str, Precision]) -> PrecisionPlan:
    return PrecisionPlan(
        default=default, rules=tuple(PrecisionRule(p, q) for p, q in rules), name=name, description=description
    )


PRESETS: dict[str, PrecisionPlan] = {
    p.name: p
    for p in (
        _preset("all_int8", "Full-integer INT8: int8 weights (per channel) and activations everywhere.",
                Precision.INT8),
        _preset(
            "first_last_fp16",
            "INT8 everywhere except the first and last quantizable layers (stem convolution and "
            "classifier), which keep float16 weights and compute in float32.",
            Precision.INT8, (FIRST, Precision.FP16), (LAST, Precision.FP16),
        ),
        _preset(
            "int8_weights_fp16_activations",
            "Weight-only INT8: int8 weights expanded by DEQUANTIZE, activations stay float. LiteRT's "
            "CPU kernels compute float ops in FP32 (no FP16 activation tensors exist on CPU), so this "
            "is int8 weight storage with float activations.",
            Precision.INT8_WEIGHT_ONLY,
        ),
        _preset("all_int4_weights", "INT4 weights with INT8 activations wherever LiteRT runs them "
                "(CONV_2D, FULLY_CONNECTED); depthwise convolutions fall back to INT8.", Precision.INT4_WEIGHTS),
        _preset("all_fp16", "Float16 weights, float32 compute (TFLite's float16 quantization).", Precision.FP16),
    )
}


# --------------------------------------------------------------------------- layers of a model


@dataclasses.dataclass(frozen=True)
class LayerOp:
    """One quantizable op of the float ``.tflite`` model.

    Attributes:
      name: The layer name (Keras layer name when it can be recovered from the
        weight tensor name, e.g. ``stage2_block1_conv1``).
      op_index: Position of the op in the float model.
      op_type: Builtin op name (``CONV_2D``...).
      output_tensor: Name of the op's output tensor (kept by AEQ; used to find
        the op again in a built model).
      scope: AEQ's scope string of the op (its output tensor names + ``;``).
      weight_tensor: Name of the weight constant.
      num_weights: Elements of the weight constant.
    """

    name: str
    op_index: int
    op_type: str
    output_tensor: str
    scope: str
    weight_tensor: str
    num_weights: int

    @property
    def supported(self) -> frozenset[Precision]:
        """Precisions LiteRT runs for this op type."""
        return LITERT_SUPPORT[self.op_type]


_WEIGHT_OP_SUFFIX = re.compile(r"^(Conv2D|depthwise|MatMul|BiasAdd|Tensordot|conv2d|kernel)\d*$")


def layer_from_tensor_name(name: str, known: frozenset[str] | None) -> str | None:
    """Recovers a layer name from a TF tensor name like ``resnet18/stem_conv/Conv2D``."""
    segments = [s for s in name.split(";") if s]
    if known:
        for seg in segments:
            for part in seg.split("/"):
                if part in known:
                    return part
        return None
    for seg in segments:
        parts = seg.split("/")
        if len(parts) >= 2 and _WEIGHT_OP_SUFFIX.match(parts[-1]):
            return parts[-2]
    return None


def quantizable_layers(float_model: bytes, layer_names: Iterable[str] | None = None) -> list[LayerOp]:
    """Lists the quantizable ops of a float ``.tflite`` with their layer names.

    Args:
      float_model: A float32 ``.tflite`` (as converted from Keras).
      layer_names: Names of the Keras layers that have weights; when given,
        the layer name is the first of them found in the weight (or output)
        tensor name. Otherwise the path component before ``Conv2D`` /
        ``depthwise`` / ``MatMul`` is used, and the output tensor name last.

    Returns:
      The ops in execution order.

    Raises:
      PlanError: Two ops resolve to the same name, or the model has an op
        that is not float32.
    """
    summary = summarize(float_model)
    known = frozenset(layer_names) if layer_names is not None else None
    out: list[LayerOp] = []
    for op in summary.ops:
        if op.subgraph != 0 or op.name not in LITERT_SUPPORT:
            continue
        ins = [summary.tensor(i) for i in op.inputs if i >= 0]
        weights = [t for t in ins[1:2] if t.is_constant]
        if not weights:
            continue  # a matmul of two activations: nothing to quantize
        weight = weights[0]
        if weight.dtype != "FLOAT32":
            raise PlanError(f"op {op.index} ({op.name}) has {weight.dtype} weights; a float32 model is needed")
        outputs = [summary.tensor(i).name for i in op.outputs if i >= 0]
        name = layer_from_tensor_name(weight.name, known)
        if name is None:
            name = next((n for n in (layer_from_tensor_name(o, known) for o in outputs) if n), None)
        if name is None:
            name = outputs[0] if outputs else f"op{op.index}"
        out.append(
            LayerOp(
                name=name,
                op_index=op.index,
                op_type=op.name,
                output_tensor=outputs[0],
                scope=";".join(outputs) + ";",
                weight_tensor=weight.name,
                num_weights=weight.num_elements,
            )
        )
    seen: dict[str, int] = {}
    for layer in out:
        seen[layer.name] = seen.get(layer.name, 0) + 1
    dupes = sorted(n for n, c in seen.items() if c > 1)
    if dupes:
        raise PlanError(f"several ops map to the same layer name(s) {dupes}; shared layers are not supported")
    return out


def keras_layer_names(model: Any) -> list[str]:
    """Names of the layers of a Keras model that hold a kernel (Conv/Dense)."""
    names = []
    for layer in _flat_layers(model):
        if any("kernel" in w.name for w in layer.weights):
            names.append(layer.name)
    return names


def _flat_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            out.extend(_flat_layers(layer))
        else:
            out.append(layer)
    return out


def float_tflite(model: Any) -> bytes:
    """The float32 ``.tflite`` of a Keras model (:func:`tfq.ptq.convert_fp32`); the model is not changed."""
    from tfq.ptq import convert_fp32

    return convert_fp32(model)


# --------------------------------------------------------------------------- assignment and recipe


@dataclasses.dataclass(frozen=True)
class Assignment:
    """The per-layer precisions a plan resolves to on one model.

    Attributes:
      requested: What the plan asked for, per layer.
      effective: What will be built (``requested`` unless LiteRT cannot run it).
      fallbacks: ``{layer: reason}`` for every layer whose precision changed.
      glue: Precision of the ops without weights (``INT8`` or ``FP32``).
    """

    requested: Mapping[str, Precision]
    effective: Mapping[str, Precision]
    fallbacks: Mapping[str, str]
    glue: Precision

    def key(self) -> tuple:
        """A hashable identity (same key -> same model)."""
        return (self.glue.value, *sorted((k, v.value) for k, v in self.effective.items()))

    def counts(self) -> dict[str, int]:
        """Number of layers per effective precision."""
        out: dict[str, int] = {}
        for p in self.effective.values():
            out[p.value] = out.get(p.value, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "glue": self.glue.value,
            "layers": {k: v.value for k, v in self.effective.items()},
            "requested": {k: v.value for k, v in self.requested.items() if v != self.effective[k]},
            "fallbacks": dict(self.fallbacks),
        }


def glue_precision(default: Precision) -> Precision:
    """Ops without weights are int8 when the default has int8 activations, else float."""
    return Precision.INT8 if PRECISIONS[default].activation_dtype == "INT8" else Precision.FP32


def make_assignment(
    layers: Sequence[LayerOp], requested: Mapping[str, Precision], glue: Precision
) -> Assignment:
    """Applies :data:`LITERT_SUPPORT` to requested precisions (fallbacks recorded)."""
    by_name = {layer.name: layer for layer in layers}
    missing = [n for n in by_name if n not in requested]
    extra = [n for n in requested if n not in by_name]
    if missing or extra:
        raise PlanError(f"assignment does not cover the model: missing {missing}, unknown {extra}")
    effective, fallbacks = {}, {}
    for name in by_name:
        want = requested[name]
        got = want
        if got not in by_name[name].supported:
            got = FALLBACK[got]
            fallbacks[name] = f"{want.value} is not run by LiteRT for {by_name[name].op_type}; using {got.value}"
        effective[name] = got
    return Assignment(dict(requested), effective, fallbacks, glue)


_A8 = {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT"}


def _weights(bits: int) -> dict[str, Any]:
    return {"num_bits": bits, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"}


def _static(bits: int) -> dict[str, Any]:
    return {
        "algorithm_key": "min_max_uniform_quantize",
        "op_config": {
            "activation_tensor_config": _A8,
            "weight_tensor_config": _weights(bits),
            "compute_precision": "INTEGER",
            "explicit_dequantize": False,
        },
    }


def _weight_only(bits: int) -> dict[str, Any]:
    return {
        "algorithm_key": "min_max_uniform_quantize",
        "op_config": {"weight_tensor_config": _weights(bits), "compute_precision": "FLOAT", "explicit_dequantize": True},
    }


# One AEQ rule body per precision (regex and operation are added per op).
RECIPE_RULES: dict[Precision, dict[str, Any]] = {
    Precision.INT8: _static(8),
    Precision.INT4_WEIGHTS: _static(4),
    Precision.INT8_WEIGHT_ONLY: _weight_only(8),
    Precision.INT4_WEIGHT_ONLY: _weight_only(4),
    Precision.FP16: {
        "algorithm_key": "float_casting",
        "op_config": {
            "weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
            "compute_precision": "FLOAT",
            "explicit_dequantize": True,
        },
    },
    Precision.FP32: {"algorithm_key": "no_quantize"},
}


def to_recipe(layers: Sequence[LayerOp], assignment: Assignment) -> list[dict[str, Any]]:
    """An AEQ recipe: a catch-all rule for the glue ops, then one exact-scope rule per layer.

    AEQ applies the *last* matching rule, so the per-layer rules override the
    catch-all; each per-layer regex is the op's anchored, escaped scope.
    """
    import copy

    recipe = [{"regex": ".*", "operation": "*", **copy.deepcopy(RECIPE_RULES[assignment.glue])}]
    for layer in layers:
        rule = copy.deepcopy(RECIPE_RULES[assignment.effective[layer.name]])
        recipe.append({"regex": "^" + re.escape(layer.scope) + "$", "operation": layer.op_type, **rule})
    return recipe


# --------------------------------------------------------------------------- graph edits


def _builtin_code(model: Any, op: Any) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def strip_float_edge_conversions(model_bytes: bytes) -> bytes:
    """Removes a QUANTIZE that turns a float graph output into int8 (and the mirror DEQUANTIZE).

    AEQ gives the graph the activation type of the default rule at its edges,
    so a float classifier (e.g. ``first_last_fp16``) would have its logits
    re-quantized to int8 just before the output. This returns the float
    tensor instead. A graph input read only by one ``DEQUANTIZE`` likewise
    becomes that op's float output. Signature tensor indices are updated.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = read_model(model_bytes)
    sg = model.subgraphs[0]
    ops = list(sg.operators or [])
    remove: set[int] = set()
    remap: dict[int, int] = {}
    consumers: dict[int, list[int]] = {}
    for i, op in enumerate(ops):
        for t in op.inputs if op.inputs is not None else []:
            consumers.setdefault(int(t), []).append(i)
    producer = {int(t): i for i, op in enumerate(ops) for t in (op.outputs if op.outputs is not None else [])}
    float32 = schema.TensorType.FLOAT32
    outputs = [int(t) for t in sg.outputs]
    for pos, t in enumerate(outputs):
        i = producer.get(t)
        if i is None or _builtin_code(model, ops[i]) != schema.BuiltinOperator.QUANTIZE:
            continue
        src = int(ops[i].inputs[0])
        if sg.tensors[src].type == float32 and not consumers.get(t) and src not in outputs:
            outputs[pos] = src
            remap[t] = src
            remove.add(i)
    inputs = [int(t) for t in sg.inputs]
    for pos, t in enumerate(inputs):
        users = consumers.get(t, [])
        if len(users) != 1 or _builtin_code(model, ops[users[0]]) != schema.BuiltinOperator.DEQUANTIZE:
            continue
        dst = int(ops[users[0]].outputs[0])
        if sg.tensors[dst].type == float32:
            inputs[pos] = dst
            remap[t] = dst
            remove.add(users[0])
    if not remove:
        return model_bytes
    sg.operators = [op for i, op in enumerate(ops) if i not in remove]
    sg.outputs = outputs
    sg.inputs = inputs
    for sig in model.signatureDefs or []:
        for tmap in list(sig.inputs or []) + list(sig.outputs or []):
            tmap.tensorIndex = remap.get(int(tmap.tensorIndex), int(tmap.tensorIndex))
    return write_model(model)


# --------------------------------------------------------------------------- building


@contextlib.contextmanager
def _quiet_aeq() -> Iterator[None]:
    """AEQ logs every transformation at INFO on the root logger; raise it to WARNING meanwhile."""
    import warnings

    root = logging.getLogger()
    level = root.level
    if level < logging.WARNING:
        root.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
            yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def _no_progress_bar_unless_tty() -> Iterator[None]:
    """AEQ's calibration progress bar cannot be turned off; hide it when stderr is not a terminal."""
    import io
    import sys

    if getattr(sys.stderr, "isatty", lambda: False)():
        yield
        return
    with contextlib.redirect_stderr(io.StringIO()):
        yield


@dataclasses.dataclass(frozen=True)
class MixedModel:
    """A built mixed-precision model and what it is made of.

    Attributes:
      plan: The plan it was built from.
      assignment: Requested and effective per-layer precisions.
      recipe: The AEQ recipe used.
      model: The ``.tflite`` bytes.
      layers: Verified per-layer records (see :func:`verify_precision`).
    """

    plan: PrecisionPlan
    assignment: Assignment
    recipe: list[dict[str, Any]]
    model: bytes
    layers: tuple[dict[str, Any], ...] = ()

    @property
    def size_bytes(self) -> int:
        return len(self.model)

    @property
    def summary(self) -> ModelSummary:
        return summarize(self.model)

    def stats(self) -> dict[str, Any]:
        """Size, average bits per weight, parameters per storage type, layer counts."""
        summary = self.summary
        params: dict[str, int] = {}
        for t in summary.weight_tensors():
            params[t.dtype] = params.get(t.dtype, 0) + t.num_elements
        return {
            "size_bytes": self.size_bytes,
            "size_mb": self.size_bytes / 1e6,
            "bits_per_weight": summary.weight_bits(),
            "params_by_dtype": params,
            "layers_by_precision": self.assignment.counts(),
            "fallbacks": dict(self.assignment.fallbacks),
            "op_counts": summary.op_counts(),
        }

    def save(self, directory: str | os.PathLike, name: str | None = None, overwrite: bool = False) -> Path:
        """Writes ``{name}.tflite``, ``{name}_recipe.json`` and ``{name}_plan.yaml`` atomically.

        Raises:
          FileExistsError: The model file exists and ``overwrite`` is False.
        """
        from tfq.rundir import atomic_write_bytes, atomic_write_text

        directory = Path(directory)
        name = name or self.plan.name
        path = directory / f"{name}.tflite"
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
        atomic_write_bytes(path, self.model)
        atomic_write_text(directory / f"{name}_recipe.json", json.dumps(self.recipe, indent=2) + "\n")
        self.plan.save(directory / f"{name}_plan.yaml")
        return path


def signature_input_name(model: bytes) -> tuple[str, str]:
    """``(signature_key, input_name)`` of a one-input model's first signature."""
    from edge.litert import make_interpreter

    interp = make_interpreter(model, allocate=False)
    sigs = interp.get_signature_list()
    if not sigs:
        raise ValueError("the float model has no signature; convert it from Keras with tf.lite.TFLiteConverter")
    key = next(iter(sigs))
    inputs = sigs[key]["inputs"]
    if len(inputs) != 1:
        raise ValueError(f"expected a one-input classifier, signature {key!r} has inputs {inputs}")
    return key, inputs[0]


class MixedBuilder:
    """Builds mixed-precision ``.tflite`` models of one float model.

    Calibration (min/max of every tensor over ``calibration_data``) runs once,
    in the constructor; every :meth:`build` is then a recipe application.

    Args:
      float_model: The float32 ``.tflite`` bytes (see :func:`float_tflite`).
      calibration_data: Preprocessed float inputs ``(N, H, W, C)``.
      layer_names: Keras layer names with weights (see :func:`keras_layer_names`).
      batch_size: Calibration batch size.
      num_threads: Interpreter threads for calibration.
    """

    def __init__(
        self,
        float_model: bytes,
        calibration_data: np.ndarray,
        *,
        layer_names: Iterable[str] | None = None,
        batch_size: int = 32,
        num_threads: int | None = None,
    ):
        self.float_model = bytes(float_model)
        self.layers = quantizable_layers(self.float_model, layer_names)
        if not self.layers:
            raise PlanError("the model has no quantizable layer (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED)")
        self.layer_names = [layer.name for layer in self.layers]
        self._signature, self._input_name = signature_input_name(self.float_model)
        x = np.asarray(calibration_data, dtype=np.float32)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"calibration_data must be a non-empty batch, got shape {x.shape}")
        t0 = time.perf_counter()
        self.calibration = self._calibrate(x, batch_size, num_threads or 1)
        log.info("calibrated %d tensors on %d samples in %.1fs", len(self.calibration), len(x),
                 time.perf_counter() - t0)

    def _calibrate(self, x: np.ndarray, batch_size: int, num_threads: int) -> dict[str, Any]:
        from ai_edge_quantizer import quantizer

        everything = Assignment({}, {n: Precision.INT8 for n in self.layer_names}, {}, Precision.INT8)
        q = quantizer.Quantizer(bytearray(self.float_model), to_recipe(self.layers, everything))
        data = [{self._input_name: x[i : i + batch_size]} for i in range(0, len(x), batch_size)]
        with _quiet_aeq(), _no_progress_bar_unless_tty():
            return q.calibrate({self._signature: data}, num_threads=num_threads)

    def resolve(self, plan: PrecisionPlan) -> Assignment:
        """The plan's precisions on this model, with LiteRT fallbacks applied."""
        return make_assignment(self.layers, plan.resolve(self.layer_names), glue_precision(plan.default))

    def build(self, plan: PrecisionPlan, assignment: Assignment | None = None, verify: bool = True) -> MixedModel:
        """Quantizes the float model according to ``plan`` and verifies the result.

        Args:
          plan: The plan (also stored in the result).
          assignment: A precomputed assignment (defaults to :meth:`resolve`).
          verify: Read tensor types back and raise on a mismatch.

        Raises:
          PlanError: The plan does not fit the model.
          PrecisionMismatchError: The built model differs from the plan.
        """
        from ai_edge_quantizer import quantizer

        assignment = assignment or self.resolve(plan)
        recipe = to_recipe(self.layers, assignment)
        q = quantizer.Quantizer(bytearray(self.float_model), recipe)
        calibration = self.calibration if q.need_calibration else None
        with _quiet_aeq():
            result = q.quantize(calibration, enable_progress_report=False)
        model = strip_float_edge_conversions(bytes(result.quantized_model))
        records: tuple[dict[str, Any], ...] = ()
        if verify:
            records = tuple(verify_precision(model, self.layers, assignment))
        return MixedModel(plan=plan, assignment=assignment, recipe=recipe, model=model, layers=records)


# --------------------------------------------------------------------------- verification

#: Ops that only convert between float and integer tensors (around float islands, at the I/O).
CONVERSION_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
#: Tensor types an op computes in (shape and index tensors, INT32/INT64, are left out).
COMPUTE_DTYPES = frozenset({"FLOAT32", "FLOAT16", "INT8", "UINT8", "INT16"})


def _weight_storage(summary: ModelSummary, op: Any) -> tuple[str, bool, str]:
    """(storage dtype, dequantized?, tensor name) of the weight input of ``op``."""
    idx = op.inputs[1]
    tensor = summary.tensor(idx, op.subgraph)
    if tensor.is_constant:
        return tensor.dtype, False, tensor.name
    for other in summary.ops:
        if other.subgraph == op.subgraph and idx in other.outputs and other.name == "DEQUANTIZE":
            src = summary.tensor(other.inputs[0], op.subgraph)
            if src.is_constant:
                return src.dtype, True, src.name
    return f"non-constant {tensor.dtype}", False, tensor.name


def verify_precision(
    model: bytes, layers: Sequence[LayerOp], assignment: Assignment
) -> list[dict[str, Any]]:
    """Checks every layer's tensor types in a built ``.tflite`` against the assignment.

    For each layer the op is found by its output tensor name; its activation
    input type and its weight storage type (through a ``DEQUANTIZE`` when the
    weights are expanded) must equal :data:`PRECISIONS` of the effective
    precision. Every weighted op of the model must belong to a layer. Every
    op without weights (ADD, MEAN, ...) is read back too and must compute in
    a single type: only ``QUANTIZE``/``DEQUANTIZE`` may change it.

    Args:
      model: The built ``.tflite`` bytes.
      layers: The layers of the float model.
      assignment: The effective precisions.

    Returns:
      One record per layer: name, op type, precision, weight and activation
      dtypes, weight count; then one per op without weights (``glue: True``,
      ``precision: None``, its output tensor's name as ``layer``).

    Raises:
      PrecisionMismatchError: Listing every mismatching or missing layer.
    """
    summary = summarize(model)
    by_output: dict[str, Any] = {}
    for op in summary.ops:
        if op.subgraph == 0 and op.name in LITERT_SUPPORT:
            for o in op.outputs:
                by_output[summary.tensor(o).name] = op
    problems: list[str] = []
    records: list[dict[str, Any]] = []
    matched: set[int] = set()
    for layer in layers:
        precision = assignment.effective[layer.name]
        spec = PRECISIONS[precision]
        op = by_output.get(layer.output_tensor)
        if op is None or op.name != layer.op_type:
            problems.append(f"{layer.name}: no {layer.op_type} op with output {layer.output_tensor!r} in the model")
            continue
        matched.add(op.index)
        w_dtype, dequantized, _ = _weight_storage(summary, op)
        a_dtype = summary.tensor(op.inputs[0]).dtype
        record = {
            "layer": layer.name,
            "op": layer.op_type,
            "precision": precision.value,
            "weight_dtype": w_dtype,
            "activation_dtype": a_dtype,
            "weights": layer.num_weights,
        }
        records.append(record)
        expected = (spec.weight_dtype, spec.dequantized_weights, spec.activation_dtype)
        if (w_dtype, dequantized, a_dtype) != expected:
            problems.append(
                f"{layer.name} ({layer.op_type}): plan says {precision.value} "
                f"(weights {spec.weight_dtype}{' via DEQUANTIZE' if spec.dequantized_weights else ''}, "
                f"activations {spec.activation_dtype}) but the model has weights {w_dtype}"
                f"{' via DEQUANTIZE' if dequantized else ''}, activations {a_dtype}"
            )
    strays = [op for op in summary.ops if op.subgraph == 0 and op.name in LITERT_SUPPORT and op.index not in matched]
    for op in strays:
        problems.append(f"op {op.index} ({op.name}) belongs to no planned layer")
    # Ops without weights (ADD, MEAN, ...): the plan does not assign them; they follow their
    # neighbours (int8 between int8 layers, float around float islands). Each is read back and
    # must compute in one type: only QUANTIZE/DEQUANTIZE may change it.
    for op in summary.ops:
        if op.subgraph != 0 or op.name in LITERT_SUPPORT or op.name in CONVERSION_OPS:
            continue
        tensors = [summary.tensor(i) for i in (*op.inputs, *op.outputs) if i >= 0]
        dtypes = sorted({t.dtype for t in tensors if not t.is_constant and t.dtype in COMPUTE_DTYPES})
        out_name = summary.tensor(op.outputs[0]).name if op.outputs else f"op{op.index}"
        records.append({"layer": out_name, "op": op.name, "precision": None, "glue": True,
                        "weight_dtype": None, "activation_dtype": "/".join(dtypes) or None, "weights": 0})
        if len(dtypes) > 1:
            problems.append(f"op {op.index} ({op.name}, output {out_name!r}) mixes {' and '.join(dtypes)} "
                            "without a QUANTIZE/DEQUANTIZE")
    if problems:
        raise PrecisionMismatchError("precision verification failed:\n  " + "\n  ".join(problems))
    return records


# --------------------------------------------------------------------------- evaluation


def tflite_logits(
    model: bytes, x: np.ndarray, *, num_threads: int | None = None, batch_size: int = 64
) -> np.ndarray:
    """Float outputs of a ``.tflite`` classifier on preprocessed float input."""
    from edge.litert import TFLiteModel

    return TFLiteModel.from_bytes(model, num_threads=num_threads).predict(np.asarray(x, np.float32), batch_size)


def paired_drop_se(reference_logits: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> float:
    """Standard error (points) of the top-1 drop of ``logits`` vs ``reference_logits`` on the same samples.

    Per sample ``d = correct_ref - correct`` (in {-1, 0, 1}); the drop is
    ``100 * mean(d)`` and its standard error ``100 * std(d, ddof=1) / sqrt(n)``.
    Only samples where the two models disagree contribute, so it is much
    smaller than the standard error of either accuracy alone.
    """
    labels = np.asarray(labels).reshape(-1)
    d = (np.argmax(reference_logits, 1) == labels).astype(np.float64) - (np.argmax(logits, 1) == labels)
    if d.size < 2:
        return float("nan")
    return float(100.0 * d.std(ddof=1) / math.sqrt(d.size))


class PlanEvaluator:
    """Scores built models on one fixed split against the FP32 model.

    Args:
      x: Preprocessed inputs of the split.
      y: Integer labels.
      reference_logits: FP32 logits on ``x`` (for agreement and SQNR).
      num_threads: Interpreter threads (None: LiteRT's default for accuracy,
        1 for latency).
      latency_runs: Timed batch-1 invocations per model (0 skips latency).
      warmup_runs: Untimed invocations before timing.
      batch_size: Batch size of the accuracy pass.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        reference_logits: np.ndarray,
        *,
        num_threads: int | None = None,
        latency_runs: int = 30,
        warmup_runs: int = 5,
        batch_size: int = 64,
    ):
        from edge.metrics import top_k_accuracy

        self.x = np.asarray(x, np.float32)
        self.y = np.asarray(y)
        self.reference_logits = np.asarray(reference_logits, np.float32)
        self.reference_top1 = top_k_accuracy(self.reference_logits, self.y)
        self.num_threads = num_threads
        self.latency_threads = num_threads or 1
        self.latency_runs = latency_runs
        self.warmup_runs = warmup_runs
        self.batch_size = batch_size

    def logits(self, model: bytes) -> np.ndarray:
        return tflite_logits(model, self.x, num_threads=self.num_threads, batch_size=self.batch_size)

    def latency_ms(self, model: bytes) -> dict[str, float]:
        """Batch-1 latency statistics (ms) of ``model`` on the first sample (XNNPACK on)."""
        from tfq.evaluate import measure_latency

        return measure_latency(model, self.x[:1], num_threads=self.latency_threads, runs=self.latency_runs,
                               warmup=self.warmup_runs)

    def __call__(self, model: bytes) -> dict[str, Any]:
        """top-1, drop and its standard error (points), agreement, SQNR, size and latency of ``model``."""
        from edge.metrics import agreement, sqnr_db, top_k_accuracy

        logits = self.logits(model)
        top1 = top_k_accuracy(logits, self.y)
        out = {
            "top1": top1,
            "drop": (self.reference_top1 - top1) * 100.0,
            "drop_se": paired_drop_se(self.reference_logits, logits, self.y),
            "agreement": agreement(self.reference_logits, logits),
            "sqnr_db": sqnr_db(self.reference_logits, logits),
            "size_mb": len(model) / 1e6,
            "bits_per_weight": summarize(model).weight_bits(),
        }
        if self.latency_runs > 0:
            lat = self.latency_ms(model)
            out["latency_ms"] = lat["p50"]
            out["latency_stats"] = lat
        else:
            out["latency_ms"] = float("nan")
        return out


# --------------------------------------------------------------------------- budgets and search


class Objective(str, enum.Enum):
    """What the search minimizes among plans within the budget."""

    SIZE = "size"
    LATENCY = "latency"


@dataclasses.dataclass(frozen=True)
class Budget(ConfigBase):
    """Limits a plan must meet (any subset, at least one).

    Attributes:
      max_drop: Largest top-1 drop against FP32, in percentage points.
      max_latency_ms: Largest median batch-1 latency.
      max_size_mb: Largest ``.tflite`` size in MB (10**6 bytes).
      drop_z: The accuracy test uses ``drop + drop_z * drop_se``: the drop
        measured on the val subset plus ``drop_z`` standard errors of that
        paired estimate (see :class:`PlanEvaluator`). 0 compares the raw drop;
        the default 1.0 keeps a plan from passing by val sampling noise
        alone (one-sided, about 84% confidence).
    """

    max_drop: float | None = None
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    drop_z: float = 1.0

    def __post_init__(self) -> None:
        for field in ("max_drop", "max_latency_ms", "max_size_mb"):
            value = getattr(self, field)
            if value is not None and (not math.isfinite(value) or value < 0 or (field != "max_drop" and value == 0)):
                raise ConfigError(f"budget {field} must be a positive number, got {value!r}")
        if self.max_drop is None and self.max_latency_ms is None and self.max_size_mb is None:
            raise ConfigError("give at least one budget: max_drop, max_latency_ms or max_size_mb")
        if not math.isfinite(self.drop_z) or self.drop_z < 0:
            raise ConfigError(f"budget drop_z must be a number >= 0, got {self.drop_z!r}")

    def drop_bound(self, metrics: Mapping[str, Any]) -> float:
        """The drop the accuracy limit is checked against: ``drop + drop_z * drop_se``."""
        se = metrics.get("drop_se", 0.0)
        se = 0.0 if se is None or math.isnan(se) else se
        return float(metrics["drop"]) + self.drop_z * se

    def gaps(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        """How far ``metrics`` exceed each limit (0 when within; NaN latency counts as exceeding)."""
        out = {}
        for field, key in (("max_drop", "drop"), ("max_latency_ms", "latency_ms"), ("max_size_mb", "size_mb")):
            limit = getattr(self, field)
            if limit is None:
                continue
            value = self.drop_bound(metrics) if key == "drop" else metrics.get(key, float("nan"))
            out[field] = float("inf") if value is None or math.isnan(value) else max(0.0, value - limit)
        return out

    def met(self, metrics: Mapping[str, Any]) -> bool:
        return all(g == 0.0 for g in self.gaps(metrics).values())

    def accuracy_ok(self, metrics: Mapping[str, Any]) -> bool:
        return self.max_drop is None or self.drop_bound(metrics) <= self.max_drop

    def resources_ok(self, metrics: Mapping[str, Any]) -> bool:
        gaps = self.gaps(metrics)
        return gaps.get("max_latency_ms", 0.0) == 0.0 and gaps.get("max_size_mb", 0.0) == 0.0

    def relative_gap(self, metrics: Mapping[str, Any]) -> float:
        """Sum of gaps relative to their limits (drop relative to 1 point)."""
        total = 0.0
        for field, gap in self.gaps(metrics).items():
            limit = getattr(self, field)
            total += gap / (max(limit, 1.0) if field == "max_drop" else limit)
        return total


@dataclasses.dataclass(frozen=True)
class SearchConfig(ConfigBase):
    """Options of :func:`search_plan`.

    Attributes:
      objective: Minimize ``size`` or ``latency`` within the budget.
      allow_int4: Allow ``int4_weights`` layers.
      promote_to: Precision given to sensitive layers.
      prune: After promotions, try to return promoted layers to int8.
      max_evaluations: Hard cap on plans evaluated.
      latency_tolerance: A move counts as faster only when latency drops by this fraction.
      latency_recheck_rounds: With the latency objective, the feasible plans
        within ``recheck_window`` of the fastest are timed again in this many
        interleaved rounds before choosing (0: no re-check).
      recheck_window: Relative latency window of the re-check.
    """

    objective: Objective = Objective.SIZE
    allow_int4: bool = True
    promote_to: Precision = Precision.FP16
    prune: bool = True
    max_evaluations: int = 80
    latency_tolerance: float = 0.03
    latency_recheck_rounds: int = 5
    recheck_window: float = 0.3

    def __post_init__(self) -> None:
        object.__setattr__(self, "objective", Objective(self.objective))
        object.__setattr__(self, "promote_to", _precision(self.promote_to, "promote_to"))
        if self.max_evaluations < 1:
            raise ConfigError(f"max_evaluations must be >= 1, got {self.max_evaluations}")
        if PRECISIONS[self.promote_to].rank <= PRECISIONS[Precision.INT8].rank:
            raise ConfigError(f"promote_to must be more precise than int8, got {self.promote_to!r}")


@dataclasses.dataclass(frozen=True)
class MixedConfig(ConfigBase):
    """Configuration of ``pipelines.mixed``.

    Attributes:
      budget: The limits (required to search; optional when building one plan).
      search: Options of :func:`search_plan`.
      val_samples: Size of the seeded val subset plans are chosen on.
      calib_samples: Calibration samples (calib split).
      test_samples: Test samples reported (None: the whole test split).
      sensitivity_samples: Val samples of the quick sensitivity pass run when
        no sensitivity run exists.
      latency_runs: Timed batch-1 invocations per plan.
      num_threads: Interpreter threads (None: LiteRT's default).
      seed: Seed of the subsets.
    """

    budget: Budget | None = None
    search: SearchConfig = SearchConfig()
    val_samples: int = 1000
    calib_samples: int = 256
    test_samples: int | None = None
    sensitivity_samples: int = 512
    latency_runs: int = 30
    num_threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for field in ("val_samples", "calib_samples", "sensitivity_samples"):
            if getattr(self, field) < 1:
                raise ConfigError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.test_samples is not None and self.test_samples < 1:
            raise ConfigError(f"test_samples must be >= 1 or null, got {self.test_samples}")
        if self.latency_runs < 0:
            raise ConfigError(f"latency_runs must be >= 0, got {self.latency_runs}")


@dataclasses.dataclass
class Candidate:
    """One plan the search built and evaluated."""

    index: int
    step: str
    plan: PrecisionPlan
    assignment: Assignment
    metrics: dict[str, Any]
    met: bool
    gaps: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "step": self.step,
            "plan": self.plan.to_dict(),
            "assignment": self.assignment.to_dict(),
            "metrics": self.metrics,
            "met": self.met,
            "gaps": self.gaps,
        }


@dataclasses.dataclass
class SearchResult:
    """What :func:`search_plan` tried and chose.

    Attributes:
      candidates: Every evaluated plan in order.
      best: The chosen plan: the best within budget by the objective, or the
        one closest to the budget when none meets it.
      met: Whether ``best`` meets the budget.
      reference: The all-INT8 plan (the first candidate).
    """

    candidates: list[Candidate]
    best: Candidate
    met: bool
    reference: Candidate

    @property
    def gaps(self) -> dict[str, float]:
        return self.best.gaps


def _objective_value(metrics: Mapping[str, Any], objective: Objective) -> float:
    value = metrics["size_mb"] if objective == Objective.SIZE else metrics.get("latency_ms", float("nan"))
    return float("inf") if value is None or math.isnan(value) else float(value)


def search_plan(
    builder: MixedBuilder,
    evaluate: Callable[[bytes], dict[str, Any]],
    budget: Budget,
    *,
    int8_ranking: Sequence[str],
    int4_ranking: Sequence[str] | None = None,
    config: SearchConfig = SearchConfig(),
    extra_plans: Sequence[PrecisionPlan] = (),
    on_candidate: Callable[[Candidate], None] | None = None,
) -> SearchResult:
    """Greedy search for the smallest (or fastest) plan within a budget.

    Steps, every plan built, verified and scored by ``evaluate`` (on a
    validation split):

    1. Start from all INT8 (the reference); also evaluate ``extra_plans``
       (e.g. presets) so they compete in the final choice.
    2. *Promote* while the accuracy budget fails: give ``promote_to`` (FP16)
       to the layers in ``int8_ranking`` order (most sensitive first), one more
       layer per step, until the top-1 drop is within ``max_drop``.
    3. *Prune* (optional): try to return each promoted layer, least sensitive
       first, to INT8; keep the change when the drop stays within budget.
    4. *Demote* (when INT4 is allowed and the objective is size, or a size or
       latency limit is still exceeded): walk ``int4_ranking`` (most robust
       first, INT8 layers only). First all of them at once, then a binary
       search for the longest prefix that can go to ``int4_weights`` within
       the accuracy budget, then
       one pass over the remaining layers, each kept when it improves the
       objective and keeps the drop within budget. Without ``max_drop``, demotion
       stops as soon as the size / latency limits hold (the most accurate plan
       that fits).
    5. Choose, among all evaluated plans meeting the whole budget, the one
       with the lowest objective (ties: higher top-1); for the latency
       objective the finalists are timed again, interleaved, first. If none
       meets the budget, the one with the smallest relative gap.

    Args:
      builder: Builds plans of one float model.
      evaluate: ``model_bytes -> metrics`` with ``top1``, ``drop``,
        ``size_mb``, ``latency_ms`` (see :class:`PlanEvaluator`).
      budget: The limits.
      int8_ranking: Layer names, most sensitive to INT8 first.
      int4_ranking: Layer names, most robust to INT4 weights first (defaults
        to the reverse of ``int8_ranking``).
      config: Search options.
      extra_plans: Plans evaluated after the reference (skipped when they
        use INT4 and ``allow_int4`` is False); candidates like any other.
      on_candidate: Called after each evaluated plan (e.g. to append it to a
        ``plans.jsonl`` so nothing is lost on an interruption).

    Returns:
      A :class:`SearchResult`.
    """
    layers = builder.layer_names
    _check_ranking(int8_ranking, layers, "int8_ranking")
    int4_ranking = list(int4_ranking) if int4_ranking is not None else list(reversed(int8_ranking))
    _check_ranking(int4_ranking, layers, "int4_ranking")
    candidates: list[Candidate] = []
    cache: dict[tuple, Candidate] = {}

    def evaluate_plan(
        precisions: dict[str, Precision] | None, step: str, default: Precision = Precision.INT8,
        plan: PrecisionPlan | None = None,
    ) -> Candidate | None:
        if plan is None:
            plan = PrecisionPlan.from_assignment(precisions or {}, default, name=f"search{len(candidates):03d}",
                                                 description=step)
        assignment = builder.resolve(plan)
        known = cache.get(assignment.key())
        if known is not None:
            return known
        if len(candidates) >= config.max_evaluations:
            log.warning("search stopped: max_evaluations=%d reached", config.max_evaluations)
            return None
        mixed = builder.build(plan, assignment)
        metrics = evaluate(mixed.model)
        metrics.update(mixed.stats())
        cand = Candidate(len(candidates), step, plan, assignment, metrics, budget.met(metrics), budget.gaps(metrics))
        candidates.append(cand)
        cache[assignment.key()] = cand
        log.info(
            "plan %d [%s]: top-1 %.2f%% (drop %.2f +/- %.2f), %.3f MB, %.2f ms, %.2f bits/weight%s",
            cand.index, step, 100 * metrics["top1"], metrics["drop"], metrics.get("drop_se", float("nan")),
            metrics["size_mb"],
            metrics.get("latency_ms", float("nan")), metrics["bits_per_weight"], " (meets budget)" if cand.met else "",
        )
        if on_candidate is not None:
            on_candidate(cand)
        return cand

    current = {name: Precision.INT8 for name in layers}
    reference = evaluate_plan(dict(current), "all int8")
    assert reference is not None
    best_so_far = reference
    for extra in extra_plans:
        if not config.allow_int4 and any(
            p in (Precision.INT4_WEIGHTS, Precision.INT4_WEIGHT_ONLY) for p in builder.resolve(extra).effective.values()
        ):
            continue
        evaluate_plan(None, f"preset {extra.name}", plan=extra)

    # 2. Promote sensitive layers until the accuracy budget holds.
    promoted: list[str] = []
    if not budget.accuracy_ok(reference.metrics):
        for name in int8_ranking:
            current[name] = config.promote_to
            promoted.append(name)
            cand = evaluate_plan(dict(current), f"promote {name} -> {config.promote_to.value}")
            if cand is None:
                break
            best_so_far = cand
            if budget.accuracy_ok(cand.metrics):
                break
        else:
            # Every layer promoted and still too inaccurate: also float glue ops.
            cand = evaluate_plan(dict(current), f"all layers and glue ops {config.promote_to.value}",
                                 default=config.promote_to)
            if cand is not None and budget.accuracy_ok(cand.metrics):
                best_so_far = cand
        # 3. Prune promotions that turn out unnecessary (least sensitive first).
        if config.prune and budget.accuracy_ok(best_so_far.metrics):
            for name in reversed(promoted[:-1]):
                trial = dict(current)
                trial[name] = Precision.INT8
                cand = evaluate_plan(trial, f"prune {name} -> int8")
                if cand is None:
                    break
                if budget.accuracy_ok(cand.metrics):
                    current = trial
                    best_so_far = cand

    # 4. Demote robust layers to INT4 weights.
    int4_ok = config.allow_int4 and budget.accuracy_ok(best_so_far.metrics)
    wants_compression = config.objective == Objective.SIZE or not budget.resources_ok(best_so_far.metrics)
    if int4_ok and wants_compression:
        by_name = {layer.name: layer for layer in builder.layers}
        order = [
            n for n in int4_ranking
            if current[n] == Precision.INT8 and Precision.INT4_WEIGHTS in by_name[n].supported
        ]

        def with_int4(names: Sequence[str]) -> dict[str, Precision]:
            trial = dict(current)
            for n in names:
                trial[n] = Precision.INT4_WEIGHTS
            return trial

        if budget.max_drop is None:
            # No accuracy limit: the most accurate plan that fits is the
            # shortest robust-first prefix meeting the size / latency limits.
            lo, hi, found = 1, len(order), None
            while lo <= hi and not budget.resources_ok(best_so_far.metrics):
                mid = (lo + hi) // 2
                cand = evaluate_plan(with_int4(order[:mid]), f"int4 for the {mid} most robust layers")
                if cand is None:
                    break
                if budget.resources_ok(cand.metrics):
                    found, hi = (mid, cand), mid - 1
                else:
                    lo = mid + 1
            if found is not None:
                current, best_so_far = with_int4(order[: found[0]]), found[1]
        else:
            # Longest robust-first prefix within the accuracy budget that improves
            # the objective (binary search), then one greedy pass over the rest.
            lo, hi, prefix_best = 0, len(order), None
            first = True
            while lo < hi:
                # Try demoting every candidate first (often already evaluated as the
                # all_int4_weights preset); bisect only when that fails.
                mid = hi if first else (lo + hi + 1) // 2
                first = False
                cand = evaluate_plan(with_int4(order[:mid]), f"int4 for the {mid} most robust layers")
                if cand is None:
                    break
                if budget.accuracy_ok(cand.metrics) and _improves(cand.metrics, best_so_far.metrics, config):
                    lo, prefix_best = mid, cand
                else:
                    hi = mid - 1
            if prefix_best is not None:
                current, best_so_far = with_int4(order[:lo]), prefix_best
            for n in order[lo:]:
                trial = with_int4([n])
                cand = evaluate_plan(trial, f"int4 {n}")
                if cand is None:
                    break
                if budget.accuracy_ok(cand.metrics) and _improves(cand.metrics, best_so_far.metrics, config):
                    current, best_so_far = trial, cand

    # 5. Choose (after timing the fastest feasible plans again when latency decides).
    feasible = [c for c in candidates if c.met]
    if feasible and config.objective == Objective.LATENCY and budget.max_drop is not None:
        _recheck_latency(builder, evaluate, feasible, budget, config)
        feasible = [c for c in feasible if c.met]
    if feasible:
        if budget.max_drop is None:
            best = max(feasible, key=lambda c: (c.metrics["top1"], -_objective_value(c.metrics, config.objective)))
        else:
            best = min(feasible, key=lambda c: (_objective_value(c.metrics, config.objective), -c.metrics["top1"]))
        return SearchResult(candidates, best, True, reference)
    best = min(candidates, key=lambda c: (budget.relative_gap(c.metrics), -c.metrics["top1"]))
    return SearchResult(candidates, best, False, reference)


def _recheck_latency(
    builder: MixedBuilder, evaluate: Callable[[bytes], dict[str, Any]], feasible: list[Candidate],
    budget: Budget, config: SearchConfig,
) -> None:
    """Times the feasible plans within ``recheck_window`` of the fastest again, interleaved.

    Latency on a shared machine drifts; timing the finalists in alternating
    rounds (A B C A B C ...) compares them under the same load. Each finalist's
    ``latency_ms`` becomes the median over the rounds (the first figure is
    kept as ``latency_ms_search``), and its budget check is redone.
    """
    timer = getattr(evaluate, "latency_ms", None)
    if timer is None or config.latency_recheck_rounds < 1:
        return
    values = [_objective_value(c.metrics, Objective.LATENCY) for c in feasible]
    fastest = min(values)
    if not math.isfinite(fastest):
        return
    finalists = [c for c, v in zip(feasible, values) if v <= fastest * (1.0 + config.recheck_window)]
    if len(finalists) < 2:
        return
    models = [builder.build(c.plan, c.assignment, verify=False).model for c in finalists]
    rounds: list[list[float]] = [[] for _ in finalists]
    for _ in range(config.latency_recheck_rounds):
        for i, model in enumerate(models):
            rounds[i].append(timer(model)["p50"])
    for cand, times in zip(finalists, rounds):
        cand.metrics["latency_ms_search"] = cand.metrics.get("latency_ms")
        cand.metrics["latency_ms"] = float(np.median(times))
        cand.met, cand.gaps = budget.met(cand.metrics), budget.gaps(cand.metrics)
        log.info("latency re-check of plan %d [%s]: %.2f ms (search: %.2f ms)", cand.index, cand.step,
                 cand.metrics["latency_ms"], cand.metrics["latency_ms_search"])


def _improves(new: Mapping[str, Any], old: Mapping[str, Any], config: SearchConfig) -> bool:
    if config.objective == Objective.SIZE:
        return new["size_mb"] < old["size_mb"]
    a, b = _objective_value(new, Objective.LATENCY), _objective_value(old, Objective.LATENCY)
    return a < b * (1.0 - config.latency_tolerance)


def _check_ranking(ranking: Sequence[str], layers: Sequence[str], what: str) -> None:
    if sorted(ranking) != sorted(layers):
        missing = sorted(set(layers) - set(ranking))
        extra = sorted(set(ranking) - set(layers))
        raise PlanError(f"{what} must list every layer once: missing {missing}, unknown {extra}")


# --------------------------------------------------------------------------- Pareto


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated when minimizing x and maximizing y."""
    front = []
    for i, (x, y) in enumerate(points):
        if math.isnan(x) or math.isnan(y):
            continue
        dominated = any(
            (x2 <= x and y2 >= y) and (x2 < x or y2 > y)
            for j, (x2, y2) in enumerate(points)
            if j != i and not (math.isnan(x2) or math.isnan(y2))
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_pareto(
    candidates: Sequence[Candidate],
    path: str | os.PathLike,
    *,
    reference_top1: float,
    budget: Budget | None = None,
    chosen: Candidate | None = None,
    title: str = "",
) -> Path:
    """Writes a two-panel plot: top-1 vs size and top-1 vs latency; front marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfq.rundir import atomic_write_bytes

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    top1 = [100 * c.metrics["top1"] for c in candidates]
    for ax, key, label, limit in (
        (axes[0], "size_mb", "size (MB)", budget.max_size_mb if budget else None),
        (axes[1], "latency_ms", "latency p50 (ms, batch 1)", budget.max_latency_ms if budget else None),
    ):
        xs = [float(c.metrics.get(key, float("nan"))) for c in candidates]
        colors = ["tab:green" if c.met else "tab:gray" for c in candidates]
        ax.scatter(xs, top1, c=colors, s=22, alpha=0.8, label="plans tried (green: within budget)")
        front = pareto_front(list(zip(xs, top1)))
        if front:
            ax.plot([xs[i] for i in front], [top1[i] for i in front], "-o", color="tab:blue", ms=4,
                    label="Pareto front")
        ax.axhline(100 * reference_top1, color="black", lw=0.8, ls=":", label="FP32")
        if budget is not None and budget.max_drop is not None:
            ax.axhline(100 * reference_top1 - budget.max_drop, color="tab:red", lw=0.8, ls="--",
                       label=f"accuracy budget (checked on drop + {budget.drop_z:g} SE)")
        if limit is not None:
            ax.axvline(limit, color="tab:red", lw=0.8, ls="-.")
        if chosen is not None:
            ax.scatter([float(chosen.metrics.get(key, float("nan")))], [100 * chosen.metrics["top1"]],
                       marker="*", s=180, color="tab:orange", zorder=5, label="chosen")
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
