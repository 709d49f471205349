"""Post-training quantization of a Keras classifier into ``.tflite`` models.

Modes are data (:data:`MODES`, one row per mode), configs are frozen
dataclasses (:class:`PTQConfig`, with named :data:`PRESETS`), and the one-call
entry point :func:`quantize` is composed of public steps that the pipeline and
the sweep reuse::

    state = prepare_calibration(keras_model, samples)      # converter calibration + histograms
    result = quantize_calibrated(state, PTQConfig(mode=Mode.INT8,
                                 calibration=CalibrationConfig(method="kl")))
    result.model_bytes                                       # the .tflite

How tfq's ranges land in the ``.tflite``:

1. The TFLite converter runs in calibrate-only mode
   (``converter._experimental_calibrate_only``) on a few samples: it returns
   the float model with a min/max slot in the quantization parameters of every
   activation tensor its quantizer will use.
2. :func:`tfq.calibration.collect_statistics` runs that model over all the
   representative samples in the LiteRT interpreter (every tensor preserved,
   so no op writes in place), histograms each of those tensors, and a
   calibrator picks each range (:func:`tfq.calibration.compute_ranges`).
   tfq does not reuse the converter's recorded numbers: they are wrong for
   tensors an op overwrites in place (tensorflow/tensorflow#127842).
3. :func:`write_ranges` rewrites every recorded min/max in the flatbuffer
   (object API of :mod:`edge.tflite_model`).
4. The converter's quantizer runs on the rewritten model: the MLIR quantizer
   (``convert.mlir_quantize``, as ``TFLiteConverter`` does for INT8) or, for
   INT16x8, the same legacy quantizer the converter uses for 16-bit
   activations. Both derive scale and zero point from the recorded min/max.
5. :func:`verify_ranges` reads the scales and zero points back out of the
   result and compares them with the ranges (:func:`expected_qparams`); tensors
   whose scale an op constraint fixes (SOFTMAX output, same-scale ops such as
   MAX_POOL_2D/RESHAPE/CONCATENATION) are reported as ``overridden``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

import tfq  # noqa: F401  (Keras 2 before TensorFlow)
from tfq.calibration import (
    DEFAULT_NUM_BINS,
    CalibrationConfig,
    CalibrationMethod,
    QuantGrid,
    TensorHistogram,
    TensorRange,
    collect_statistics,
    op_aliases,
    compute_ranges,
    representative_samples,
    validate_calibration_data,
)
from tfq.configs import ConfigBase, ConfigError

__all__ = [
    "ConversionError",
    "FloatFallbackError",
    "Granularity",
    "IOType",
    "MODES",
    "Mode",
    "ModeSpec",
    "PRESETS",
    "PTQConfig",
    "PTQResult",
    "CalibrationState",
    "RangeCheck",
    "calibrate_only",
    "configs_for",
    "convert_dynamic",
    "convert_fp16",
    "convert_fp32",
    "converter_default_int8",
    "expected_qparams",
    "float_op_names",
    "get_preset",
    "prepare_calibration",
    "quantize",
    "quantize_calibrated",
    "select_calibration",
    "selection_key",
    "spread_hybrid_depthwise_scales",
    "verify_ranges",
    "write_ranges",
]

log = logging.getLogger(__name__)


class ConversionError(RuntimeError):
    """The converter or quantizer failed."""


class FloatFallbackError(ConversionError):
    """A full-integer model would keep ops in floating point."""


# --------------------------------------------------------------------------- modes


class Mode(str, enum.Enum):
    """The TFLite conversion modes."""

    FP32 = "fp32"
    DYNAMIC = "dynamic"
    FP16 = "fp16"
    INT8 = "int8"
    INT16X8 = "int16x8"


class Granularity(str, enum.Enum):
    """Weight quantization granularity."""

    PER_CHANNEL = "per_channel"
    PER_TENSOR = "per_tensor"


class IOType(str, enum.Enum):
    """Type of the model's input and output tensors."""

    FLOAT32 = "float32"
    INT8 = "int8"
    UINT8 = "uint8"
    INT16 = "int16"


