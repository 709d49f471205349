"""Read, validate, summarize and write ``.tflite`` flatbuffers without TensorFlow.

Everything here uses the flatbuffer schema bindings shipped with LiteRT
(``ai_edge_litert.schema_py_generated``) and numpy, so it runs on a device that
has no TensorFlow. It is the shared tool to

* check that bytes are a well-formed ``.tflite`` model *before* they reach a
  C++ interpreter (:func:`validate`), so a truncated or corrupted file becomes
  an :class:`InvalidModelError` instead of a crashed process;
* inspect the precision of every op and tensor of a converted model
  (:func:`summarize` -> :class:`ModelSummary`);
* edit a model through the flatbuffer object API (:func:`read_model` gives a
  mutable ``ModelT``; :func:`write_model` serializes it back), e.g. to rewrite
  calibration ``min``/``max`` values.

Example::

    summary = summarize("model_int8.tflite")
    summary.op_counts()      # {"CONV_2D": 3, "QUANTIZE": 1, ...}
    summary.float_ops()      # [] for a full-integer model
    summary.weight_bits()    # 8.0
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any, Union

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

ModelSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3

# Reverse maps of the schema enums: integer code -> name.
DTYPE_NAMES: dict[int, str] = {
    value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")
}
BUILTIN_OP_NAMES: dict[int, str] = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}

# Storage bits per element of each tensor type; None for types without a fixed width.
DTYPE_BITS: dict[str, int | None] = {
    "FLOAT32": 32, "FLOAT16": 16, "INT32": 32, "UINT8": 8, "INT64": 64, "STRING": None,
    "BOOL": 8, "INT16": 16, "COMPLEX64": 64, "INT8": 8, "FLOAT64": 64, "COMPLEX128": 128,
    "UINT64": 64, "RESOURCE": None, "VARIANT": None, "UINT32": 32, "UINT16": 16, "INT4": 4,
    "BFLOAT16": 16, "INT2": 2, "UINT4": 4, "FLOAT8_E4M3FN": 8, "FLOAT8_E5M2": 8,
}
FLOAT_DTYPES = frozenset({"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"})
# Integer types used for indices, shapes and int32 bias accumulators rather than
# for quantized weights; weight_bits() leaves them out.
INDEX_DTYPES = frozenset({"INT32", "INT64", "UINT32", "UINT64", "BOOL", "STRING"})
_NON_WEIGHT_DTYPES = INDEX_DTYPES | {"RESOURCE", "VARIANT", "COMPLEX64", "COMPLEX128"}

# Buffer 0 is the empty sentinel; Buffer.offset <= 1 means "no external data"
# (the converter writes 1 as a placeholder when it appends data after the flatbuffer).
_MIN_EXTERNAL_OFFSET = 2


class InvalidModelError(ValueError):
    """Raised for a missing, empty, truncated or corrupted ``.tflite`` model."""


# --------------------------------------------------------------------------- loading


def _source_label(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"<{len(source)} bytes>"


def load_bytes(source: ModelSource) -> bytes:
    """Returns the bytes of a model given as a path or as bytes.

    Args:
        source: A path to a ``.tflite`` file, or its content.

    Returns:
        The model content (not yet validated).

    Raises:
        InvalidModelError: If the path does not exist, is not a file, cannot be
            read, or is empty.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise InvalidModelError(f"model file not found: {path!r}")
        if not os.path.isfile(path):
            raise InvalidModelError(f"model path is not a file: {path!r}")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise InvalidModelError(f"cannot read model file {path!r}: {e}") from e
    else:
        raise TypeError(f"model must be a path or bytes, got {type(source).__name__}")
    if not data:
        raise InvalidModelError(f"model is empty (0 bytes): {_source_label(source)}")
    return data


# --------------------------------------------------------------------------- validation


def _check_index(value: int, limit: int, what: str, allow_optional: bool = False) -> None:
    low = -1 if allow_optional else 0
    if not low <= value < limit:
        raise InvalidModelError(f"corrupted model: {what} {value} is out of range [0, {limit})")


