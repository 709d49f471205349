"""Layer-wise quantization sensitivity: which layers break under INT8 / INT4, which do not.

For every quantizable layer (``CONV_2D``, ``DEPTHWISE_CONV_2D``,
``FULLY_CONNECTED``) a few real LiteRT models are built from one float
``.tflite`` and scored against it on a fixed, seeded evaluation subset
(top-1 drop in points and logit SQNR in dB):

============================  =================================================
variant                       what is quantized
============================  =================================================
``only_int8``                 this layer only: int8 weights and activations
``all_but_int8``              every layer but this one (full INT8 otherwise)
``weights_int8``              this layer's weights only, int8 (weight-only)
``weights_int4``              this layer's weights only, int4 (weight-only;
                              ``CONV_2D`` / ``FULLY_CONNECTED`` only)
``activations_int8``          this layer's input and output activations only:
                              a QUANTIZE -> DEQUANTIZE pair with the calibrated
                              int8 scale is inserted around the float op
============================  =================================================

The TFLite ``QuantizationDebugger``'s per-layer error statistics of a full
INT8 conversion (``rmse / scale`` and friends) are reported beside them.

The analysis works on a clone of the Keras model; the caller's model is never
changed. Calibration runs once; each variant is one AEQ quantization (well
under a second) plus one pass over the evaluation subset, so the cost is
about ``len(variants) * layers`` evaluations (ResNet-18 on 512 CIFAR images:
21 layers x 5 variants, about 10 minutes on 2 CPU cores).
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfq.configs import ConfigBase, ConfigError
from tfq.mixed import (
    LayerOp,
    MixedBuilder,
    Precision,
    PrecisionPlan,
    PrecisionRule,
    layer_from_tensor_name,
    float_tflite,
    keras_layer_names,
)
from edge.tflite_model import read_model, summarize, write_model

log = logging.getLogger(__name__)

__all__ = [
    "LayerSensitivity",
    "SensitivityConfig",
    "SensitivityResult",
    "VARIANTS",
    "Variant",
    "analyze_sensitivity",
    "insert_activation_fake_quant",
    "quantization_debugger_stats",
    "select_subset",
]


class Variant(str, enum.Enum):
    """One way of quantizing (part of) the model around a layer."""

    ONLY_INT8 = "only_int8"
    ALL_BUT_INT8 = "all_but_int8"
    WEIGHTS_INT8 = "weights_int8"
    WEIGHTS_INT4 = "weights_int4"
    ACTIVATIONS_INT8 = "activations_int8"


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    """How a variant is built.

    Attributes:
      description: One line for reports.
      layer: Precision of the analyzed layer (None: activation fake-quant).
      others: Precision of the other layers (and, through the plan default,
        of the ops without weights).
    """

    description: str
    layer: Precision | None
    others: Precision


VARIANTS: dict[Variant, VariantSpec] = {
    Variant.ONLY_INT8: VariantSpec("only this layer INT8 (weights + activations)", Precision.INT8, Precision.FP32),
    Variant.ALL_BUT_INT8: VariantSpec("every layer INT8 except this one", Precision.FP32, Precision.INT8),
    Variant.WEIGHTS_INT8: VariantSpec("only this layer's weights INT8", Precision.INT8_WEIGHT_ONLY, Precision.FP32),
    Variant.WEIGHTS_INT4: VariantSpec("only this layer's weights INT4", Precision.INT4_WEIGHT_ONLY, Precision.FP32),
    Variant.ACTIVATIONS_INT8: VariantSpec("only this layer's activations INT8", None, Precision.FP32),
}


@dataclasses.dataclass(frozen=True)
class SensitivityConfig(ConfigBase):
    """Options of :func:`analyze_sensitivity`.

    Attributes:
      eval_samples: Size of the fixed evaluation subset (drawn from val).
      calib_samples: Calibration samples (from the calib split).
      seed: Seed of the subset draws.
      variants: Which variants to run.
      debugger: Also run TFLite's QuantizationDebugger.
      debugger_samples: Samples the debugger runs (batch 1 each).
      num_threads: Interpreter threads (None: LiteRT's default).
      batch_size: Evaluation batch size.
    """

    eval_samples: int = 512
    calib_samples: int = 256
    seed: int = 0
    variants: tuple[Variant, ...] = tuple(Variant)
    debugger: bool = True
    debugger_samples: int = 64
    num_threads: int | None = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", tuple(Variant(v) for v in self.variants))
        if not self.variants:
            raise ConfigError("variants must name at least one variant")
        if len(set(self.variants)) != len(self.variants):
            raise ConfigError(f"variants lists a variant twice: {[v.value for v in self.variants]}")
        for field in ("eval_samples", "calib_samples", "debugger_samples", "batch_size"):
            if getattr(self, field) < 1:
                raise ConfigError(f"{field} must be >= 1, got {getattr(self, field)}")


@dataclasses.dataclass
class LayerSensitivity:
    """Scores of one layer.

    Attributes:
      name: Layer name.
      op_type: Builtin op.
      weights: Weight elements.
      scores: ``{variant: {"top1", "drop", "sqnr_db", "agreement"}}``; a
        variant LiteRT cannot run for this op has ``None``.
      debugger: QuantizationDebugger statistics of this layer's output.
      rank: 1 = most sensitive.
    """

    name: str
    op_type: str
    weights: int
    scores: dict[str, dict[str, float] | None] = dataclasses.field(default_factory=dict)
    debugger: dict[str, float] = dataclasses.field(default_factory=dict)
    rank: int = 0

    def score(self, variant: Variant | str, metric: str = "sqnr_db") -> float:
        s = self.scores.get(Variant(variant).value)
        return float("nan") if s is None else float(s[metric])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SensitivityResult:
    """Per-layer sensitivities, ranked, plus the reference numbers.

    Ranking: by the ``only_int8`` logit SQNR, lowest (most sensitive) first
    (``rank_variant`` when ``only_int8`` was not run). SQNR is used rather
    than the top-1 drop because it is continuous: on a few hundred samples
    many layers tie at a drop of 0.
    """

    layers: list[LayerSensitivity]
    reference: dict[str, Any]
    config: SensitivityConfig
    rank_variant: str = Variant.ONLY_INT8.value
    elapsed_s: float = 0.0

    def ranking(self, variant: Variant | str | None = None, most_sensitive_first: bool = True) -> list[str]:
        """Layer names ordered by SQNR of ``variant`` (NaN -- not runnable -- last)."""
        variant = Variant(variant or self.rank_variant)
        scored = [(layer.score(variant), i, layer.name) for i, layer in enumerate(self.layers)]
        finite = [t for t in scored if not math.isnan(t[0])]
        finite.sort(key=lambda t: (t[0], t[1]) if most_sensitive_first else (-t[0], t[1]))
        return [n for _, _, n in finite] + [n for s, _, n in scored if math.isnan(s)]

    def int8_ranking(self) -> list[str]:
        """Most sensitive to INT8 first."""
        return self.ranking(self.rank_variant)

    def int4_ranking(self) -> list[str]:
        """Most robust to INT4 weights first (by ``weights_int4`` SQNR when run)."""
        if Variant.WEIGHTS_INT4 in self.config.variants:
            return self.ranking(Variant.WEIGHTS_INT4, most_sensitive_first=False)
        return list(reversed(self.int8_ranking()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "reference": self.reference,
            "rank_variant": self.rank_variant,
            "elapsed_s": self.elapsed_s,
            "variants": {v.value: VARIANTS[v].description for v in self.config.variants},
            "layers": [layer.to_dict() for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SensitivityResult":
        layers = [LayerSensitivity(**layer) for layer in data["layers"]]
        return cls(
            layers=layers,
            reference=dict(data["reference"]),
            config=SensitivityConfig.from_dict(data["config"]),
            rank_variant=data.get("rank_variant", Variant.ONLY_INT8.value),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SensitivityResult":
        """Reads ``sensitivity.json`` (a file or the run directory holding it)."""
        import json

        path = Path(path)
        if path.is_dir():
            path = path / "sensitivity.json"
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    # Outputs --------------------------------------------------------------------
    def csv_rows(self) -> list[dict[str, Any]]:
        """One row per layer, ranked; columns described in docs/mixed.md."""
        rows = []
        all_int8_drop = self.reference.get("all_int8", {}).get("drop")
        for layer in sorted(self.layers, key=lambda s: s.rank):
            row: dict[str, Any] = {"rank": layer.rank, "layer": layer.name, "op_type": layer.op_type,
                                   "weights": layer.weights}
            for v in self.config.variants:
                s = layer.scores.get(v.value)
                for metric in ("top1", "drop", "sqnr_db"):
                    row[f"{v.value}_{metric}"] = "" if s is None else _round(s[metric])
            if Variant.ALL_BUT_INT8.value in layer.scores and all_int8_drop is not None:
                s = layer.scores[Variant.ALL_BUT_INT8.value]
                row["all_but_int8_recovery"] = "" if s is None else _round(all_int8_drop - s["drop"])
            for key in DEBUGGER_COLUMNS:
                if self.config.debugger:
                    row[f"dbg_{key}"] = _round(layer.debugger[key]) if key in layer.debugger else ""
            rows.append(row)
        return rows

    def write_csv(self, path: str | os.PathLike) -> Path:
        from tfq.rundir import atomic_write_text

        rows = self.csv_rows()
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["rank", "layer"])
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buf.getvalue())
        return Path(path)

    def plot(self, path: str | os.PathLike, title: str = "") -> Path:
        """Horizontal bar charts, most sensitive layer on top: SQNR per variant and top-1 drop."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from tfq.rundir import atomic_write_bytes

        ranked = sorted(self.layers, key=lambda s: s.rank)
        names = [s.name for s in ranked]
        n = len(ranked)
        sqnr_variants = [v for v in self.config.variants if v != Variant.ALL_BUT_INT8]
        fig, axes = plt.subplots(1, 2, figsize=(13, max(3.0, 0.28 * n + 1.5)), sharey=True)
        y = np.arange(n)
        height = 0.8 / max(1, len(sqnr_variants))
        for k, v in enumerate(sqnr_variants):
            vals = [s.score(v) for s in ranked]
            vals = [np.nan if math.isinf(x) else x for x in vals]
            axes[0].barh(y + (k - (len(sqnr_variants) - 1) / 2) * height, vals, height=height, label=v.value)
        axes[0].set_xlabel("logit SQNR vs FP32 (dB, lower = more sensitive)")
        axes[0].legend(fontsize=7, loc="lower right")
        drops = [(v, [s.score(v, "drop") for s in ranked]) for v in (Variant.ONLY_INT8, Variant.ALL_BUT_INT8)
                 if v in self.config.variants]
        height2 = 0.8 / max(1, len(drops))
        for k, (v, vals) in enumerate(drops):
            axes[1].barh(y + (k - (len(drops) - 1) / 2) * height2, vals, height=height2, label=v.value)
        if "all_int8" in self.reference:
            axes[1].axvline(self.reference["all_int8"]["drop"], color="black", ls=":", lw=0.8,
                            label="full INT8")
        axes[1].set_xlabel("top-1 drop vs FP32 (points)")
        axes[1].legend(fontsize=7, loc="lower right")
        axes[0].set_yticks(y)
        axes[0].set_yticklabels(names, fontsize=7)
        axes[0].invert_yaxis()
        for ax in axes:
            ax.grid(axis="x", alpha=0.3)
        fig.suptitle(title or "quantization sensitivity per layer (ranked, most sensitive on top)")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())
        return Path(path)