@dataclasses.dataclass(frozen=True)
class ModeSpec:
    """What a mode is.

    Attributes:
      description: One line for tables and help.
      calibrated: Needs a representative dataset and activation ranges.
      full_integer: Every op computes in integers (no float op may remain).
      grid: The activation grid (calibrated modes).
      io_types: Allowed input/output types; the first is the default.
      weight_granularity: Whether per-channel/per-tensor applies.
      activation_dtype: TFLite dtype name of quantized activations.
    """

    description: str
    calibrated: bool
    full_integer: bool
    grid: QuantGrid | None
    io_types: tuple[IOType, ...]
    weight_granularity: bool
    activation_dtype: str | None = None


#: The mode table: one row per mode.
MODES: dict[Mode, ModeSpec] = {
    Mode.FP32: ModeSpec("float32 reference", False, False, None, (IOType.FLOAT32,), False),
    Mode.DYNAMIC: ModeSpec("dynamic-range: int8 weights, float activations", False, False, None,
                           (IOType.FLOAT32,), True),
    Mode.FP16: ModeSpec("float16 weights", False, False, None, (IOType.FLOAT32,), False),
    Mode.INT8: ModeSpec("full-integer: int8 weights and activations", True, True, QuantGrid.INT8,  # type: ignore[attr-defined]
                        (IOType.FLOAT32, IOType.INT8, IOType.UINT8), True, "INT8"),
    Mode.INT16X8: ModeSpec("full-integer: int16 activations, int8 weights", True, True,
                           QuantGrid.INT16, (IOType.FLOAT32, IOType.INT16), True, "INT16"),  # type: ignore[attr-defined]
}


# --------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class PTQConfig(ConfigBase):
    """One post-training quantization recipe.

    Attributes:
      mode: Conversion mode.
      granularity: Weight granularity (int8 weights of ``dynamic``, ``int8``,
        ``int16x8``).
      io: Input/output tensor type (``int8``/``uint8`` for ``int8``, ``int16``
        for ``int16x8``, ``float32`` everywhere).
      calibration: Activation-range calibration (calibrated modes).
      calib_samples: Representative samples from the calibration split.
      seed: Seed of the representative subset.
      keep_float: Regular expressions (``re.search``) selecting ops to keep in
        float (``int8`` only), matched against each op's output tensor name and
        the names of its weights, e.g. ``["logits"]``.
      allow_float_fallback: Accept float ops the quantizer could not convert
        in a full-integer mode (they are still listed).
    """

    mode: Mode = Mode.INT8
    granularity: Granularity = Granularity.PER_CHANNEL
    io: IOType = IOType.FLOAT32
    calibration: CalibrationConfig = CalibrationConfig()
    calib_samples: int = 500
    seed: int = 0
    keep_float: tuple[str, ...] = ()
    allow_float_fallback: bool = False

    def __post_init__(self) -> None:
        for field, cls in (("mode", Mode), ("granularity", Granularity), ("io", IOType)):
            value = getattr(self, field)
            if not isinstance(value, cls):
                try:
                    object.__setattr__(self, field, cls(value))
                except ValueError:
                    valid = ", ".join(repr(m.value) for m in cls)
                    raise ConfigError(f"{field}: got {value!r}; valid choices are {valid}") from None
        spec = MODES[self.mode]
        if self.io not in spec.io_types:
            raise ConfigError(
                f"io={self.io.value!r} is not available for mode {self.mode.value!r}; "
                f"choose one of {[t.value for t in spec.io_types]}"
            )
        if isinstance(self.calib_samples, bool) or not isinstance(self.calib_samples, int) or self.calib_samples < 1:
            raise ConfigError(f"calib_samples must be a positive integer, got {self.calib_samples!r}")
        if isinstance(self.keep_float, str):
            object.__setattr__(self, "keep_float", (self.keep_float,))
        for pattern in self.keep_float:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"keep_float: invalid regular expression {pattern!r}: {e}") from None
        if self.keep_float and self.mode is not Mode.INT8:
            raise ConfigError(
                f"keep_float is supported for mode 'int8' only (the {self.mode.value!r} quantizer has no "
                "per-op denylist); remove it or use mode int8"
            )

    @property
    def spec(self) -> ModeSpec:
        """The mode's row of :data:`MODES`."""
        return MODES[self.mode]

    def artifact_name(self, *, with_granularity: bool = False) -> str:
        """``<mode>[_<method>][_<granularity>]``, e.g. ``int8_kl``.

        The method is included for calibrated modes; the granularity when asked
        (the sweep writes both granularities side by side).
        """
        parts = [self.mode.value]
        if self.spec.calibrated:
            parts.append(self.calibration.method.value)
        if with_granularity and self.spec.weight_granularity:
            parts.append(self.granularity.value)
        return "_".join(parts)


