"""PTQ on a tiny Conv-BN-ReLU-Dense model: every mode, ranges landing in the .tflite, errors."""

from __future__ import annotations

import numpy as np
import pytest

import tfq  # noqa: F401  (Keras 2 before TensorFlow)
from tfq.calibration import CalibrationConfig, CalibrationDataError, CalibrationMethod, QuantGrid
from tfq.configs import ConfigError
from edge.litert import TFLiteModel
from edge.metrics import sqnr_db
from tfq.ptq import (
    MODES,
    PRESETS,
    ConversionError,
    FloatFallbackError,
    Granularity,
    IOType,
    Mode,
    PTQConfig,
    configs_for,
    converter_default_int8,
    get_preset,
    prepare_calibration,
    quantize,
    quantize_calibrated,
    verify_ranges,
)
from edge.tflite_model import summarize

SHAPE = (8, 8, 1)


def _tiny_model(extra=None, seed=0):
    import tensorflow as tf
    import tf_keras as keras

    tf.random.set_seed(seed)
    inp = keras.Input(SHAPE, name="input")
    x = keras.layers.Conv2D(6, 3, padding="same", use_bias=False, name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    if extra is not None:
        x = extra(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(4, name="logits")(x)
    model = keras.Model(inp, x, name="tiny")
    bn = model.get_layer("bn1")
    rng = np.random.default_rng(seed)
    bn.set_weights([rng.uniform(0.5, 2, 6), rng.normal(0, 0.5, 6), rng.normal(0, 0.2, 6), rng.uniform(0.5, 2, 6)])
    return model


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, *SHAPE)).astype(np.float32)
    x[0, 0, 0, 0] = 9.0  # one outlier pixel, so clipping calibrators differ from min-max
    return x


@pytest.fixture(scope="module")
def state(model, data):
    return prepare_calibration(model, data[:48], num_bins=512)


def _keras(model, x):
    return model.predict(x, verbose=0)


def _activation_params(model_bytes, dtype="INT8"):
    """scale/zero point of every non-constant quantized activation tensor, by name."""
    s = summarize(model_bytes)
    return {
        t.name: (t.quantization.scales[0], t.quantization.zero_points[0])
        for t in s.tensors
        if not t.is_constant and t.dtype == dtype and t.quantization.is_quantized
    }


# --------------------------------------------------------------------------- configs


def test_mode_table_covers_every_mode():
    assert set(MODES) == set(Mode)
    assert [m for m, s in MODES.items() if s.calibrated] == [Mode.INT8, Mode.INT16X8]


def test_presets_are_valid_and_round_trip():
    for name, cfg in PRESETS.items():
        assert PTQConfig.from_dict(cfg.to_dict()) == cfg, name
    edgetpu = get_preset("edgetpu_int8")
    assert (edgetpu.mode, edgetpu.io, edgetpu.granularity) == (Mode.INT8, IOType.UINT8, Granularity.PER_TENSOR)
    with pytest.raises(ConfigError, match="valid presets"):
        get_preset("int4")


@pytest.mark.parametrize("bad, match", [
    ({"mode": "int4"}, "valid choices"),
    ({"mode": "fp16", "io": "int8"}, "not available for mode 'fp16'"),
    ({"mode": "int16x8", "io": "uint8"}, "not available"),
    ({"mode": "int16x8", "keep_float": ["logits"]}, "keep_float is supported for mode 'int8' only"),
    ({"keep_float": ["("]}, "regular expression"),
    ({"calib_samples": 0}, "calib_samples"),
    ({"calibration": {"method": "entropy"}}, "valid choices"),
    ({"granularity": "per_layer"}, "valid choices"),
])
def test_bad_configs(bad, match):
    with pytest.raises(ConfigError, match=match):
        PTQConfig.from_dict(bad)


def test_configs_for_expands_methods_only_for_calibrated_modes():
    cfgs = configs_for(PTQConfig(io=IOType.INT8), list(Mode), [CalibrationMethod.MINMAX, CalibrationMethod.KL])
    names = [c.artifact_name() for c in cfgs]
    assert names == ["fp32", "dynamic", "fp16", "int8_minmax", "int8_kl", "int16x8_minmax", "int16x8_kl"]
    assert cfgs[3].io is IOType.INT8 and cfgs[0].io is IOType.FLOAT32 and cfgs[5].io is IOType.FLOAT32


# --------------------------------------------------------------------------- ranges land in the .tflite


