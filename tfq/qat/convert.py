"""Convert a tfq QAT model to ``.tflite``: INT8 everywhere except the float layers.

What the stock converter can and cannot do (TF 2.21, checked by the tests):

* A fake-quant model converts to full-integer INT8 with
  ``optimizations=[DEFAULT]``; every range comes from the trained quantizers.
* Float layers are the hard part. In its default QAT mode the converter
  quantizes *any* op whose input and output carry fake quant, inventing the
  weight range of a layer that was meant to stay float (a keep-float Conv
  between INT8 layers came out as an INT8 ``CONV_2D``). In QAT mode it also
  ignores ``target_spec.supported_types=[tf.float16]``, so float weights stay
  FLOAT32. There is no converter option that gives "QAT INT8 + FP16 weights
  for these layers" in one pass.

So the conversion is two documented steps:

1. Convert with ``_experimental_low_bit_qat=True``. This (private) switch only
   tells the converter not to infer ranges that no fake quant provides
   (``disable_infer_tensor_range``) and to take the bit width from the fake
   quant ops (8 here). For an all-INT8 model the result is identical to the
   default mode; for float layers the converter now leaves their weights
   FLOAT32 -- but wires their INT8 neighbours straight to them without
   DEQUANTIZE/QUANTIZE, which no runtime accepts.
2. :func:`make_float_islands_explicit` rewrites the flatbuffer the way TFLite's
   own FP16 models look: every op that computes in float (FLOAT32 weights or
   FLOAT32 inputs) gets a ``DEQUANTIZE`` on each INT8 input, writes a FLOAT32
   result that a ``QUANTIZE`` turns back into the original INT8 tensor, and
   its FLOAT32 weights are stored as FLOAT16 constants expanded by
   ``DEQUANTIZE`` at load time.

:func:`convert_to_tflite` then checks the result: without keep-float layers
there must be no float op at all; with them, every float op must belong to a
keep-float layer and every keep-float layer with weights must be float.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterable

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from edge import tflite_model

__all__ = [
    "AgreementReport",
    "ConversionError",
    "ConversionReport",
    "check_agreement",
    "convert_to_tflite",
    "layers_of_tensor",
    "make_float_islands_explicit",
]

log = logging.getLogger(__name__)

_FLOAT32 = schema.TensorType.FLOAT32
_FLOAT16 = schema.TensorType.FLOAT16
_QUANTIZED_ACTIVATION_TYPES = (schema.TensorType.INT8, schema.TensorType.UINT8, schema.TensorType.INT16)


class ConversionError(RuntimeError):
    """The converted model does not have the expected precision layout."""


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert_to_tflite` produced.

    Attributes:
      op_counts: Ops by name.
      float_ops: ``"OP_NAME <- layer, layer"`` for each op computing in float.
      fp16_weights: Names of the weight tensors stored as FLOAT16.
      int8_weights: Names of the INT8 weight tensors.
      inserted_ops: QUANTIZE/DEQUANTIZE ops added around float ops.
      size_bytes: Size of the model.
    """

    op_counts: dict[str, int]
    float_ops: list[str]
    fp16_weights: list[str]
    int8_weights: list[str]
    inserted_ops: int
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- names


def layers_of_tensor(tensor_name: str) -> list[str]:
    """Keras layer names in a TFLite tensor name.

    The converter names a tensor after the TF ops it fuses, ``;``-separated,
    each ``<model>/<layer>/<op>``; TFMOT wrappers prefix the layer with
    ``quant_``. ``"model/quant_r1/Relu;model/quant_c1/Conv2D"`` gives
    ``["r1", "c1"]``.
    """
    out = []
    for part in tensor_name.split(";"):
        pieces = part.split("/")
        if len(pieces) < 3:
            continue
        layer = pieces[1]
        if layer.startswith("quant_"):
            layer = layer[len("quant_"):]
        if layer not in out:
            out.append(layer)
    return out


# --------------------------------------------------------------------------- flatbuffer rewrite


def _opcode_index(model: schema.ModelT, builtin: int, min_version: int) -> int:
    codes = model.operatorCodes or []
    for i, code in enumerate(codes):
        if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) == builtin and not code.customCode:
            code.version = max(int(code.version), min_version)
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = min_version
    codes.append(code)
    model.operatorCodes = codes
    return len(codes) - 1


def _is_constant(model: schema.ModelT, tensor: schema.TensorT) -> bool:
    buf = model.buffers[tensor.buffer]
    return buf.data is not None and len(buf.data) > 0