#: Named presets: complete :class:`PTQConfig` objects (``--preset NAME``; the
#: same recipes are files in ``configs/ptq/``).
PRESETS: dict[str, PTQConfig] = {
    "fp32": PTQConfig(mode=Mode.FP32),
    "dynamic": PTQConfig(mode=Mode.DYNAMIC),
    "fp16": PTQConfig(mode=Mode.FP16),
    "int8_per_channel": PTQConfig(mode=Mode.INT8, granularity=Granularity.PER_CHANNEL),
    "int8_per_tensor": PTQConfig(mode=Mode.INT8, granularity=Granularity.PER_TENSOR),
    # Coral's Edge TPU runs only fully 8-bit models; Coral's own post-training
    # example converts with uint8 input/output, and per-tensor weights are the
    # form every Edge TPU compiler version maps. Float fallback is refused, since
    # a float op would split the graph between TPU and CPU.
    "edgetpu_int8": PTQConfig(mode=Mode.INT8, granularity=Granularity.PER_TENSOR, io=IOType.UINT8),
    "int16x8": PTQConfig(mode=Mode.INT16X8),
}


def get_preset(name: str) -> PTQConfig:
    """Returns a preset by name.

    Raises:
      ConfigError: For an unknown name (the valid ones are listed).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; valid presets are: {', '.join(PRESETS)}") from None


# --------------------------------------------------------------------------- converter helpers


@contextlib.contextmanager
def _quiet_tf():
    """Silences TensorFlow's Python logger around a conversion."""
    logger = logging.getLogger("tensorflow")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def _converter(model: Any):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model)


def _run_converter(converter: Any, what: str) -> bytes:
    try:
        with _quiet_tf():
            return bytes(converter.convert())
    except Exception as e:  # noqa: BLE001 - the converter raises many types
        raise ConversionError(f"TFLite conversion ({what}) failed: {type(e).__name__}: {e}") from e


def convert_fp32(model: Any) -> bytes:
    """The float32 ``.tflite`` of a Keras model (no optimization)."""
    return _run_converter(_converter(model), "fp32")