DEBUGGER_COLUMNS = ("rmse_over_scale", "mean_squared_error", "max_abs_error", "mean_error", "stddev", "scale")


def _round(x: float) -> float:
    """Seven significant digits (keeps tiny debugger errors readable)."""
    return x if not isinstance(x, float) or not math.isfinite(x) else float(f"{x:.7g}")


# --------------------------------------------------------------------------- helpers


def select_subset(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed, seeded subset of ``n`` examples (all when fewer); returns x, y, indices."""
    total = len(x)
    if n >= total:
        idx = np.arange(total)
    else:
        idx = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    return np.asarray(x[idx], np.float32), np.asarray(y[idx]), idx


def _asymmetric_int8(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 or 1e-8
    zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zero_point


def insert_activation_fake_quant(float_model: bytes, layer: LayerOp, calibration: Mapping[str, Any]) -> bytes:
    """Round-trips one op's input and output activations through int8 (QUANTIZE -> DEQUANTIZE).

    Scales come from the calibrated min/max of each tensor (per tensor,
    asymmetric, as a full-INT8 model would use); the op itself and its
    weights stay float32.

    Raises:
      KeyError: A tensor has no calibration range.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = read_model(float_model)
    sg = model.subgraphs[0]
    ops = list(sg.operators)
    op = ops[layer.op_index]

    def opcode(builtin: int) -> int:
        for i, code in enumerate(model.operatorCodes):
            if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) == builtin:
                return i
        code = schema.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = 2  # int8 QUANTIZE / DEQUANTIZE
        model.operatorCodes.append(code)
        return len(model.operatorCodes) - 1

    def new_tensor(like: Any, name: str, dtype: int, qparams: tuple[float, int] | None) -> int:
        t = schema.TensorT()
        t.shape = like.shape
        t.shapeSignature = like.shapeSignature
        t.type = dtype
        t.name = name
        model.buffers.append(schema.BufferT())
        t.buffer = len(model.buffers) - 1
        if qparams is not None:
            q = schema.QuantizationParametersT()
            q.scale, q.zeroPoint = [qparams[0]], [qparams[1]]
            t.quantization = q
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def new_op(builtin: int, src: int, dst: int) -> Any:
        o = schema.OperatorT()
        o.opcodeIndex = opcode(builtin)
        o.inputs, o.outputs = [src], [dst]
        return o

    def qparams(tensor_index: int) -> tuple[float, int]:
        name = sg.tensors[tensor_index].name
        name = name.decode() if isinstance(name, bytes) else name
        qsv = calibration[name]
        return _asymmetric_int8(np.min(qsv["min"]), np.max(qsv["max"]))

    Q, DQ = schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE
    before, after = [], []
    src = int(op.inputs[0])
    src_t = sg.tensors[src]
    q_in = new_tensor(src_t, f"{layer.name}/input_int8", schema.TensorType.INT8, qparams(src))
    dq_in = new_tensor(src_t, f"{layer.name}/input_fakequant", schema.TensorType.FLOAT32, None)
    before += [new_op(Q, src, q_in), new_op(DQ, q_in, dq_in)]
    inputs = list(op.inputs)
    inputs[0] = dq_in
    op.inputs = inputs
    out = int(op.outputs[0])
    out_t = sg.tensors[out]
    raw = new_tensor(out_t, f"{layer.name}/output_float", schema.TensorType.FLOAT32, None)
    q_out = new_tensor(out_t, f"{layer.name}/output_int8", schema.TensorType.INT8, qparams(out))
    outputs = list(op.outputs)
    outputs[0] = raw
    op.outputs = outputs
    after += [new_op(Q, raw, q_out), new_op(DQ, q_out, out)]
    sg.operators = ops[: layer.op_index] + before + [op] + after + ops[layer.op_index + 1 :]
    return write_model(model)