def _new_tensor(sg: schema.SubGraphT, like: schema.TensorT, name: str, dtype: int, buffer: int = 0) -> int:
    t = schema.TensorT()
    t.shape = None if like.shape is None else np.array(like.shape, dtype=np.int32)
    t.shapeSignature = None if like.shapeSignature is None else np.array(like.shapeSignature, dtype=np.int32)
    t.type = dtype
    t.buffer = buffer
    t.name = name
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _new_op(opcode: int, inputs: list[int], outputs: list[int]) -> schema.OperatorT:
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = np.array(inputs, dtype=np.int32)
    op.outputs = np.array(outputs, dtype=np.int32)
    return op


def _name(tensor: schema.TensorT) -> str:
    name = tensor.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def make_float_islands_explicit(model: schema.ModelT, *, fp16_weights: bool = True) -> int:
    """Makes every float op of a low-bit-QAT conversion runnable, in place.

    An op computes in float when one of its inputs (a constant weight or an
    activation) is FLOAT32. For such an op: INT8 activation inputs get a
    ``DEQUANTIZE`` (one per tensor, shared), INT8 outputs become FLOAT32
    results followed by a ``QUANTIZE`` into the original tensor, and FLOAT32
    constants become FLOAT16 constants expanded by ``DEQUANTIZE``
    (``fp16_weights``). QUANTIZE/DEQUANTIZE ops themselves are left alone.

    Args:
      model: The model (object API, e.g. from :func:`edge.tflite_model.read_model`).
      fp16_weights: Store the float ops' constants as FLOAT16.

    Returns:
      The number of ops inserted.
    """
    ops_inserted = 0
    quantize = dequantize = None
    for sg in model.subgraphs:
        names = {int(i): tflite_model.builtin_op_name(max(int(c.builtinCode), int(c.deprecatedBuiltinCode)))
                 for i, c in enumerate(model.operatorCodes or [])}
        new_ops: list[schema.OperatorT] = []
        dequantized: dict[int, int] = {}  # int8 tensor -> its float32 copy
        fp16_done: set[int] = set()
        for op in sg.operators or []:
            op_name = names.get(int(op.opcodeIndex), "")
            inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
            outputs = [int(o) for o in (op.outputs if op.outputs is not None else [])]
            if op_name in ("QUANTIZE", "DEQUANTIZE"):
                new_ops.append(op)
                continue
            present = [i for i in inputs if i >= 0]
            if not any(sg.tensors[i].type == _FLOAT32 for i in present):
                new_ops.append(op)  # an integer op
                continue
            before: list[schema.OperatorT] = []
            after: list[schema.OperatorT] = []
            for pos, i in enumerate(inputs):
                if i < 0:
                    continue
                t = sg.tensors[i]
                if _is_constant(model, t):
                    if t.type == _FLOAT32 and fp16_weights and i not in fp16_done:
                        if dequantize is None:
                            dequantize = _opcode_index(model, schema.BuiltinOperator.DEQUANTIZE, 3)
                        # A new buffer: the converter shares identical buffers between tensors
                        # (e.g. an all-zero float bias and an all-zero int32 bias).
                        buf = model.buffers[t.buffer]
                        values = np.frombuffer(np.asarray(buf.data, dtype=np.uint8).tobytes(), dtype=np.float32)
                        fp16 = schema.BufferT()
                        fp16.data = np.frombuffer(values.astype(np.float16).tobytes(), dtype=np.uint8)
                        model.buffers.append(fp16)
                        const = _new_tensor(sg, t, _name(t) + "_fp16", _FLOAT16, buffer=len(model.buffers) - 1)
                        t.buffer = 0  # now the (non-constant) DEQUANTIZE result
                        before.append(_new_op(dequantize, [const], [i]))
                        fp16_done.add(i)
                    continue
                if t.type in _QUANTIZED_ACTIVATION_TYPES:
                    if i not in dequantized:
                        if dequantize is None:
                            dequantize = _opcode_index(model, schema.BuiltinOperator.DEQUANTIZE, 3)
                        f = _new_tensor(sg, t, _name(t) + "/dequantized", _FLOAT32)
                        before.append(_new_op(dequantize, [i], [f]))
                        dequantized[i] = f
                    inputs[pos] = dequantized[i]
            for pos, o in enumerate(outputs):
                t = sg.tensors[o]
                if t.type in _QUANTIZED_ACTIVATION_TYPES:
                    if quantize is None:
                        quantize = _opcode_index(model, schema.BuiltinOperator.QUANTIZE, 2)
                    f = _new_tensor(sg, t, _name(t) + "/float", _FLOAT32)
                    outputs[pos] = f
                    # Later float consumers DEQUANTIZE ``o``: they see the quantized
                    # value, as in the Keras model where this output is fake-quantized.
                    after.append(_new_op(quantize, [f], [o]))
            op.inputs = np.array(inputs, dtype=np.int32)
            op.outputs = np.array(outputs, dtype=np.int32)
            new_ops.extend(before + [op] + after)
            ops_inserted += len(before) + len(after)
        sg.operators = new_ops
    _drop_unused_buffers(model)
    return ops_inserted