def _check_structure(model: schema.ModelT, size: int) -> None:
    """Cross-checks indices and buffer extents of a parsed model."""
    if model.version != SCHEMA_VERSION:
        raise InvalidModelError(
            f"unsupported .tflite schema version {model.version} (expected {SCHEMA_VERSION})"
        )
    if not model.subgraphs:
        raise InvalidModelError("corrupted model: it has no subgraph")
    buffers = model.buffers or []
    if not buffers:
        raise InvalidModelError("corrupted model: it has no buffer table")
    for i, buf in enumerate(buffers):
        if buf.offset >= _MIN_EXTERNAL_OFFSET and buf.offset + buf.size > size:
            raise InvalidModelError(
                f"truncated model: buffer {i} spans bytes [{buf.offset}, {buf.offset + buf.size}) "
                f"but the file has {size} bytes"
            )
    n_codes = len(model.operatorCodes or [])
    for sg_index, sg in enumerate(model.subgraphs):
        tensors = sg.tensors or []
        where = f"subgraph {sg_index}"
        for t_index, t in enumerate(tensors):
            _check_index(t.buffer, len(buffers), f"{where} tensor {t_index} buffer index")
            if t.type not in DTYPE_NAMES:
                raise InvalidModelError(
                    f"corrupted model: {where} tensor {t_index} has unknown type code {t.type}"
                )
            shape = [int(d) for d in (t.shape if t.shape is not None else [])]
            if any(d < 0 for d in shape):
                raise InvalidModelError(
                    f"corrupted model: {where} tensor {t_index} has a negative dimension {shape}"
                )
            _check_constant_size(t, buffers[t.buffer], shape, f"{where} tensor {t_index}")
        for name, indices in (("input", sg.inputs), ("output", sg.outputs)):
            for idx in indices if indices is not None else []:
                _check_index(int(idx), len(tensors), f"{where} {name} tensor")
        for op_index, op in enumerate(sg.operators or []):
            _check_index(op.opcodeIndex, n_codes, f"{where} op {op_index} opcode index")
            for idx in list(op.inputs if op.inputs is not None else []) + list(
                op.outputs if op.outputs is not None else []
            ):
                _check_index(int(idx), len(tensors), f"{where} op {op_index} tensor", True)


def _check_constant_size(t: schema.TensorT, buf: schema.BufferT, shape: list[int], what: str) -> None:
    """Rejects a constant tensor whose buffer is smaller than its shape needs."""
    if t.sparsity is not None:
        return
    n_bytes = _buffer_nbytes(buf)
    if n_bytes == 0:
        return
    bits = DTYPE_BITS.get(DTYPE_NAMES[t.type])
    if bits is None:
        return
    needed = math.ceil(math.prod(shape) * bits / 8)
    if n_bytes < needed:
        raise InvalidModelError(
            f"corrupted model: {what} ({t.name!r}) needs {needed} bytes of data "
            f"but its buffer holds {n_bytes}"
        )


def _buffer_nbytes(buf: schema.BufferT) -> int:
    if buf.data is not None and len(buf.data):
        return len(buf.data)
    if buf.offset >= _MIN_EXTERNAL_OFFSET:
        return int(buf.size)
    return 0


def _parse(data: Any) -> schema.ModelT:
    """Parses and validates ``data`` (bytes-like or mmap); returns the object tree."""
    size = len(data)
    if size < 8:
        raise InvalidModelError(f"not a .tflite model: only {size} bytes")
    if bytes(data[4:8]) != FILE_IDENTIFIER:
        raise InvalidModelError(
            f"not a .tflite model: file identifier is {bytes(data[4:8])!r}, expected {FILE_IDENTIFIER!r}"
        )
    root = int.from_bytes(bytes(data[0:4]), "little")
    if not 8 <= root < size:
        raise InvalidModelError(f"corrupted model: root table offset {root} outside the {size}-byte file")
    try:
        model = schema.ModelT.InitFromPackedBuf(data, 0)
    except InvalidModelError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure means corrupted bytes
        raise InvalidModelError(
            f"truncated or corrupted model: flatbuffer does not parse ({type(e).__name__}: {e})"
        ) from e
    _check_structure(model, size)
    return model


def validate(data: ModelSource) -> None:
    """Checks that ``data`` is a well-formed ``.tflite`` flatbuffer.

    Checks the ``TFL3`` identifier, the root offset, that the schema parses
    without reading outside the data, that every buffer (including data stored
    after the flatbuffer at an offset) lies inside it, that every tensor, op,
    opcode and buffer index is in range, and that no constant tensor's buffer is
    shorter than its shape needs. A path is memory-mapped, so validating a large
    model does not read its weights into memory.

    Args:
        data: Model content, or a path to a ``.tflite`` file.

    Raises:
        InvalidModelError: With a message naming the first problem found.
    """
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if not os.path.isfile(path):
            load_bytes(path)  # raises the precise "not found" / "not a file" error
        if os.path.getsize(path) == 0:
            raise InvalidModelError(f"model is empty (0 bytes): {path}")
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            model = _parse(mm)
            del model  # drop numpy views into the map before it closes
        return
    if len(data) == 0:
        raise InvalidModelError("model is empty (0 bytes)")
    _parse(data)