@pytest.mark.parametrize("method", list(CalibrationMethod))
def test_int8_ranges_land_in_tflite(state, method):
    # int8 I/O: the model input and output tensors keep their names and carry their ranges too.
    cfg = PTQConfig(io=IOType.INT8, calibration=CalibrationConfig(method=method, percentile=99.0, num_bins=512))
    result = quantize_calibrated(state, cfg)
    params = _activation_params(result.model_bytes)
    # Independent of tfq's helper: the converter's rule for an asymmetric int8 range.
    checked = 0
    for name, r in result.ranges.items():
        tensor = name
        lo, hi = min(float(np.float32(r.min)), 0.0), max(float(np.float32(r.max)), 0.0)
        scale = (hi - lo) / 255.0
        zp = int(np.clip(np.round(-128 - lo / scale), -128, 127))
        got_scale, got_zp = params[tensor]
        assert got_scale == pytest.approx(scale, rel=1e-5), name
        assert got_zp == zp, name
        checked += 1
    assert checked == len(result.ranges) == 4  # input, conv+bn+relu, mean, logits
    assert result.range_check.landed and not result.range_check.overridden and not result.range_check.missing


def test_clipping_methods_change_the_scales(state):
    scales = {}
    for method in (CalibrationMethod.MINMAX, CalibrationMethod.PERCENTILE):
        cfg = PTQConfig(calibration=CalibrationConfig(method=method, percentile=99.0))
        res = quantize_calibrated(state, cfg)
        scales[method] = _activation_params(res.model_bytes)
    relu = next(n for n in scales[CalibrationMethod.MINMAX] if "relu1" in n)
    assert scales[CalibrationMethod.PERCENTILE][relu][0] < scales[CalibrationMethod.MINMAX][relu][0]


def test_minmax_matches_converter_default(model, data, state):
    ours = quantize_calibrated(state, PTQConfig(calibration=CalibrationConfig(method="minmax")))
    peer = converter_default_int8(model, data[:48])
    a, b = _activation_params(ours.model_bytes), _activation_params(peer)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name][0] == pytest.approx(b[name][0], rel=1e-6) and a[name][1] == b[name][1], name


def test_minmax_is_right_where_the_converter_records_in_place_outputs(data):
    """tensorflow/tensorflow#127842: an ADD input is logged with the ADD's in-place output."""
    import tensorflow as tf
    import tf_keras as keras

    tf.random.set_seed(0)
    inp = keras.Input(SHAPE)
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", name="conv_b")(a)
    x = keras.layers.ReLU(name="out_relu")(keras.layers.Add(name="add")([a, b]))
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D()(x)))
    x16 = data[:16]
    truth = keras.Model(inp, model.get_layer("conv_b").output).predict(x16, verbose=0)

    st = prepare_calibration(model, x16, converter_samples=16)
    h = next(h for name, h in st.stats.items() if name.endswith("conv_b/Conv2D1"))
    assert h.recorded_max > 1.5 * truth.max()  # the converter's record: the ADD output's values
    assert (h.data_min, h.data_max) == pytest.approx((truth.min(), truth.max()), rel=1e-5)

    ours = _activation_params(quantize_calibrated(st, PTQConfig(calibration=CalibrationConfig(method="minmax"))).model_bytes)
    peer = _activation_params(converter_default_int8(model, x16))
    scale, zp = QuantGrid.INT8.qparams(truth.min(), truth.max())
    assert ours[h.name][0] == pytest.approx(scale, rel=1e-5) and ours[h.name][1] == zp
    assert peer[h.name][0] > 1.3 * scale  # the converter wastes part of the grid on values that never occur


def test_post_relu_tensor_uses_all_levels(state):
    res = quantize_calibrated(state, PTQConfig(calibration=CalibrationConfig(method="mse")))
    relu = next(v for n, v in _activation_params(res.model_bytes).items() if "relu1" in n)
    assert relu[1] == -128  # asymmetric: zero sits at the lowest level, 255 levels above it


def test_symmetric_activations_have_zero_point_zero(state):
    res = quantize_calibrated(state, PTQConfig(calibration=CalibrationConfig(method="percentile", symmetric=True)))
    params = _activation_params(res.model_bytes)
    assert params and all(zp == 0 for _, zp in params.values())
    assert not res.range_check.overridden


def test_int16x8_ranges_are_symmetric_int16(state):
    res = quantize_calibrated(state, PTQConfig(mode=Mode.INT16X8, calibration=CalibrationConfig(method="kl")))
    params = _activation_params(res.model_bytes, "INT16")
    assert params and all(zp == 0 for _, zp in params.values())
    for name, r in res.ranges.items():
        if name in params:
            assert params[name][0] == pytest.approx(max(abs(r.min), abs(r.max)) / 32767, rel=1e-5)
    assert len(res.range_check.landed) == len(res.ranges)