def _drop_unused_buffers(model: schema.ModelT) -> None:
    """Empties buffers no tensor refers to any more (indices stay valid)."""
    used = {int(t.buffer) for sg in model.subgraphs for t in (sg.tensors or [])}
    for i, buf in enumerate(model.buffers):
        if i and i not in used and buf.data is not None:
            buf.data = None


# --------------------------------------------------------------------------- conversion


def _float_ops_by_layer(summary: tflite_model.ModelSummary) -> list[tuple[str, list[str]]]:
    """Float compute ops with the Keras layers they belong to.

    An op is attributed through its output tensor names and its weights (a
    constant, or the DEQUANTIZE of a FLOAT16 constant); a model output is
    named ``StatefulPartitionedCall:0`` and carries no layer name.
    """
    producer = {}
    for op in summary.ops:
        for o in op.outputs:
            producer[(op.subgraph, o)] = op
    out = []
    for op in summary.float_ops():
        if op.name in ("QUANTIZE", "DEQUANTIZE"):
            continue  # conversions at island borders and FP16 weight expansion, not compute
        tensors = [summary.tensor(i, op.subgraph) for i in op.outputs]
        for i in op.inputs:
            if i < 0:
                continue
            t = summary.tensor(i, op.subgraph)
            src = producer.get((op.subgraph, i))
            if t.is_constant or (src is not None and src.name == "DEQUANTIZE" and all(
                summary.tensor(j, op.subgraph).is_constant for j in src.inputs if j >= 0
            )):
                tensors.append(t)
        layers: list[str] = []
        for t in tensors:
            for layer in layers_of_tensor(t.name):
                if layer not in layers:
                    layers.append(layer)
        out.append((op.name, layers))
    return out