# --------------------------------------------------------------------------- object API


def _inline_external_buffers(model: schema.ModelT, data: Any) -> None:
    """Copies buffers stored after the flatbuffer (offset/size) into ``data`` fields."""
    for buf in model.buffers or []:
        if buf.offset >= _MIN_EXTERNAL_OFFSET:
            buf.data = np.frombuffer(bytes(data[buf.offset : buf.offset + buf.size]), dtype=np.uint8)
            buf.offset = 0
            buf.size = 0


def read_model(source: ModelSource) -> schema.ModelT:
    """Parses a validated ``.tflite`` model into the mutable flatbuffer object API.

    Buffers stored after the flatbuffer (models written with external offsets)
    are copied inline, so :func:`write_model` produces a self-contained file.
    Numpy fields (buffer data, shapes, operator inputs) are writable views of
    a private copy of the file.

    Args:
        source: A path to a ``.tflite`` file, or its content.

    Returns:
        The ``schema_py_generated.ModelT`` tree; edit it and pass it to
        :func:`write_model`.

    Raises:
        InvalidModelError: If the model is missing or malformed.
    """
    data = bytearray(load_bytes(source))  # writable, so numpy fields of the tree can be edited in place
    model = _parse(data)
    _inline_external_buffers(model, data)
    return model


def write_model(model: schema.ModelT) -> bytes:
    """Serializes a ``ModelT`` into ``.tflite`` bytes with the ``TFL3`` identifier.

    Args:
        model: The object tree, typically from :func:`read_model`.

    Returns:
        The model content; it is validated before being returned.

    Raises:
        InvalidModelError: If the serialized model does not validate (for
            example an index set out of range while editing), or exceeds the
            2 GB flatbuffer limit.
    """
    builder = flatbuffers.Builder(1024)
    try:
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    except Exception as e:  # noqa: BLE001
        raise InvalidModelError(f"cannot serialize model: {type(e).__name__}: {e}") from e
    out = bytes(builder.Output())
    _parse(out)
    return out


# --------------------------------------------------------------------------- summary


def dtype_name(code: int) -> str:
    """Returns the schema name of a tensor type code, e.g. ``9 -> "INT8"``."""
    return DTYPE_NAMES.get(code, f"UNKNOWN_{code}")


def builtin_op_name(code: int) -> str:
    """Returns the schema name of a builtin operator code, e.g. ``3 -> "CONV_2D"``."""
    return BUILTIN_OP_NAMES.get(code, f"UNKNOWN_{code}")


def _decode(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in (values if values is not None else []))


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in (values if values is not None else []))


@dataclasses.dataclass(frozen=True)
class QuantizationRecord:
    """Quantization parameters of one tensor (empty tuples when absent).

    ``real = scale * (q - zero_point)``; several scales mean per-channel
    quantization along ``quantized_dimension``. ``min``/``max`` are the
    calibration ranges the converter stored, when it stored them.
    """

    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0
    min: tuple[float, ...] = ()
    max: tuple[float, ...] = ()

    @property
    def is_quantized(self) -> bool:
        """True when the tensor carries at least one scale."""
        return bool(self.scales)

    @property
    def per_channel(self) -> bool:
        """True when there is more than one scale."""
        return len(self.scales) > 1