def test_per_layer_rule_selects_logits_by_weight_name(state):
    cfg = PTQConfig(calibration=CalibrationConfig(
        method="percentile", percentile=99.0, per_layer=({"pattern": "logits", "method": "minmax"},)))
    res = quantize_calibrated(state, cfg)
    by_method = {r.name: r.method for r in res.ranges.values()}
    out = [n for n, m in by_method.items() if m is CalibrationMethod.MINMAX]
    assert out == ["StatefulPartitionedCall:0"]  # the final Dense output, found through model/logits/...


def test_verify_ranges_reports_op_constraints(data):
    import tf_keras as keras

    model = _tiny_model()
    soft = keras.Model(model.input, keras.layers.Softmax(name="probs")(model.output))
    st = prepare_calibration(soft, data[:16], num_bins=256)
    res = quantize_calibrated(st, PTQConfig(calibration=CalibrationConfig(method="minmax")))
    ops = {o["op"] for o in res.range_check.overridden}
    assert ops == {"SOFTMAX"}  # softmax output is fixed at scale 1/256, zero point -128
    again = verify_ranges(res.model_bytes, res.ranges, QuantGrid.INT8)
    assert len(again.landed) == len(res.range_check.landed)


# --------------------------------------------------------------------------- every mode runs


def _run(model_bytes, x):
    return TFLiteModel.from_bytes(model_bytes).predict(x)


@pytest.mark.parametrize("mode, io, min_sqnr", [
    (Mode.FP32, IOType.FLOAT32, 80.0),
    (Mode.DYNAMIC, IOType.FLOAT32, 25.0),
    (Mode.FP16, IOType.FLOAT32, 45.0),
    (Mode.INT8, IOType.FLOAT32, 20.0),
    (Mode.INT8, IOType.INT8, 20.0),
    (Mode.INT8, IOType.UINT8, 20.0),
    (Mode.INT16X8, IOType.FLOAT32, 30.0),
    (Mode.INT16X8, IOType.INT16, 30.0),
])
def test_every_mode_converts_and_runs(model, data, state, mode, io, min_sqnr):
    cfg = PTQConfig(mode=mode, io=io, calibration=CalibrationConfig(method="mse"))
    res = quantize(model, cfg, state=state)
    x = data[48:]
    out = _run(res.model_bytes, x)
    assert sqnr_db(_keras(model, x), out) > min_sqnr
    s = summarize(res.model_bytes)
    want_in = {IOType.FLOAT32: "FLOAT32", IOType.INT8: "INT8", IOType.UINT8: "UINT8", IOType.INT16: "INT16"}[io]
    assert s.input_tensors()[0].dtype == want_in and s.output_tensors()[0].dtype == want_in
    if MODES[mode].full_integer:
        assert res.float_ops == []
    else:
        assert res.float_ops  # dynamic/fp16/fp32 compute in float


@pytest.mark.parametrize("granularity, n_scales", [(Granularity.PER_CHANNEL, 6), (Granularity.PER_TENSOR, 1)])
@pytest.mark.parametrize("mode", [Mode.INT8, Mode.INT16X8])
def test_weight_granularity_read_back(state, mode, granularity, n_scales):
    res = quantize_calibrated(state, PTQConfig(mode=mode, granularity=granularity))
    s = summarize(res.model_bytes)
    conv = next(op for op in s.ops if op.name == "CONV_2D")
    weights = s.tensor(conv.inputs[1])
    assert weights.dtype == "INT8" and len(weights.quantization.scales) == n_scales


def test_dynamic_per_tensor(data):
    import tf_keras as keras

    inp = keras.Input((64,))
    m = keras.Model(inp, keras.layers.Dense(64, name="fc")(inp))  # 4096 weights: above the 1024 threshold
    for granularity, n in ((Granularity.PER_CHANNEL, 64), (Granularity.PER_TENSOR, 1)):
        res = quantize(m, PTQConfig(mode=Mode.DYNAMIC, granularity=granularity))
        s = summarize(res.model_bytes)
        w = next(t for t in s.tensors if t.is_constant and t.dtype == "INT8")
        assert len(w.quantization.scales) == n