def convert_to_tflite(
    qat_model: Any,
    *,
    float_layers: Iterable[str] = (),
    weighted_float_layers: Iterable[str] | None = None,
) -> tuple[bytes, ConversionReport]:
    """Converts a tfq QAT model to an INT8 ``.tflite`` with FP16 float layers.

    Args:
      qat_model: The fake-quant tf_keras model.
      float_layers: Names (in the FP32 model) of the layers kept float.
      weighted_float_layers: The subset with weights, each of which must end up
        as a float op; None checks nothing in that direction.

    Returns:
      The model bytes and a :class:`ConversionReport`.

    Raises:
      ConversionError: A float op that belongs to no keep-float layer (e.g. a
        layer that lost its fake quant), or a keep-float layer with weights
        that was quantized anyway.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter._experimental_low_bit_qat = True  # see the module docstring
    raw = converter.convert()

    model = tflite_model.read_model(raw)
    inserted = make_float_islands_explicit(model, fp16_weights=True)
    data = tflite_model.write_model(model)
    summary = tflite_model.summarize(data)

    float_layers = set(float_layers)
    float_ops = _float_ops_by_layer(summary)
    unexpected = [f"{name} (tensors of {', '.join(layers) or '?'})" for name, layers in float_ops
                  if not float_layers.intersection(layers)]
    if unexpected:
        raise ConversionError(
            "the converted model computes in float where INT8 was expected: "
            + "; ".join(unexpected)
            + (f"; keep-float layers are {sorted(float_layers)}" if float_layers else "")
        )
    if weighted_float_layers is not None:
        covered = {layer for _, layers in float_ops for layer in layers}
        missing = sorted(set(weighted_float_layers) - covered)
        if missing:
            raise ConversionError(f"keep-float layers {missing} were not kept float by the converter")

    weights = summary.weight_tensors()
    report = ConversionReport(
        op_counts=summary.op_counts(),
        float_ops=[f"{name} <- {', '.join(layers)}" for name, layers in float_ops],
        fp16_weights=[t.name for t in weights if t.dtype == "FLOAT16"],
        int8_weights=[t.name for t in weights if t.dtype == "INT8"],
        inserted_ops=inserted,
        size_bytes=len(data),
    )
    log.info(
        "converted: %d bytes, %d ops, %d float ops, %d FP16 weight tensors, %d inserted QUANTIZE/DEQUANTIZE",
        report.size_bytes, sum(report.op_counts.values()), len(report.float_ops),
        len(report.fp16_weights), inserted,
    )
    return data, report


# --------------------------------------------------------------------------- agreement


@dataclasses.dataclass(frozen=True)
class AgreementReport:
    """Keras fake-quant model vs ``.tflite`` on the same inputs.

    Attributes:
      samples: Number of inputs compared.
      top1_agreement: Fraction with the same arg-max.
      max_abs_diff: Largest absolute logit difference.
      mean_abs_diff: Mean absolute logit difference.
      output_scale: Quantization step of the ``.tflite`` output (0 when float).
      max_diff_steps: ``max_abs_diff`` in output steps (None when float).
      tolerance: The logit tolerance applied.
      sqnr_db: Signal-to-quantization-noise ratio of the ``.tflite`` logits
        against the Keras ones.
      passed: ``top1_agreement >= min_agreement`` and ``max_abs_diff <= tolerance``.
    """

    samples: int
    top1_agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    output_scale: float
    max_diff_steps: float | None
    tolerance: float
    sqnr_db: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def output_scale(tflite_bytes: bytes) -> float:
    """The quantization step of the tensor feeding the model output (0 if float)."""
    summary = tflite_model.summarize(tflite_bytes)
    out = summary.output_tensors()[0]
    if out.quantization.scales:
        return float(out.quantization.scales[0])
    for op in summary.ops:  # a float output produced by a final DEQUANTIZE
        if op.name == "DEQUANTIZE" and out.index in op.outputs:
            src = summary.tensor(op.inputs[0], op.subgraph)
            if src.quantization.scales:
                return float(src.quantization.scales[0])
    return 0.0


def check_agreement(
    qat_model: Any,
    tflite_bytes: bytes,
    x: np.ndarray,
    *,
    min_agreement: float = 0.99,
    max_steps: float = 3.0,
    rel_tolerance: float = 0.05,
    batch_size: int = 64,
) -> AgreementReport:
    """Compares the Keras fake-quant model and the ``.tflite`` on ``x``.

    INT8 kernels round differently from the float simulation (TFLite's MEAN
    and requantization multipliers), so an intermediate tensor can be one step
    off and a logit two; three steps is the default tolerance.

    Logits are "close" when the largest difference is at most ``max_steps``
    output quantization steps, or, for a float output (a keep-float
    classifier), ``rel_tolerance`` of the logits' peak-to-peak spread over ``x``.

    Args:
      qat_model: The fake-quant Keras model.
      tflite_bytes: Its conversion.
      x: Preprocessed float inputs.
      min_agreement: Required top-1 agreement.
      max_steps: Tolerance in output quantization steps.
      rel_tolerance: Tolerance for float outputs, relative to the logit spread.
      batch_size: Inference batch size.

    Returns:
      The report (``passed`` tells whether both criteria hold).
    """
    from edge.litert import TFLiteModel
    from edge.metrics import agreement, sqnr_db

    keras_out = np.asarray(qat_model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
    tfl_out = TFLiteModel.from_bytes(tflite_bytes).predict(x, batch_size=batch_size)
    diff = np.abs(keras_out - tfl_out)
    scale = output_scale(tflite_bytes)
    spread = float(np.ptp(keras_out)) if keras_out.size else 1.0
    tolerance = max_steps * scale if scale > 0 else rel_tolerance * (spread or 1.0)
    # 1e-6 absorbs float32 noise on the exact grid.
    tolerance += 1e-6
    top1 = float(agreement(keras_out, tfl_out))
    max_abs = float(diff.max()) if diff.size else 0.0
    report = AgreementReport(
        samples=int(x.shape[0]),
        top1_agreement=top1,
        max_abs_diff=max_abs,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        output_scale=scale,
        max_diff_steps=(max_abs / scale) if scale > 0 else None,
        tolerance=float(tolerance),
        sqnr_db=float(sqnr_db(keras_out, tfl_out)),
        passed=top1 >= min_agreement and max_abs <= tolerance,
    )
    log.info(
        "Keras vs .tflite on %d samples: top-1 agreement %.4f, max |logit diff| %.4g (tolerance %.4g)",
        report.samples, report.top1_agreement, report.max_abs_diff, report.tolerance,
    )
    return report
