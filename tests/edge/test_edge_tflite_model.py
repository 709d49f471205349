"""edge.tflite_model: validation, summaries of every fixture precision, read/edit/write."""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from edge.tflite_model import (InvalidModelError, builtin_op_name, dtype_name, load_bytes, read_model, summarize,
                              validate, write_model)


def _pack_unchecked(model: schema.ModelT) -> bytes:
    """Serializes without write_model's validation, to build deliberately broken files."""
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_enum_names():
    assert builtin_op_name(3) == "CONV_2D"
    assert dtype_name(9) == "INT8" and dtype_name(17) == "INT4" and dtype_name(1) == "FLOAT16"
    assert dtype_name(250) == "UNKNOWN_250"


def test_summary_of_int8_model(model_path):
    s = summarize(model_path("int8"))
    assert s.op_counts() == {"FULLY_CONNECTED": 2, "QUANTIZE": 1, "CONV_2D": 1, "MAX_POOL_2D": 1,
                             "RESHAPE": 1, "DEQUANTIZE": 1}
    assert [op.name for op in s.ops][:2] == ["QUANTIZE", "CONV_2D"]
    (inp,) = s.input_tensors()
    assert inp.dtype == "FLOAT32" and inp.shape == (1, 8, 8, 1) and inp.shape_signature == (-1, 8, 8, 1)
    assert inp.is_dynamic and not inp.is_constant
    conv = next(op for op in s.ops if op.name == "CONV_2D")
    weights = s.tensor(conv.inputs[1])
    assert weights.dtype == "INT8" and weights.is_constant
    assert weights.quantization.per_channel and len(weights.quantization.scales) == 8
    assert weights.quantization.quantized_dimension == 0
    assert s.tensor(conv.inputs[2]).dtype == "INT32"  # bias
    act = s.tensor(conv.inputs[0])
    assert act.dtype == "INT8" and len(act.quantization.scales) == 1 and act.quantization.zero_points


@pytest.mark.parametrize("name, float_op_names, bits", [
    ("float32", ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED"], 32.0),
    ("fp16", ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED"], 16.0),
    ("int8", [], 8.0),
    ("int8_uint8io", [], 8.0),
    ("int16x8", [], 8.0),
    ("int16x8_int16io", [], 8.0),
])
def test_float_ops_and_weight_bits_per_precision(model_path, name, float_op_names, bits):
    s = summarize(model_path(name))
    assert [op.name for op in s.float_ops()] == float_op_names
    assert s.weight_bits() == pytest.approx(bits)


def test_dynamic_range_model_is_hybrid(model_path):
    s = summarize(model_path("dynamic"))
    fc = [op for op in s.ops if op.name == "FULLY_CONNECTED"]
    assert all(op in s.float_ops() for op in fc)            # float activations
    assert s.tensor(fc[0].inputs[1]).dtype == "INT8"         # int8 weights
    assert 8.0 < s.weight_bits() < 32.0                      # small conv kernel stays float32


def test_int16_io_and_dynamic_shapes(model_path):
    (inp,) = summarize(model_path("int16x8_int16io")).input_tensors()
    assert inp.dtype == "INT16" and inp.quantization.zero_points == (0,)
    dyn = summarize(model_path("dynamic_hw"))
    assert dyn.input_tensors()[0].shape_signature == (-1, -1, -1, 1)
    assert dyn.dynamic_tensors()
    assert dyn.op_counts() == {"CONV_2D": 1, "MEAN": 1, "FULLY_CONNECTED": 1}


def test_summary_to_dict_is_json_ready(model_path):
    import json

    d = summarize(model_path("int8")).to_dict()
    text = json.dumps(d)
    assert '"CONV_2D"' in text and d["weight_bits"] == 8.0


def test_round_trip_and_calibration_edit(model_path):
    original = load_bytes(model_path("int8"))
    model = read_model(original)
    out = write_model(model)
    assert out[4:8] == b"TFL3"
    a, b = summarize(original), summarize(out)
    assert a.op_counts() == b.op_counts()
    assert [t.quantization for t in a.tensors] == [t.quantization for t in b.tensors]
    # Rewrite calibration ranges the way a calibration stage would.
    t = model.subgraphs[0].tensors[a.input_tensors()[0].index]
    t.quantization = t.quantization or schema.QuantizationParametersT()
    t.quantization.min, t.quantization.max = [-1.5], [2.5]
    edited = summarize(write_model(model)).input_tensors()[0].quantization
    assert (edited.min, edited.max) == ((-1.5,), (2.5,))


def test_int4_weights_are_reported(model_path):
    model = read_model(model_path("int8"))
    s = summarize(model_path("int8"))
    fc = [op for op in s.ops if op.name == "FULLY_CONNECTED"][0]
    model.subgraphs[0].tensors[fc.inputs[1]].type = schema.TensorType.INT4
    s4 = summarize(write_model(model))
    assert s4.tensor(fc.inputs[1]).dtype == "INT4"
    assert s4.weight_bits() < 8.0


def test_validate_rejects_missing_empty_and_garbage(tmp_path, model_path):
    with pytest.raises(InvalidModelError, match="not found"):
        validate(tmp_path / "nope.tflite")
    (tmp_path / "empty.tflite").write_bytes(b"")
    with pytest.raises(InvalidModelError, match="empty"):
        validate(tmp_path / "empty.tflite")
    with pytest.raises(InvalidModelError, match="empty"):
        validate(b"")
    with pytest.raises(InvalidModelError, match="identifier"):
        validate(b"\x10\x00\x00\x00ABCD" + bytes(100))
    with pytest.raises(InvalidModelError):
        validate(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidModelError, match="not a file"):
        validate(tmp_path)


@pytest.mark.parametrize("keep", [8, 100, 0.5, -1])
def test_validate_rejects_truncated_files(tmp_path, model_path, keep):
    data = load_bytes(model_path("int8"))
    cut = data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep]
    path = tmp_path / "cut.tflite"
    path.write_bytes(cut)
    with pytest.raises(InvalidModelError, match="truncated|corrupted|not a .tflite"):
        validate(path)
    with pytest.raises(InvalidModelError):
        validate(cut)


def test_validate_rejects_out_of_range_indices(model_path):
    model = read_model(model_path("int8"))
    model.subgraphs[0].operators[1].inputs[0] = 999
    with pytest.raises(InvalidModelError, match="tensor 999 is out of range"):
        validate(_pack_unchecked(model))
    model = read_model(model_path("int8"))
    model.subgraphs[0].tensors[3].buffer = 10_000
    with pytest.raises(InvalidModelError, match="buffer index"):
        validate(_pack_unchecked(model))
    with pytest.raises(InvalidModelError):
        write_model(model)  # write_model validates what it produces


def test_validate_rejects_short_constant_and_external_buffer_past_end(model_path):
    model = read_model(model_path("int8"))
    s = summarize(model_path("int8"))
    weights = s.tensor([op for op in s.ops if op.name == "CONV_2D"][0].inputs[1])
    model.buffers[weights.buffer].data = model.buffers[weights.buffer].data[:10]
    with pytest.raises(InvalidModelError, match="needs 72 bytes"):
        validate(_pack_unchecked(model))
    model = read_model(model_path("int8"))
    model.buffers[weights.buffer].data = None
    model.buffers[weights.buffer].offset = 10**9
    model.buffers[weights.buffer].size = 72
    with pytest.raises(InvalidModelError, match="truncated model: buffer"):
        validate(_pack_unchecked(model))