def quantization_debugger_stats(
    model: Any, calib_x: np.ndarray, debug_x: np.ndarray, layer_names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Per-layer error statistics of TFLite's QuantizationDebugger (full INT8 conversion).

    The debugger inserts a NumericVerify op after every quantized op and
    compares it with the float result on ``debug_x``. ``rmse_over_scale`` is
    ``sqrt(mean_squared_error) / scale``: the error in units of the output
    quantization step (about 0.29 for pure rounding noise).

    Args:
      model: A Keras model (the caller passes a clone).
      calib_x: Representative data for the INT8 conversion.
      debug_x: Data the debugger runs (one sample per invocation).
      layer_names: The quantizable layer names to report.

    Returns:
      ``{layer: stats}`` for the layers found in the debugger's output.
    """
    import tensorflow as tf

    calib_x = np.asarray(calib_x, np.float32)
    debug_x = np.asarray(debug_x, np.float32)

    def calib_gen():
        for i in range(len(calib_x)):
            yield [calib_x[i : i + 1]]

    def debug_gen():
        for i in range(len(debug_x)):
            yield [debug_x[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calib_gen
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=debug_gen)
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    summary = summarize(debugger.get_debug_quantized_model())
    producer = {}
    for op in summary.ops:
        for o in op.outputs:
            producer[o] = op
    known = frozenset(layer_names)
    out: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(io.StringIO(buf.getvalue())):
        idx = int(float(row["tensor_idx"]))
        names = [row.get("tensor_name", "")]
        op = producer.get(idx)
        if op is not None:
            names = [summary.tensor(i).name for i in op.inputs if i >= 0 and summary.tensor(i).is_constant] + names
        layer = next((n for n in (layer_from_tensor_name(s, known) for s in names) if n), None)
        if layer is None:
            continue
        stats = {k: float(row[k]) for k in ("mean_squared_error", "max_abs_error", "mean_error", "stddev", "scale")}
        stats["rmse_over_scale"] = math.sqrt(stats["mean_squared_error"]) / stats["scale"] if stats["scale"] else math.nan
        stats["op_name"] = row["op_name"]  # type: ignore[assignment]
        out[layer] = stats
    return out


# --------------------------------------------------------------------------- analysis


def _clone(model: Any) -> Any:
    import tf_keras as keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def analyze_sensitivity(
    model: Any,
    calib_x: np.ndarray,
    eval_x: np.ndarray,
    eval_y: np.ndarray,
    config: SensitivityConfig = SensitivityConfig(),
    *,
    progress: bool | None = None,
    on_layer: Callable[[LayerSensitivity], None] | None = None,
) -> SensitivityResult:
    """Scores every quantizable layer of a Keras model under each variant.

    Args:
      model: The FP32 Keras model; it is cloned and never changed.
      calib_x: Calibration inputs (preprocessed); the first
        ``config.calib_samples`` are used.
      eval_x: Evaluation inputs; a seeded subset of ``config.eval_samples``.
      eval_y: Their labels.
      config: Options.
      progress: Show a progress bar (None: only on a terminal).
      on_layer: Called with each finished layer (for incremental writes).

    Returns:
      The ranked :class:`SensitivityResult`.
    """
    from tqdm.auto import tqdm

    from edge.metrics import agreement, sqnr_db, top_k_accuracy
    from tfq.mixed import PlanEvaluator

    t_start = time.perf_counter()
    x, y, _ = select_subset(eval_x, eval_y, config.eval_samples, config.seed)
    calib = np.asarray(calib_x[: config.calib_samples], np.float32)
    clone = _clone(model)
    try:
        names = keras_layer_names(clone)
        keras_logits = np.asarray(clone.predict(x, batch_size=config.batch_size, verbose=0), np.float32)
        fp32 = float_tflite(clone)
        builder = MixedBuilder(fp32, calib, layer_names=names, num_threads=config.num_threads)
        evaluator = PlanEvaluator(x, y, keras_logits, num_threads=config.num_threads, latency_runs=0,
                                  batch_size=config.batch_size)
        fp32_logits = evaluator.logits(fp32)
        max_diff = float(np.max(np.abs(fp32_logits - keras_logits))) if len(x) else 0.0
        log.info("float .tflite vs Keras: max |logit difference| %.2e on %d samples", max_diff, len(x))
        # Score against the float .tflite so differences are quantization only.
        evaluator = PlanEvaluator(x, y, fp32_logits, num_threads=config.num_threads, latency_runs=0,
                                  batch_size=config.batch_size)

        def score(model_bytes: bytes) -> dict[str, float]:
            logits = evaluator.logits(model_bytes)
            top1 = top_k_accuracy(logits, y)
            return {
                "top1": top1,
                "drop": (evaluator.reference_top1 - top1) * 100.0,
                "sqnr_db": sqnr_db(fp32_logits, logits),
                "agreement": agreement(fp32_logits, logits),
            }

        all_int8 = builder.build(PrecisionPlan.preset("all_int8"))
        reference = {
            "eval_samples": int(len(x)),
            "keras_top1": top_k_accuracy(keras_logits, y),
            "fp32_top1": evaluator.reference_top1,
            "fp32_size_bytes": len(fp32),
            "keras_vs_tflite_max_abs_diff": max_diff,
            "all_int8": {**score(all_int8.model), "size_bytes": all_int8.size_bytes},
        }
        log.info("FP32 top-1 %.2f%%, full INT8 top-1 %.2f%% (drop %.2f points) on %d samples",
                 100 * reference["fp32_top1"], 100 * reference["all_int8"]["top1"],
                 reference["all_int8"]["drop"], len(x))
        results = []
        bar = tqdm(builder.layers, desc="sensitivity", unit="layer",
                   disable=None if progress is None else not progress)
        for layer in bar:
            record = LayerSensitivity(layer.name, layer.op_type, layer.num_weights)
            for variant in config.variants:
                record.scores[variant.value] = _score_variant(builder, layer, variant, score)
            results.append(record)
            if on_layer is not None:
                on_layer(record)
        if config.debugger:
            t0 = time.perf_counter()
            stats = quantization_debugger_stats(
                clone, calib[: min(len(calib), 100)], x[: config.debugger_samples], builder.layer_names
            )
            for record in results:
                record.debugger = stats.get(record.name, {})
            log.info("QuantizationDebugger: %d layers in %.1fs", len(stats), time.perf_counter() - t0)
    finally:
        del clone
    rank_variant = Variant.ONLY_INT8 if Variant.ONLY_INT8 in config.variants else config.variants[0]
    result = SensitivityResult(results, reference, config, rank_variant.value, time.perf_counter() - t_start)
    for rank, name in enumerate(result.ranking(rank_variant), start=1):
        next(r for r in results if r.name == name).rank = rank
    result.layers.sort(key=lambda r: r.rank)
    return result


def _score_variant(
    builder: MixedBuilder, layer: LayerOp, variant: Variant, score: Callable[[bytes], dict[str, float]]
) -> dict[str, float] | None:
    spec = VARIANTS[variant]
    if spec.layer is None:
        return score(insert_activation_fake_quant(builder.float_model, layer, builder.calibration))
    if spec.layer not in layer.supported:
        return None  # e.g. INT4 weights on a depthwise convolution
    plan = PrecisionPlan(
        default=spec.others,
        rules=(PrecisionRule(f"^{_escape(layer.name)}$", spec.layer),),
        name=variant.value,
    )
    return score(builder.build(plan).model)


def _escape(name: str) -> str:
    import re

    return re.escape(name)
