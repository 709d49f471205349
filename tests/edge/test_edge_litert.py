"""edge.litert: the interpreter factory, backends, (de)quantization and TFLiteModel."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

import edge.litert as litert
from edge.litert import (DelegateError, InterpreterError, InvalidModelError, TFLiteModel, delegate_coverage,
                        dequantize_output, interpreter_backend, make_interpreter, quantize_input)


@pytest.fixture(scope="module")
def eval_x(eval_npz):
    data = np.load(eval_npz)
    return data["images"].astype(np.float32) / 255.0, data["labels"]


def _detail(dtype, scale, zp, axis=0):
    return {"dtype": dtype, "quantization": (scale, zp),
            "quantization_parameters": {"scales": np.atleast_1d(np.asarray(scale, np.float32)),
                                        "zero_points": np.atleast_1d(np.asarray(zp, np.int32)),
                                        "quantized_dimension": axis}}


def test_backend_is_ai_edge_litert():
    assert interpreter_backend() == {"name": "ai_edge_litert", "version": "2.3.0",
                                     "module": "ai_edge_litert.interpreter"}


def test_quantize_input_by_hand():
    x = np.array([-100.0, 0.0, 0.25, 0.75, 1.0, -0.25, 100.0])
    # x / 0.5 = [-200, 0, 0.5, 1.5, 2, -0.5, 200]; half away from zero; + 10; clip to int8.
    q = quantize_input(x, _detail(np.int8, 0.5, 10))
    assert q.dtype == np.int8
    assert q.tolist() == [-128, 10, 11, 12, 12, 9, 127]
    q8 = quantize_input(np.array([0.0, 63.75, 127.5, -1.0]), _detail(np.uint8, 0.5, 0))
    assert q8.tolist() == [0, 128, 255, 0]  # 127.5 rounds away from zero to 128
    q16 = quantize_input(np.array([0.001, -2.0]), _detail(np.int16, 2.0**-14, 0))
    assert q16.dtype == np.int16 and q16.tolist() == [16, -32768]
    f = quantize_input(np.array([1.5]), {"dtype": np.float32, "quantization": (0.0, 0)})
    assert f.dtype == np.float32 and f.tolist() == [1.5]


def test_quantize_per_channel_input():
    d = _detail(np.int8, [1.0, 0.5], [0, 1], axis=1)
    q = quantize_input(np.array([[1.0, 1.0]]), d)
    assert q.tolist() == [[1, 3]]


def test_dequantize_output_by_hand():
    y = dequantize_output(np.array([-128, 0, 12], np.int8), _detail(np.int8, 0.5, 10))
    assert y.dtype == np.float32 and y.tolist() == [-69.0, -5.0, 1.0]
    assert dequantize_output(np.array([1.5], np.float32), {"dtype": np.float32,
                                                           "quantization": (0.0, 0)}).tolist() == [1.5]


@pytest.mark.parametrize("name", ["float32", "dynamic", "fp16", "int8", "int8_uint8io", "int8_fixed_batch",
                                  "int16x8", "int16x8_int16io"])
def test_predict_matches_float_reference_for_every_io_type(model_path, eval_x, name):
    x, labels = eval_x
    ref = TFLiteModel.from_path(model_path("float32"), num_threads=1).predict(x[:20], batch_size=8)
    out = TFLiteModel.from_path(model_path(name), num_threads=1).predict(x[:20], batch_size=8)
    assert out.shape == (20, 10) and out.dtype == np.float32
    assert np.abs(out - ref).max() < 0.25 * np.abs(ref).max()
    assert (out.argmax(1) == labels[:20]).mean() >= 0.9


def test_uint8_io_equals_float_io_int8(model_path, eval_x):
    x, _ = eval_x
    a = TFLiteModel.from_path(model_path("int8")).predict(x)
    b = TFLiteModel.from_path(model_path("int8_uint8io")).predict(x)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_fixed_batch_model_pads_the_last_chunk(model_path, eval_x):
    x, _ = eval_x
    m = TFLiteModel.from_path(model_path("int8_fixed_batch"))
    assert m.fixed_batch == 1
    out = m.predict(x[:5], batch_size=64)
    ref = np.concatenate([m.predict(x[i:i + 1]) for i in range(5)])
    np.testing.assert_array_equal(out, ref)


def test_dynamic_spatial_model_resizes(model_path):
    m = TFLiteModel.from_path(model_path("dynamic_hw"))
    rng = np.random.default_rng(0)
    assert m.predict(rng.random((3, 8, 8, 1), np.float32)).shape == (3, 10)
    assert m.predict(rng.random((2, 12, 16, 1), np.float32)).shape == (2, 10)


def test_predict_rejects_wrong_shape_with_clear_message(model_path):
    m = TFLiteModel.from_path(model_path("int8"))
    with pytest.raises(ValueError, match=r"expects \(-1, 8, 8, 1\).*dimension 1 is 9"):
        m.predict(np.zeros((2, 9, 8, 1), np.float32))
    with pytest.raises(ValueError, match="rank"):
        m.predict(np.zeros((2, 8, 8), np.float32))


def test_xnnpack_switch_through_op_resolver(model_path):
    on = delegate_coverage(make_interpreter(model_path("float32"), num_threads=1))
    off = delegate_coverage(make_interpreter(model_path("float32"), num_threads=1, use_xnnpack=False))
    assert (on["delegated_ops"], on["total_ops"], on["delegate_nodes"]) == (5, 5, 1)
    assert (off["delegated_ops"], off["delegate_nodes"]) == (0, 0)
    assert off["cpu_ops"] == {"CONV_2D": 1, "MAX_POOL_2D": 1, "RESHAPE": 1, "FULLY_CONNECTED": 2}


def test_partial_delegation_is_counted(model_path):
    cov = delegate_coverage(make_interpreter(model_path("int8_uint8io")))
    assert (cov["delegated_ops"], cov["total_ops"], cov["cpu_ops"]) == (5, 7, {"QUANTIZE": 2})


def test_make_interpreter_from_bytes_and_preserve_all_tensors(model_path):
    data = open(model_path("int8"), "rb").read()
    interp = make_interpreter(data, preserve_all_tensors=True, use_xnnpack=False)
    interp.set_tensor(interp.get_input_details()[0]["index"], np.zeros((1, 8, 8, 1), np.float32))
    interp.invoke()
    assert interp.get_tensor(9).shape == (1, 8, 8, 8)  # an intermediate activation stays readable


def test_invalid_models_raise_invalid_model_error(tmp_path, model_path):
    with pytest.raises(InvalidModelError, match="not found"):
        make_interpreter(tmp_path / "missing.tflite")
    (tmp_path / "empty.tflite").write_bytes(b"")
    with pytest.raises(InvalidModelError, match="empty"):
        TFLiteModel.from_path(tmp_path / "empty.tflite")
    data = open(model_path("int8"), "rb").read()
    with pytest.raises(InvalidModelError):
        TFLiteModel.from_bytes(data[: len(data) // 3])
    assert issubclass(InvalidModelError, ValueError)


def test_bad_arguments(model_path):
    with pytest.raises(ValueError, match="num_threads"):
        make_interpreter(model_path("int8"), num_threads=0)
    with pytest.raises(ValueError, match="unknown interpreter backend"):
        make_interpreter(model_path("int8"), backend="onnx")
    with pytest.raises(InterpreterError, match="not installed"):
        interpreter_backend("tflite_runtime")


def test_missing_delegate_library_raises_delegate_error(model_path, tmp_path):
    with pytest.raises(DelegateError, match="cannot load delegate library"):
        make_interpreter(model_path("int8"), delegates=[str(tmp_path / "libnothing.so")])
    with pytest.raises(DelegateError):
        litert.load_delegate(tmp_path / "libnothing.so", {"device": "usb"})


def test_falls_back_to_tflite_runtime_when_litert_is_absent(monkeypatch, model_path):
    """tflite_runtime double: a module exposing LiteRT's classes under tflite_runtime's name."""
    import ai_edge_litert.interpreter as real

    pkg = types.ModuleType("tflite_runtime")
    pkg.__version__ = "2.14.0"
    mod = types.ModuleType("tflite_runtime.interpreter")
    mod.Interpreter, mod.load_delegate, mod.OpResolverType = real.Interpreter, real.load_delegate, real.OpResolverType
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import now fails
    monkeypatch.setitem(sys.modules, "tflite_runtime", pkg)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", mod)
    monkeypatch.setattr(litert, "_RESOLVED", {})
    assert interpreter_backend() == {"name": "tflite_runtime", "version": "2.14.0",
                                     "module": "tflite_runtime.interpreter"}
    out = TFLiteModel.from_path(model_path("int8"), use_xnnpack=False).predict(np.zeros((2, 8, 8, 1), np.float32))
    assert out.shape == (2, 10)


def test_backend_env_override(monkeypatch):
    monkeypatch.setattr(litert, "_RESOLVED", {})
    monkeypatch.setenv(litert.BACKEND_ENV, "ai_edge_litert")
    assert interpreter_backend()["name"] == "ai_edge_litert"


def test_corrupted_bytes_never_crash_the_process(model_path):
    """Random byte corruption of a real model: every case raises or loads, the process survives."""
    code = textwrap.dedent(f"""
        import numpy as np
        from edge.litert import make_interpreter
        data = open({model_path('int8')!r}, 'rb').read()
        rng = np.random.default_rng(0)
        for i in range(150):
            b = bytearray(data)
            for j in rng.integers(0, min(len(b), 3000), 6):
                b[j] = int(rng.integers(0, 256))
            try:
                it = make_interpreter(bytes(b), use_xnnpack=False)
                d = it.get_input_details()[0]
                it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype']))
                it.invoke()
            except Exception:
                pass
        print('survived')
    """)
    from edge_support import subprocess_env

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          timeout=120)
    assert proc.returncode == 0 and "survived" in proc.stdout, proc.stderr[-2000:]