def test_dynamic_per_tensor_depthwise_runs_correctly():
    """LiteRT's hybrid DEPTHWISE_CONV_2D reads one weight scale per channel; per-tensor must still be right."""
    import tf_keras as keras

    rng = np.random.default_rng(0)
    inp = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(128, 1, name="expand")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)  # 1,152 weights: quantized
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(8, name="fc")(x))
    dw = m.get_layer("dw")
    k, b = dw.get_weights()
    dw.set_weights([k * rng.uniform(0.2, 3.0, (1, 1, 128, 1)), b])  # channels of different ranges
    x_test = rng.normal(size=(32, 6, 6, 4)).astype(np.float32)
    ref = m.predict(x_test, verbose=0)
    res = quantize(m, PTQConfig(mode=Mode.DYNAMIC, granularity=Granularity.PER_TENSOR))
    s = summarize(res.model_bytes)
    op = next(o for o in s.ops if o.name == "DEPTHWISE_CONV_2D")
    w = s.tensor(op.inputs[1])
    assert w.dtype == "INT8" and len(w.quantization.scales) == 128
    assert len(set(w.quantization.scales)) == 1  # still one step size: per-tensor in value
    out = TFLiteModel.from_bytes(res.model_bytes).predict(x_test)
    assert sqnr_db(ref, out) > 25, sqnr_db(ref, out)


# --------------------------------------------------------------------------- float ops and bad input


def _cos(x):
    import tensorflow as tf
    import tf_keras as keras

    return keras.layers.Lambda(lambda t: tf.math.cos(t), name="cosine")(x)


@pytest.mark.parametrize("mode, match", [
    (Mode.INT8, r"COS\(\w+/cosine/Cos\).*--allow-float-fallback"),
    (Mode.INT16X8, r"'COS'.*--allow-float-fallback"),
])
def test_unquantizable_op_is_named_with_the_way_out(data, mode, match):
    model = _tiny_model(extra=_cos)
    with pytest.raises(FloatFallbackError, match=match):
        quantize(model, PTQConfig(mode=mode, calib_samples=16), data)
    res = quantize(model, PTQConfig(mode=mode, calib_samples=16, allow_float_fallback=True), data)
    assert any(f.startswith("COS(") for f in res.float_ops)


def test_keep_float_layers(state, model, data):
    res = quantize_calibrated(state, PTQConfig(keep_float=("logits",)))
    assert any(f.startswith("FULLY_CONNECTED(") for f in res.float_ops)
    assert not any(f.startswith("CONV_2D(") for f in res.float_ops)
    assert sqnr_db(_keras(model, data[48:]), _run(res.model_bytes, data[48:])) > 20
    with pytest.raises(ConfigError, match="match no op"):
        quantize_calibrated(state, PTQConfig(keep_float=("no_such_layer",)))


@pytest.mark.parametrize("bad, match", [
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), "NaN/Inf"),
    (lambda x: x[:, :4], r"expects \(N, 8, 8, 1\)"),
    (lambda x: (x * 50 + 128).clip(0, 255).astype(np.uint8), "floating point"),
])
def test_bad_calibration_data_fails_before_conversion(model, data, monkeypatch, bad, match):
    import tfq.ptq as ptq

    def no_conversion(*a, **k):
        raise AssertionError("the converter ran on bad data")

    monkeypatch.setattr(ptq, "calibrate_only", no_conversion)
    with pytest.raises(CalibrationDataError, match=match):
        quantize(model, PTQConfig(calib_samples=16), bad(data[:16].copy()))


def test_few_samples_warn_with_count(model, data):
    from tfq.calibration import CalibrationWarning

    with pytest.warns(CalibrationWarning, match="only 12 calibration samples"):
        res = quantize(model, PTQConfig(calib_samples=500), data[:12])
    assert res.model_bytes


def test_model_is_not_modified(data):
    model = _tiny_model()
    before = [w.copy() for w in model.get_weights()]
    quantize(model, PTQConfig(calib_samples=8), data)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_preset_files_match_presets(repo_root):
    files = sorted((repo_root / "configs" / "ptq").glob("*.yaml"))
    assert files
    for path in files:
        cfg = PTQConfig.load(path)  # every file is a valid recipe
        if path.stem in PRESETS:
            assert cfg == PRESETS[path.stem], path.name
    assert {p.stem for p in files} >= {"int8_per_channel", "int8_per_tensor", "edgetpu_int8", "int16x8"}


def test_int16x8_per_tensor_depthwise_names_the_way_out():
    import tf_keras as keras

    inp = keras.Input((6, 6, 4))
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    m = keras.Model(inp, keras.layers.Dense(3, name="fc")(x))
    calib = np.random.default_rng(0).normal(size=(8, 6, 6, 4)).astype(np.float32)
    with pytest.raises(ConversionError, match="DEPTHWISE_CONV_2D weights per channel.*--granularity per_channel"):
        quantize(m, PTQConfig(mode=Mode.INT16X8, granularity=Granularity.PER_TENSOR), calib)
    res = quantize(m, PTQConfig(mode=Mode.INT16X8, granularity=Granularity.PER_CHANNEL), calib)
    assert summarize(res.model_bytes).float_ops() == []