@dataclasses.dataclass(frozen=True)
class TensorRecord:
    """One tensor of one subgraph."""

    index: int
    subgraph: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    buffer: int
    is_constant: bool
    is_variable: bool
    nbytes: int
    quantization: QuantizationRecord

    @property
    def is_float(self) -> bool:
        """True for FLOAT32/FLOAT16/FLOAT64/BFLOAT16 tensors."""
        return self.dtype in FLOAT_DTYPES

    @property
    def is_dynamic(self) -> bool:
        """True when a dimension is unknown (-1 in the shape signature)."""
        return any(d < 0 for d in self.shape_signature)

    @property
    def num_elements(self) -> int:
        """Element count of the static shape."""
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class OpRecord:
    """One operator of one subgraph, in execution order."""

    index: int
    subgraph: int
    name: str  # builtin name, e.g. "CONV_2D"; "CUSTOM" for custom ops
    custom_code: str | None
    version: int
    inputs: tuple[int, ...]  # tensor indices; -1 marks an omitted optional input
    outputs: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """What a ``.tflite`` model contains, without running it."""

    size_bytes: int
    description: str
    ops: tuple[OpRecord, ...]
    tensors: tuple[TensorRecord, ...]
    subgraph_inputs: tuple[tuple[int, ...], ...]
    subgraph_outputs: tuple[tuple[int, ...], ...]
    signature_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        table = {(t.subgraph, t.index): t for t in self.tensors}
        object.__setattr__(self, "_by_key", table)

    @property
    def num_subgraphs(self) -> int:
        """Number of subgraphs (control flow bodies are extra subgraphs)."""
        return len(self.subgraph_inputs)

    def tensor(self, index: int, subgraph: int = 0) -> TensorRecord:
        """Returns the record of tensor ``index`` in ``subgraph``."""
        return self._by_key[(subgraph, index)]  # type: ignore[attr-defined]

    def op_tensors(self, op: OpRecord) -> Iterator[TensorRecord]:
        """Yields the (present) input then output tensors of ``op``."""
        for idx in op.inputs + op.outputs:
            if idx >= 0:
                yield self.tensor(idx, op.subgraph)

    def input_tensors(self, subgraph: int = 0) -> list[TensorRecord]:
        """Returns the input tensors of a subgraph (the model inputs for 0)."""
        return [self.tensor(i, subgraph) for i in self.subgraph_inputs[subgraph]]

    def output_tensors(self, subgraph: int = 0) -> list[TensorRecord]:
        """Returns the output tensors of a subgraph (the model outputs for 0)."""
        return [self.tensor(i, subgraph) for i in self.subgraph_outputs[subgraph]]

    def op_counts(self, subgraph: int | None = None) -> dict[str, int]:
        """Counts ops by name (custom ops by their custom code).

        Args:
            subgraph: Only this subgraph; all subgraphs when None.

        Returns:
            ``{"CONV_2D": 3, ...}`` ordered by decreasing count.
        """
        counts = Counter(
            op.custom_code if op.name == "CUSTOM" and op.custom_code else op.name
            for op in self.ops
            if subgraph is None or op.subgraph == subgraph
        )
        return dict(counts.most_common())

    def is_boundary_conversion(self, op: OpRecord) -> bool:
        """True for QUANTIZE/DEQUANTIZE ops that only convert at the model's edges.

        These are: a QUANTIZE whose float input is a subgraph input (the float
        model input converted to int8), a DEQUANTIZE whose float output is a
        subgraph output (the int8 result converted back), and a DEQUANTIZE of a
        constant (weights stored as FLOAT16 or int8 and expanded for a float
        kernel, which is a storage format, not an op computing in float).
        """
        if op.name not in ("QUANTIZE", "DEQUANTIZE"):
            return False
        sg_in = set(self.subgraph_inputs[op.subgraph])
        sg_out = set(self.subgraph_outputs[op.subgraph])
        ins = [i for i in op.inputs if i >= 0]
        if op.name == "QUANTIZE":
            return bool(ins) and all(i in sg_in for i in ins)
        if any(self.tensor(i, op.subgraph).is_constant for i in ins):
            return True
        return bool(op.outputs) and all(o in sg_out for o in op.outputs)

    def float_ops(self) -> list[OpRecord]:
        """Returns the ops that compute in floating point.

        Rule: an op is a float op when any of its input or output tensors
        (constants included, omitted optional inputs ignored) has a floating
        dtype (FLOAT32, FLOAT16, FLOAT64, BFLOAT16) -- except the boundary
        QUANTIZE/DEQUANTIZE conversions described in
        :meth:`is_boundary_conversion`. So a full-integer model with float
        input/output has none; a dynamic-range model lists its hybrid ops
        (float activations, int8 weights); an FP16 model lists every compute op
        (its FLOAT16 weight DEQUANTIZE ops are not listed); an INT16x8 model has
        none. A QUANTIZE/DEQUANTIZE inside the graph that touches float is
        listed: it marks a float island.
        """
        return [
            op
            for op in self.ops
            if not self.is_boundary_conversion(op) and any(t.is_float for t in self.op_tensors(op))
        ]

    def weight_tensors(self) -> list[TensorRecord]:
        """Returns the constant tensors counted as weights by :meth:`weight_bits`.

        Constant tensors that feed an op and whose dtype stores values (float or
        integer types of at most 16 bits, FLOAT16, INT4, ...). INT32/INT64 and
        other index-like types are excluded: they hold shapes, axes and int32
        bias accumulators, not quantized weights.
        """
        used = {(op.subgraph, i) for op in self.ops for i in op.inputs if i >= 0}
        return [
            t
            for t in self.tensors
            if t.is_constant and (t.subgraph, t.index) in used and t.dtype not in _NON_WEIGHT_DTYPES
            and DTYPE_BITS.get(t.dtype)
        ]

    def weight_bits(self) -> float:
        """Average storage bits per weight element over :meth:`weight_tensors`.

        Weighted by element count, so the few float32 biases of a
        dynamic-range model barely move its 8.0. Returns 0.0 when the model has
        no constant weights.
        """
        weights = self.weight_tensors()
        count = sum(t.num_elements for t in weights)
        if count == 0:
            return 0.0
        return sum(t.num_elements * DTYPE_BITS[t.dtype] for t in weights) / count  # type: ignore[operator]

    def dynamic_tensors(self) -> list[TensorRecord]:
        """Returns the tensors with an unknown dimension in their signature."""
        return [t for t in self.tensors if t.is_dynamic]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable view (ops and tensors as lists of dicts)."""
        return {
            "size_bytes": self.size_bytes,
            "description": self.description,
            "signature_keys": list(self.signature_keys),
            "subgraph_inputs": [list(x) for x in self.subgraph_inputs],
            "subgraph_outputs": [list(x) for x in self.subgraph_outputs],
            "op_counts": self.op_counts(),
            "weight_bits": self.weight_bits(),
            "ops": [dataclasses.asdict(op) for op in self.ops],
            "tensors": [dataclasses.asdict(t) for t in self.tensors],
        }


def _quantization(q: schema.QuantizationParametersT | None) -> QuantizationRecord:
    if q is None:
        return QuantizationRecord()
    return QuantizationRecord(
        scales=_floats(q.scale),
        zero_points=_ints(q.zeroPoint),
        quantized_dimension=int(q.quantizedDimension),
        min=_floats(q.min),
        max=_floats(q.max),
    )


def summarize_model(model: schema.ModelT, size_bytes: int = 0) -> ModelSummary:
    """Builds a :class:`ModelSummary` from an already parsed ``ModelT``."""
    buffers = model.buffers or []
    codes = model.operatorCodes or []
    ops: list[OpRecord] = []
    tensors: list[TensorRecord] = []
    sg_inputs, sg_outputs = [], []
    for sg_index, sg in enumerate(model.subgraphs or []):
        sg_inputs.append(_ints(sg.inputs))
        sg_outputs.append(_ints(sg.outputs))
        for t_index, t in enumerate(sg.tensors or []):
            nbytes = _buffer_nbytes(buffers[t.buffer]) if t.buffer < len(buffers) else 0
            shape = _ints(t.shape)
            tensors.append(
                TensorRecord(
                    index=t_index,
                    subgraph=sg_index,
                    name=_decode(t.name) or "",
                    dtype=dtype_name(t.type),
                    shape=shape,
                    shape_signature=_ints(t.shapeSignature) if t.shapeSignature is not None else shape,
                    buffer=int(t.buffer),
                    is_constant=nbytes > 0,
                    is_variable=bool(t.isVariable),
                    nbytes=nbytes,
                    quantization=_quantization(t.quantization),
                )
            )
        for op_index, op in enumerate(sg.operators or []):
            code = codes[op.opcodeIndex]
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            ops.append(
                OpRecord(
                    index=op_index,
                    subgraph=sg_index,
                    name=builtin_op_name(builtin),
                    custom_code=_decode(code.customCode),
                    version=int(code.version),
                    inputs=_ints(op.inputs),
                    outputs=_ints(op.outputs),
                )
            )
    keys = tuple(_decode(s.signatureKey) or "" for s in (model.signatureDefs or []))
    return ModelSummary(
        size_bytes=size_bytes,
        description=_decode(model.description) or "",
        ops=tuple(ops),
        tensors=tuple(tensors),
        subgraph_inputs=tuple(sg_inputs),
        subgraph_outputs=tuple(sg_outputs),
        signature_keys=keys,
    )


def summarize(source: ModelSource) -> ModelSummary:
    """Reads and validates a ``.tflite`` model and summarizes its ops and tensors.

    Args:
        source: A path to a ``.tflite`` file, or its content.

    Returns:
        The :class:`ModelSummary`.

    Raises:
        InvalidModelError: If the model is missing or malformed.
    """
    data = load_bytes(source)
    return summarize_model(_parse(data), size_bytes=len(data))