def convert_dynamic(model: Any, granularity: Granularity = Granularity.PER_CHANNEL) -> bytes:
    """Dynamic-range quantization: int8 weights, float activations."""
    import tensorflow as tf

    c = _converter(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c._experimental_disable_per_channel = granularity is Granularity.PER_TENSOR  # noqa: SLF001
    out = _run_converter(c, "dynamic")
    if granularity is Granularity.PER_TENSOR:
        out = spread_hybrid_depthwise_scales(out)
    return out


def spread_hybrid_depthwise_scales(model: bytes) -> bytes:
    """Gives per-tensor hybrid DEPTHWISE_CONV_2D weights one scale entry per channel.

    LiteRT runs a DEPTHWISE_CONV_2D with float input and int8 weights (dynamic
    range) through its per-channel hybrid kernel only: it reads one weight scale
    per output channel. The converter's per-tensor dynamic-range model stores a
    single scale, so every channel after the first gets a scale read from beyond
    the array and the outputs are garbage (MobileNetV2 on CIFAR-10: 9.6 % top-1
    instead of 79.7 %; the same int8 values dequantized to float give 80.6 %).
    Writing the one scale once per channel (quantized dimension 3) keeps the
    weights per-tensor in value (one step size for the whole tensor) and in a
    layout the kernel reads correctly.

    Args:
      model: A dynamic-range ``.tflite``.

    Returns:
      The model with such weights rewritten (unchanged bytes when there are none).
    """
    from ai_edge_litert import schema_py_generated as schema

    from edge.tflite_model import read_model, write_model

    m = read_model(model)
    changed = 0
    for sub in m.subgraphs:
        for op in sub.operators:
            if m.operatorCodes[op.opcodeIndex].builtinCode != schema.BuiltinOperator.DEPTHWISE_CONV_2D:
                continue
            x, w = sub.tensors[op.inputs[0]], sub.tensors[op.inputs[1]]
            q = w.quantization
            if x.type != schema.TensorType.FLOAT32 or w.type != schema.TensorType.INT8 or q is None:
                continue
            if q.scale is None or len(q.scale) != 1:
                continue
            channels = int(w.shape[3])
            q.scale = np.full(channels, float(q.scale[0]), np.float32)
            q.zeroPoint = np.zeros(channels, np.int64)
            q.quantizedDimension = 3
            changed += 1
    if not changed:
        return model
    log.info("dynamic per-tensor: %d DEPTHWISE_CONV_2D weight scale(s) written once per channel", changed)
    return write_model(m)


def convert_fp16(model: Any) -> bytes:
    """Float16 weights (dequantized to float32 at load time on CPU)."""
    import tensorflow as tf

    c = _converter(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.target_spec.supported_types = [tf.float16]
    return _run_converter(c, "fp16")


def _representative(samples: np.ndarray):
    def gen():
        for i in range(samples.shape[0]):
            yield [samples[i : i + 1]]

    return gen


def calibrate_only(model: Any, samples: np.ndarray) -> bytes:
    """The converter's calibration: float model with recorded activation min/max."""
    import tensorflow as tf

    c = _converter(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = _representative(samples)
    c._experimental_calibrate_only = True  # noqa: SLF001
    return _run_converter(c, "calibration")


def converter_default_int8(
    model: Any, samples: np.ndarray, granularity: Granularity = Granularity.PER_CHANNEL
) -> bytes:
    """The TFLite converter's own full-integer PTQ (min-max ranges), float I/O.

    This is the reference peer: what a user gets from the converter with
    ``optimizations=[DEFAULT]``, a representative dataset and
    ``TFLITE_BUILTINS_INT8``.
    """
    import tensorflow as tf

    c = _converter(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = _representative(samples)
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c._experimental_disable_per_channel = granularity is Granularity.PER_TENSOR  # noqa: SLF001
    return _run_converter(c, "converter default int8")


# --------------------------------------------------------------------------- calibration state


@dataclasses.dataclass
class CalibrationState:
    """Everything calibrated modes share: computed once, reused by every method.

    Attributes:
      calibrated_model: The converter's calibrate-only output.
      stats: Histograms by TFLite tensor name.
      num_samples: Representative samples used.
      seconds: Time spent (converter calibration + statistics).
    """

    calibrated_model: bytes
    stats: dict[str, TensorHistogram]
    num_samples: int
    seconds: float = 0.0


CONVERTER_SAMPLES = 16


def prepare_calibration(
    model: Any,
    samples: np.ndarray,
    *,
    num_bins: int = DEFAULT_NUM_BINS,
    batch_size: int = 32,
    num_threads: int | None = None,
    converter_samples: int = CONVERTER_SAMPLES,
) -> CalibrationState:
    """Runs the converter's calibration (for the model structure) and collects tfq's histograms.

    Args:
      model: The Keras FP32 model (not modified).
      samples: Representative samples (validated again here).
      num_bins: Histogram bins per tensor.
      batch_size: Samples per interpreter call for the histograms.
      num_threads: Interpreter threads.
      converter_samples: Samples fed to the converter's own calibration pass.
        Its recorded ranges are all replaced by tfq's, so a few suffice; they
        only seed the histograms' ranges.

    Raises:
      CalibrationDataError: Bad samples (before any conversion).
      ConversionError: The converter failed.
    """
    input_shape = tuple(int(d) if d is not None else -1 for d in model.input_shape[1:])
    samples = validate_calibration_data(samples, input_shape, what="representative samples")
    t0 = time.perf_counter()
    calibrated = calibrate_only(model, samples[: max(1, converter_samples)])
    stats = collect_statistics(calibrated, samples, num_bins=num_bins, batch_size=batch_size, num_threads=num_threads)
    return CalibrationState(calibrated, stats, samples.shape[0], time.perf_counter() - t0)


# --------------------------------------------------------------------------- ranges in the flatbuffer


def write_ranges(calibrated_model: bytes, ranges: Mapping[str, TensorRange]) -> bytes:
    """Rewrites the recorded min/max of activation tensors.

    Args:
      calibrated_model: The converter's calibrate-only output.
      ranges: New ranges by tensor name.

    Returns:
      The model with ``quantization.min``/``max`` replaced.

    Raises:
      ConversionError: A range names a tensor the model does not have.
    """
    from edge.tflite_model import read_model, write_model

    model = read_model(calibrated_model)
    tensors = model.subgraphs[0].tensors or []
    by_name = {(t.name.decode() if isinstance(t.name, bytes) else str(t.name)): t for t in tensors}
    missing = sorted(set(ranges) - set(by_name))
    if missing:
        raise ConversionError(f"ranges name tensors absent from the calibrated model: {missing[:5]}")
    for name, r in ranges.items():
        q = by_name[name].quantization
        if q is None or q.min is None or len(q.min) != 1:
            raise ConversionError(f"tensor {name!r} carries no recorded range to rewrite")
        q.min = np.array([r.min], np.float32)
        q.max = np.array([r.max], np.float32)
    return write_model(model)


def expected_qparams(lo: float, hi: float, grid: QuantGrid) -> tuple[float, int]:
    """The scale and zero point the quantizer derives from a recorded range.

    See :meth:`tfq.calibration.QuantGrid.qparams` for the rule.
    """
    return grid.qparams(lo, hi)


@dataclasses.dataclass
class RangeCheck:
    """How many calibrated ranges landed in the ``.tflite`` unchanged.

    Attributes:
      landed: Tensor names whose scale and zero point match the range.
      overridden: Tensors whose parameters an op constraint changed:
        ``{"tensor", "op", "expected_scale", "scale", "expected_zero_point", "zero_point"}``.
      missing: Range tensors with no quantized counterpart (kept float or folded away).
    """

    landed: list[str] = dataclasses.field(default_factory=list)
    overridden: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    missing: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "landed": len(self.landed),
            "total": len(self.landed) + len(self.overridden) + len(self.missing),
            "overridden": self.overridden,
            "missing": self.missing,
        }


def _quantized_counterparts(summary: Any, activation_dtype: str) -> dict[str, Any]:
    """Maps calibrated tensor names to the quantized tensors carrying their parameters.

    A tensor keeps its name through quantization, except at the model's edges:
    a float (or uint8) model input is followed by a QUANTIZE op whose output
    carries the input's parameters, and a float (or uint8) model output is
    produced by a DEQUANTIZE (or QUANTIZE) op whose input carries them.
    """
    tensors = {t.index: t for t in summary.tensors if t.subgraph == 0}
    out = {t.name: t for t in tensors.values()}
    sg_in, sg_out = set(summary.subgraph_inputs[0]), set(summary.subgraph_outputs[0])
    for op in summary.ops:
        if op.subgraph != 0 or op.name not in ("QUANTIZE", "DEQUANTIZE"):
            continue
        src, dst = op.inputs[0], op.outputs[0]
        if src in sg_in and tensors[src].dtype != activation_dtype:
            out[tensors[src].name] = tensors[dst]
        if dst in sg_out and tensors[dst].dtype != activation_dtype:
            out[tensors[dst].name] = tensors[src]
    return out


def verify_ranges(model_bytes: bytes, ranges: Mapping[str, TensorRange], grid: QuantGrid) -> RangeCheck:
    """Reads scales and zero points back and compares them with the ranges.

    Args:
      model_bytes: The quantized model.
      ranges: The ranges written before quantization.
      grid: The activation grid of the mode.

    Returns:
      A :class:`RangeCheck`; a scale matches within a relative 1e-5.
    """
    from edge.tflite_model import summarize

    summary = summarize(model_bytes)
    dtype = "INT16" if grid.bits == 16 else "INT8"
    found = _quantized_counterparts(summary, dtype)
    producer = {o: op.name for op in summary.ops if op.subgraph == 0 for o in op.outputs}
    check = RangeCheck()
    for name, r in ranges.items():
        t = found.get(name)
        if t is None or not t.quantization.is_quantized or t.dtype != dtype:
            check.missing.append(name)
            continue
        scale, zp = expected_qparams(r.min, r.max, grid)
        got_scale, got_zp = t.quantization.scales[0], t.quantization.zero_points[0]
        if abs(got_scale - scale) <= 1e-5 * scale and got_zp == zp:
            check.landed.append(name)
        else:
            check.overridden.append({
                "tensor": name, "op": producer.get(t.index, "?"),
                "expected_scale": scale, "scale": got_scale,
                "expected_zero_point": zp, "zero_point": got_zp,
            })
    return check


# --------------------------------------------------------------------------- quantizers


def float_op_names(model_bytes: bytes) -> list[str]:
    """Float compute ops of a model as ``"OP(output tensor)"`` strings.

    Boundary QUANTIZE/DEQUANTIZE conversions of float I/O are not counted
    (see :meth:`edge.tflite_model.ModelSummary.float_ops`).
    """
    from edge.tflite_model import summarize

    s = summarize(model_bytes)
    out = []
    for op in s.float_ops():
        outs = [s.tensor(i, op.subgraph).name for i in op.outputs if i >= 0]
        out.append(f"{op.name}({outs[0] if outs else '?'})")
    return out


def _keep_float_nodes(calibrated_model: bytes, patterns: Sequence[str]) -> list[str]:
    """Op-output tensor names of the calibrated model matching ``keep_float``."""
    from edge.tflite_model import summarize

    if not patterns:
        return []
    s = summarize(calibrated_model)
    aliases = op_aliases(s)
    outputs = [o for op in s.ops if op.subgraph == 0 for o in op.outputs if o >= 0]
    names = [s.tensor(o).name for o in outputs]
    chosen, unused = [], []
    for p in patterns:
        hits = [s.tensor(o).name for o in outputs
                if any(re.search(p, n) for n in (s.tensor(o).name, *aliases.get(o, ())))]
        (chosen.extend(hits) if hits else unused.append(p))
    if unused:
        raise ConfigError(
            f"keep_float pattern(s) {unused} match no op of the model; op output names look like "
            f"{names[:3]}"
        )
    return sorted(set(chosen))


def _tf_dtype(io: IOType):
    import tensorflow as tf

    return {IOType.FLOAT32: tf.float32, IOType.INT8: tf.int8, IOType.UINT8: tf.uint8, IOType.INT16: tf.int16}[io]


def _quantize_int8(patched: bytes, config: PTQConfig, denylist: list[str]) -> bytes:
    """The converter's INT8 path: the MLIR quantizer, as TFLiteConverter calls it."""
    from tensorflow.lite.python import convert

    io = _tf_dtype(config.io)
    per_tensor = config.granularity is Granularity.PER_TENSOR
    try:
        with _quiet_tf():
            return bytes(
                convert.mlir_quantize(
                    patched,
                    disable_per_channel=per_tensor,
                    fully_quantize=False,
                    input_data_type=io,
                    output_data_type=io,
                    denylisted_nodes=denylist or None,
                    disable_per_channel_for_dense_layers=per_tensor,
                )
            )
    except Exception as e:  # noqa: BLE001
        raise ConversionError(f"INT8 quantization failed: {type(e).__name__}: {e}") from e


def _quantize_int16x8(patched: bytes, config: PTQConfig) -> bytes:
    """The converter's INT16x8 path: the legacy quantizer on the recorded ranges.

    ``TFLiteConverter`` routes 16-bit activations through this quantizer (its
    MLIR quantizer handles int8 only). No sample is fed here, so the quantizer
    uses the min/max already in the model -- tfq's ranges.
    """
    from tensorflow.lite.python.optimize import calibrator as _calibrator

    io = np.dtype(np.float32 if config.io is IOType.FLOAT32 else np.int16).num
    try:
        with _quiet_tf():
            cal = _calibrator.Calibrator(patched)
            return bytes(
                cal._calibrator.QuantizeModel(  # noqa: SLF001
                    io, io, bool(config.allow_float_fallback),
                    np.dtype(np.int16).num, np.dtype(np.int64).num,
                    config.granularity is Granularity.PER_TENSOR, False,
                )
            )
    except Exception as e:  # noqa: BLE001
        message = str(e)
        if "Quantized dimension for tensor property" in message and config.granularity is Granularity.PER_TENSOR:
            # The legacy quantizer requires per-channel weights for DEPTHWISE_CONV_2D in 16x8.
            raise ConversionError(
                "INT16x8 with per-tensor weights failed: the TFLite quantizer only quantizes "
                "DEPTHWISE_CONV_2D weights per channel in 16x8 mode (it reports: "
                f"{message.strip()}); use granularity per_channel (--granularity per_channel)"
            ) from e
        if "not yet supported" in message or "Quantization" in message:
            raise FloatFallbackError(
                f"INT16x8 quantization failed: {message.strip()}; pass --allow-float-fallback "
                "(config allow_float_fallback: true) to keep such ops in float"
            ) from e
        raise ConversionError(f"INT16x8 quantization failed: {type(e).__name__}: {message}") from e


@dataclasses.dataclass
class PTQResult:
    """One converted model.

    Attributes:
      name: Artifact name (``int8_kl``).
      config: The resolved config.
      model_bytes: The ``.tflite`` content.
      ranges: Activation ranges written (calibrated modes).
      range_check: How the ranges landed (calibrated modes).
      float_ops: Float compute ops left (``"OP(tensor)"``).
      seconds: Conversion time (excluding the shared calibration).
    """

    name: str
    config: PTQConfig
    model_bytes: bytes
    ranges: dict[str, TensorRange] | None = None
    range_check: RangeCheck | None = None
    float_ops: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def ranges_dict(self) -> dict[str, Any]:
        """Ranges and their check, JSON-ready."""
        return {
            "ranges": {k: v.to_dict() for k, v in (self.ranges or {}).items()},
            "check": self.range_check.to_dict() if self.range_check else None,
        }


def quantize_calibrated(state: CalibrationState, config: PTQConfig, *, name: str | None = None) -> PTQResult:
    """Quantizes with tfq's ranges from a shared :class:`CalibrationState`.

    Raises:
      ConfigError: ``config`` is not a calibrated mode, or ``keep_float``
        matches nothing.
      FloatFallbackError: A full-integer model would keep float ops and
        ``allow_float_fallback`` is off; the ops are named.
      ConversionError: The quantizer failed.
    """
    spec = config.spec
    if not spec.calibrated or spec.grid is None:
        raise ConfigError(f"mode {config.mode.value!r} is not calibrated; use quantize()")
    t0 = time.perf_counter()
    ranges = compute_ranges(state.stats, config.calibration, spec.grid)
    patched = write_ranges(state.calibrated_model, ranges)
    denylist = _keep_float_nodes(state.calibrated_model, config.keep_float)
    if config.mode is Mode.INT8:
        out = _quantize_int8(patched, config, denylist)
    else:
        out = _quantize_int16x8(patched, config)
    float_ops = float_op_names(out)
    unexpected = [f for f in float_ops if not any(f.endswith(f"({n})") for n in denylist)
                  and not f.startswith(("QUANTIZE(", "DEQUANTIZE("))]
    if spec.full_integer and unexpected and not config.allow_float_fallback:
        raise FloatFallbackError(
            f"{len(unexpected)} op(s) cannot be integer-quantized and would stay float: "
            f"{', '.join(unexpected)}. Pass --allow-float-fallback (config allow_float_fallback: true) "
            "to accept them, or keep them float explicitly with keep_float."
        )
    check = verify_ranges(out, ranges, spec.grid)
    if check.overridden:
        log.info("%d of %d ranges were set by op constraints: %s", len(check.overridden), len(ranges),
                 ", ".join(f"{o['tensor']} ({o['op']})" for o in check.overridden[:5]))
    return PTQResult(
        name=name or config.artifact_name(), config=config, model_bytes=out, ranges=ranges,
        range_check=check, float_ops=float_ops, seconds=time.perf_counter() - t0,
    )


def quantize(
    model: Any,
    config: PTQConfig,
    calib_x: np.ndarray | None = None,
    *,
    state: CalibrationState | None = None,
    name: str | None = None,
) -> PTQResult:
    """Converts a Keras model with one config: the one-call entry point.

    Args:
      model: The Keras FP32 model (never modified).
      config: The recipe.
      calib_x: Preprocessed calibration-split images (calibrated modes, unless
        ``state`` is given); ``config.calib_samples`` of them are drawn with
        ``config.seed``.
      state: A calibration computed earlier (shared between methods).
      name: Artifact name (default :meth:`PTQConfig.artifact_name`).

    Returns:
      The :class:`PTQResult`.
    """
    spec = config.spec
    if spec.calibrated:
        if state is None:
            if calib_x is None:
                raise ConfigError(f"mode {config.mode.value!r} needs calibration data")
            input_shape = tuple(int(d) if d is not None else -1 for d in model.input_shape[1:])
            samples = representative_samples(calib_x, config.calib_samples, seed=config.seed, input_shape=input_shape)
            state = prepare_calibration(model, samples, num_bins=config.calibration.num_bins)
        return quantize_calibrated(state, config, name=name)
    t0 = time.perf_counter()
    if config.mode is Mode.FP32:
        out = convert_fp32(model)
    elif config.mode is Mode.DYNAMIC:
        out = convert_dynamic(model, config.granularity)
    elif config.mode is Mode.FP16:
        out = convert_fp16(model)
    else:  # pragma: no cover - every mode is in MODES
        raise ConfigError(f"unhandled mode {config.mode!r}")
    return PTQResult(
        name=name or config.artifact_name(), config=config, model_bytes=out,
        float_ops=float_op_names(out), seconds=time.perf_counter() - t0,
    )


def configs_for(base: PTQConfig, modes: Iterable[Mode], methods: Iterable[CalibrationMethod]) -> list[PTQConfig]:
    """Expands a base config over modes and (for calibrated modes) methods.

    Non-calibrated modes appear once; io types a mode does not support fall
    back to float32 for it.
    """
    methods = list(methods) or [base.calibration.method]
    out = []
    for mode in modes:
        spec = MODES[mode]
        io = base.io if base.io in spec.io_types else IOType.FLOAT32
        keep = base.keep_float if mode is Mode.INT8 else ()
        cfg = base.replace(mode=mode, io=io, keep_float=keep)
        if spec.calibrated:
            out.extend(cfg.replace(calibration=cfg.calibration.replace(method=m)) for m in methods)
        else:
            out.append(cfg)
    return out


# --------------------------------------------------------------------------- choosing a method

#: How tfq picks its best calibration method (pipeline ``--calibration auto`` and the sweep).
SELECTION_RULE = (
    "the calibration method with the highest logit SQNR against the FP32 model on validation images "
    "(ties: validation top-1 agreement); the test split is never used to choose"
)


def selection_key(scores: Mapping[str, Any]) -> tuple[float, float]:
    """Sort key of :data:`SELECTION_RULE` for ``{"val_sqnr_db", "val_agreement"}`` scores."""
    return (float(scores.get("val_sqnr_db", -math.inf)), float(scores.get("val_agreement", -math.inf)))


def select_calibration(
    state: CalibrationState,
    base: PTQConfig,
    methods: Sequence[CalibrationMethod],
    x_val: np.ndarray,
    reference_val: np.ndarray,
) -> tuple[PTQResult, list[dict[str, Any]]]:
    """Quantizes with each method and keeps the best on validation data.

    Args:
      state: Shared calibration.
      base: The recipe (its method is replaced by each of ``methods``).
      methods: Candidates.
      x_val: Preprocessed validation images (never test images).
      reference_val: FP32 logits on ``x_val``.

    Returns:
      ``(best result, scores)`` with one ``{"method", "val_sqnr_db",
      "val_agreement"}`` per candidate, in ``methods`` order.
    """
    from edge import metrics
    from tfq.evaluate import predict_tflite

    if not methods:
        raise ConfigError("select_calibration needs at least one method")
    best, best_key, scores = None, None, []
    for method in methods:
        cfg = base.replace(calibration=base.calibration.replace(method=method))
        result = quantize_calibrated(state, cfg)
        logits = predict_tflite(result.model_bytes, x_val)
        score = {"method": method.value, "val_sqnr_db": metrics.sqnr_db(reference_val, logits),
                 "val_agreement": metrics.agreement(reference_val, logits)}
        scores.append(score)
        log.info("%s: validation SQNR %.2f dB, agreement %.4f", result.name, score["val_sqnr_db"], score["val_agreement"])
        if best_key is None or selection_key(score) > best_key:
            best, best_key = result, selection_key(score)
    return best, scores
