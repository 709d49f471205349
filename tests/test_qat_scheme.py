"""tfq's QAT scheme on a tiny model: every config option, read back from the .tflite.

The model (8x8x1 input) has every pattern the registry covers: Conv-BN-ReLU,
DepthwiseConv-BN-ReLU6, Conv-BN, Add, Concatenate, MaxPooling, AveragePooling,
GlobalAveragePooling and Dense. It is trained for a few seconds on a
four-class "bright quadrant" task, so its logits have margins and top-1
agreement is meaningful.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import tfq  # noqa: F401  (Keras 2 before TensorFlow)

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("tf_keras")

from edge import tflite_model  # noqa: E402
from tfq.configs import ConfigError  # noqa: E402
from tfq.qat import QATConfig, WeightQuant, ActivationQuant  # noqa: E402
from tfq.qat import convert as qconvert  # noqa: E402
from tfq.qat import quantize as qquantize  # noqa: E402
from tfq.qat import ranges as qranges  # noqa: E402
from tfq.qat import train as qtrain  # noqa: E402
from tfq.qat.layers import FoldedConvBatchNorm  # noqa: E402
from tfq.qat.registry import RULES, Rule, UnsupportedLayerError  # noqa: E402

L = keras.layers


def build_tiny(seed: int = 0) -> keras.Model:
    init = functools.partial(keras.initializers.HeNormal)
    i = keras.Input((8, 8, 1), name="input")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, kernel_initializer=init(seed), name="c1")(i)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="r1")(x)
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, depthwise_initializer=init(seed + 1), name="dw")(x)
    y = L.BatchNormalization(name="bn2")(y)
    y = L.ReLU(6.0, name="r2")(y)
    y = L.Conv2D(8, 1, use_bias=False, kernel_initializer=init(seed + 2), name="c2")(y)
    y = L.BatchNormalization(name="bn3")(y)
    a = L.Add(name="add")([x, y])
    c = L.Concatenate(name="cat")([a, x])
    p = L.MaxPooling2D(2, name="mp")(c)
    p = L.AveragePooling2D(2, name="ap")(p)
    g = L.GlobalAveragePooling2D(name="gap")(p)
    o = L.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(seed + 3), name="logits")(g)
    return keras.Model(i, o, name="tiny")


def quadrant_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(0.0, 0.5, size=(n, 8, 8, 1)).astype(np.float32)
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4, 0] += 1.5
    return x, y


@pytest.fixture(scope="module")
def data():
    return quadrant_data(512, seed=1), quadrant_data(256, seed=2)


@pytest.fixture(scope="module")
def fp32_model(data):
    (x, y), (xt, yt) = data
    keras.utils.set_random_seed(0)
    model = build_tiny()
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=12, batch_size=32, verbose=0)
    acc = model.evaluate(xt, yt, verbose=0)[1]
    assert acc > 0.9, f"the tiny model did not learn the quadrant task (accuracy {acc})"
    return model


@pytest.fixture(scope="module")
def calib_state(fp32_model, data):
    from tfq.ptq import prepare_calibration

    (x, _), _ = data
    return prepare_calibration(fp32_model, x[:128])


def make_qat(fp32_model, calib_state, config: QATConfig) -> keras.Model:
    qat_model = qquantize.quantize_model(fp32_model, config)
    qranges.init_ranges(qat_model, fp32_model, method="minmax", symmetric=config.activations.symmetric,
                        state=calib_state)
    return qat_model


def convert(qat_model, fp32_model, config: QATConfig) -> tuple[bytes, qconvert.ConversionReport]:
    plan = qquantize.plan_model(fp32_model, config)
    return qconvert.convert_to_tflite(qat_model, float_layers=plan.float_layers)


def weight(summary, layer: str) -> tflite_model.TensorRecord:
    """The weight tensor (kernel) of one Keras layer in a converted model."""
    hits = [t for t in summary.weight_tensors() if t.dtype in ("INT8", "FLOAT16", "FLOAT32")
            and layer in qconvert.layers_of_tensor(t.name) and len(t.shape) >= 2]
    assert hits, f"no weight tensor of {layer} in {[t.name for t in summary.weight_tensors()]}"
    return hits[0]


# --------------------------------------------------------------------------- registry


def test_registry_is_a_table_covering_the_layer_types():
    assert isinstance(RULES, tuple) and all(isinstance(r, Rule) for r in RULES)
    by_type = {r.layer_type: r for r in RULES}
    for cls in (L.Conv2D, L.DepthwiseConv2D, L.Dense, L.Add, L.Concatenate, L.MaxPooling2D, L.AveragePooling2D,
                L.GlobalAveragePooling2D, L.ReLU, FoldedConvBatchNorm):
        assert cls in by_type, cls
    assert by_type[L.Conv2D].weights == ("kernel",) and by_type[L.Conv2D].per_channel
    assert by_type[L.DepthwiseConv2D].weights == ("depthwise_kernel",) and by_type[L.DepthwiseConv2D].depthwise
    assert not by_type[L.Dense].per_channel
    assert by_type[L.Add].quantize_output and not by_type[L.MaxPooling2D].quantize_output
    assert not by_type[L.AveragePooling2D].quantize_output  # TFLite: same scale in and out


def test_layout_folds_batchnorm_and_fuses_relu(fp32_model):
    qat_model = qquantize.quantize_model(fp32_model, QATConfig())
    names = [layer.name for layer in qat_model.layers]
    assert not any("bn" in n for n in names), names  # every BN folded into its convolution
    folded = {layer.layer.name: layer.layer for layer in qat_model.layers
              if isinstance(getattr(layer, "layer", None), FoldedConvBatchNorm)}
    assert set(folded) == {"c1", "dw", "c2"}
    assert folded["c2"].source_layers == ("c2", "bn3")
    suffixes = {layer.name: {v.name.split("/")[-1].split(":")[0] for v in layer.weights} for layer in qat_model.layers}
    # Conv -> ReLU: only the ReLU output is quantized (TFLite fuses the ReLU).
    assert not {"output_min", "post_activation_min"} & suffixes["quant_c1"]
    assert "output_min" in suffixes["quant_r1"]
    # Conv -> BN -> Add: the folded layer quantizes its own output.
    assert "post_activation_min" in suffixes["quant_c2"]
    assert "output_min" not in suffixes["quant_mp"]  # max pooling keeps the input grid
    assert fp32_model.get_layer("bn1").name == "bn1"  # the caller's model is untouched


def test_folded_conv_batchnorm_matches_conv_then_batchnorm(fp32_model, data):
    (x, _), _ = data
    for conv_name, bn_name, cls in (("c1", "bn1", "Conv2D"), ("dw", "bn2", "DepthwiseConv2D")):
        conv, bn = fp32_model.get_layer(conv_name), fp32_model.get_layer(bn_name)
        source = keras.Model(fp32_model.input, conv.input)
        inp = source(x[:32]).numpy()
        ref_conv = conv.__class__.from_config(conv.get_config())
        ref_bn = L.BatchNormalization.from_config(bn.get_config())
        ref_conv.build(inp.shape), ref_bn.build(conv.output.shape)
        ref_conv.set_weights(conv.get_weights()), ref_bn.set_weights(bn.get_weights())
        folded = FoldedConvBatchNorm(cls, conv.get_config(), bn.get_config(), name="f")
        folded.build(inp.shape)
        folded.kernel.assign(conv.get_weights()[0])
        for var, value in zip((folded.gamma, folded.beta, folded.moving_mean, folded.moving_variance),
                              bn.get_weights()):
            var.assign(value)
        np.testing.assert_allclose(folded(inp, training=False), ref_bn(ref_conv(inp), training=False), atol=2e-5)
        np.testing.assert_allclose(folded(inp, training=True), ref_bn(ref_conv(inp), training=True), atol=2e-5)
        np.testing.assert_allclose(folded.moving_mean.numpy(), ref_bn.moving_mean.numpy(), atol=1e-6)
        np.testing.assert_allclose(folded.moving_variance.numpy(), ref_bn.moving_variance.numpy(), rtol=1e-5)


# --------------------------------------------------------------------------- errors


class Doubler(L.Layer):
    def call(self, x):
        return 2.0 * x


def _model_with_custom_layer() -> keras.Model:
    i = keras.Input((8, 8, 1), name="input")
    x = L.Conv2D(4, 3, padding="same", name="conv")(i)
    x = Doubler(name="double_it")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(i, L.Dense(2, name="logits")(x))


def test_unsupported_layer_names_itself_and_the_ways_out():
    model = _model_with_custom_layer()
    with pytest.raises(UnsupportedLayerError) as e:
        qquantize.quantize_model(model, QATConfig())
    msg = str(e.value)
    assert "Layer 'double_it' (type Doubler) is not supported by tfq's QAT scheme" in msg
    assert "tfq.qat.annotate(layer, quantize_config=...)" in msg
    assert "keep_float=['double_it']" in msg


def test_unsupported_layer_can_be_annotated_or_kept_float():
    from tfq.qat.quantize_configs import TfqQuantizeConfig
    from tfq.qat.quantizers import activation_quantizer

    model = _model_with_custom_layer()
    cfg = QATConfig()
    custom = TfqQuantizeConfig(quantize_output=True, activation_quantizer=activation_quantizer(cfg))
    with qquantize.quantize_scope(), keras.utils.custom_object_scope({"Doubler": Doubler}):
        annotated = qquantize.quantize_model(model, cfg, quantize_configs={"double_it": custom})
        assert any(getattr(layer, "layer", None) is not None and layer.layer.name == "double_it"
                   for layer in annotated.layers)
        with pytest.warns(UserWarning, match="computes it in INT8"):
            kept = qquantize.quantize_model(model, cfg.replace(keep_float=("double_it",)))
    # Kept float; its output feeds INT8 layers, so only that output is quantized.
    exit_config = kept.get_layer("quant_double_it").quantize_config
    assert exit_config.keep_float and exit_config.quantize_output and not exit_config.weight_attrs


def test_unsupported_activation_is_rejected():
    i = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, activation="tanh", name="tanh_conv")(i)
    model = keras.Model(i, L.Dense(2)(L.Flatten()(x)))
    with pytest.raises(UnsupportedLayerError, match="tanh_conv.*activation='tanh'"):
        qquantize.plan_model(model, QATConfig())


def test_keep_float_pattern_matching_nothing_lists_the_layer_names(fp32_model):
    with pytest.raises(ConfigError) as e:
        qquantize.plan_model(fp32_model, QATConfig(keep_float=("conv_?1",)))
    msg = str(e.value)
    assert "'conv_?1' matches no layer" in msg
    for name in ("c1", "bn1", "r1", "dw", "add", "cat", "logits"):
        assert name in msg


# --------------------------------------------------------------------------- conversion


@pytest.mark.parametrize("granularity, narrow_range", [("per_channel", True), ("per_tensor", True),
                                                       ("per_channel", False)])
def test_weight_granularity_reads_back_from_the_tflite(fp32_model, calib_state, data, granularity, narrow_range):
    cfg = QATConfig(weights=WeightQuant(granularity=granularity, narrow_range=narrow_range))
    qat_model = make_qat(fp32_model, calib_state, cfg)
    model_bytes, report = convert(qat_model, fp32_model, cfg)
    summary = tflite_model.summarize(model_bytes)
    assert report.float_ops == [] and summary.float_ops() == []
    per_channel = granularity == "per_channel"
    for layer, channels in (("c1", 8), ("dw", 8), ("c2", 8)):
        t = weight(summary, layer)
        assert t.dtype == "INT8"
        assert len(t.quantization.scales) == (channels if per_channel else 1), (layer, t.quantization)
        assert set(t.quantization.zero_points) == {0}
    model = tflite_model.read_model(model_bytes)
    kernel = np.frombuffer(bytes(model.buffers[weight(summary, "c1").buffer].data), dtype=np.int8)
    assert kernel.min() >= (-127 if narrow_range else -128) and kernel.max() <= 127
    assert len(weight(summary, "logits").quantization.scales) == 1  # Dense: per tensor
    for op in summary.ops:
        if op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):  # same grid in and out, no requantization
            src, dst = summary.tensor(op.inputs[0]), summary.tensor(op.outputs[0])
            assert src.quantization.scales == dst.quantization.scales
    (_, _), (xt, _) = data
    agreement = qconvert.check_agreement(qat_model, model_bytes, xt)
    assert agreement.passed, agreement
    assert agreement.top1_agreement >= 0.99


@pytest.mark.parametrize("symmetric", [False, True])
def test_activation_symmetry_reads_back_as_zero_points(fp32_model, calib_state, symmetric):
    cfg = QATConfig(activations=ActivationQuant(symmetric=symmetric))
    qat_model = make_qat(fp32_model, calib_state, cfg)
    summary = tflite_model.summarize(convert(qat_model, fp32_model, cfg)[0])
    activations = [t for t in summary.tensors if t.dtype == "INT8" and not t.is_constant]
    assert activations
    zero_points = {zp for t in activations for zp in t.quantization.zero_points}
    relu_out = [t for t in activations if qconvert.layers_of_tensor(t.name)[:1] == ["r1"]]
    assert relu_out, [t.name for t in activations]
    if symmetric:
        assert zero_points == {0}, [(t.name, t.quantization) for t in activations if t.quantization.zero_points != (0,)]
    else:
        # A post-ReLU range [0, max] uses every level: zero point -128.
        assert relu_out[0].quantization.zero_points == (-128,)


@pytest.mark.parametrize("keep_float", [("c2", "logits"), ("c1",)])
def test_keep_float_layers_have_fp16_weights_and_float_ops(fp32_model, calib_state, data, keep_float):
    cfg = QATConfig(keep_float=keep_float)
    qat_model = make_qat(fp32_model, calib_state, cfg)
    model_bytes, report = convert(qat_model, fp32_model, cfg)
    summary = tflite_model.summarize(model_bytes)
    float_compute = [op for op in summary.float_ops() if op.name not in ("QUANTIZE", "DEQUANTIZE")]
    expected = {"c1": "CONV_2D", "c2": "CONV_2D", "logits": "FULLY_CONNECTED"}
    assert sorted(op.name for op in float_compute) == sorted(expected[k] for k in keep_float)
    for layer in ("c1", "dw", "c2", "logits"):
        t = weight(summary, layer)
        assert t.dtype == ("FLOAT16" if layer in keep_float else "INT8"), (layer, t.name, t.dtype)
    assert not [t for t in summary.weight_tensors() if t.dtype == "FLOAT32"]
    # Every other compute op is INT8 in and out.
    for op in summary.ops:
        if op in float_compute or op.name in ("QUANTIZE", "DEQUANTIZE"):
            continue
        dtypes = {summary.tensor(i).dtype for i in op.inputs + op.outputs if i >= 0}
        assert dtypes <= {"INT8", "INT32"}, (op.name, dtypes)
    assert report.fp16_weights and report.inserted_ops > 0
    (_, _), (xt, _) = data
    agreement = qconvert.check_agreement(qat_model, model_bytes, xt)
    assert agreement.passed, agreement


# --------------------------------------------------------------------------- ranges, freezing


def test_range_init_sets_min_max_from_calibration(fp32_model, calib_state, data):
    from tfq.calibration import CalibrationConfig, compute_ranges

    (x, _), _ = data
    qat_model = qquantize.quantize_model(fp32_model, QATConfig())
    sites = {s.source: s for s in qranges.quantizer_sites(qat_model)}
    assert sites["r1"].range == (-6.0, 6.0)  # TFMOT's cold start
    result = qranges.init_ranges(qat_model, fp32_model, method="minmax", symmetric=False, state=calib_state)
    assert not result["record"]["missing"]
    assert result["record"]["source"] == "calibrated"
    # The ranges are exactly the ones PTQ deploys (the converter's recorded min/max) ...
    expected = compute_ranges(calib_state.stats, CalibrationConfig(method="minmax"))
    by_layer = qranges.layer_ranges_from_tensor_ranges(
        {k: (r.min, r.max) for k, r in expected.items()}, output_layer="logits")
    for layer in ("r1", "r2", "add", "cat", "gap", "logits", qranges.INPUT):
        assert sites[layer].range == pytest.approx(by_layer[layer], rel=1e-6), layer
    # ... and they match what the FP32 model computes on the calibration samples.
    for layer in ("r1", "add", "gap"):
        values = keras.Model(fp32_model.input, fp32_model.get_layer(layer).output).predict(x[:128], verbose=0)
        lo, hi = sites[layer].range
        assert lo == pytest.approx(min(float(values.min()), 0.0), rel=0.02, abs=0.02), layer
        assert hi == pytest.approx(float(values.max()), rel=0.02), layer
    assert sites["r1"].range[0] == 0.0


def test_fresh_qat_model_has_weight_ranges_and_matches_ptq(fp32_model, calib_state, data):
    """Weight ranges follow the weights from the start, so QAT epoch 0 is the PTQ model."""
    from tfq.calibration import CalibrationConfig
    from tfq.evaluate import predict_tflite
    from edge.metrics import agreement, sqnr_db
    from tfq.ptq import PTQConfig, quantize

    (_, _), (xt, _) = data
    qat_model = make_qat(fp32_model, calib_state, QATConfig())
    folded = qat_model.get_layer("quant_c1").layer
    expected = np.abs(folded.folded_kernel().numpy()).max(axis=(0, 1, 2))
    np.testing.assert_allclose(folded._quantizer_vars["max_var"].numpy(), expected, rtol=1e-6)
    dense = qat_model.get_layer("quant_logits")
    by_name = {v.name.split("/")[-1]: v.numpy() for v in dense.weights}
    assert by_name["kernel_max:0"] == pytest.approx(float(np.abs(by_name["kernel:0"]).max()))
    ptq = quantize(fp32_model, PTQConfig(calibration=CalibrationConfig(method="minmax")), state=calib_state)
    ptq_logits = predict_tflite(ptq.model_bytes, xt)
    qat_logits = qat_model.predict(xt, verbose=0)
    assert agreement(ptq_logits, qat_logits) >= 0.98
    assert sqnr_db(ptq_logits, qat_logits) > 25


def test_calibration_method_chooses_the_initial_ranges(fp32_model, calib_state):
    ranges = {}
    for method in ("minmax", "percentile"):
        qat_model = qquantize.quantize_model(fp32_model, QATConfig())
        qranges.init_ranges(qat_model, fp32_model, method=method, symmetric=False, state=calib_state)
        ranges[method] = {s.source: s.range for s in qranges.quantizer_sites(qat_model)}
    clipped = [k for k in ranges["minmax"] if ranges["percentile"][k][1] < ranges["minmax"][k][1] - 1e-6]
    assert clipped, "percentile calibration should clip some ranges below min/max"
    assert all(ranges["percentile"][k][1] <= ranges["minmax"][k][1] + 1e-6 for k in ranges["minmax"])


def test_range_init_from_a_ptq_ranges_file(fp32_model, tmp_path):
    import json

    qat_model = qquantize.quantize_model(fp32_model, QATConfig())
    ranges = {
        "serving_default_input:0": {"min": -3.0, "max": 4.0},
        "tiny/r1/Relu;tiny/bn1/FusedBatchNormV3;tiny/c1/Conv2D": {"min": 0.0, "max": 2.5},
        "StatefulPartitionedCall:0": {"min": -9.0, "max": 7.0},
    }
    path = tmp_path / "int8_minmax_ranges.json"
    path.write_text(json.dumps({"ranges": ranges, "check": None}))
    assert qranges.find_ptq_ranges(tmp_path, "minmax") == path
    result = qranges.init_ranges(qat_model, fp32_model, method="minmax", symmetric=False, ptq_ranges_file=path)
    sites = {s.source: s for s in qranges.quantizer_sites(qat_model)}
    # Asymmetric ranges are snapped onto the INT8 grid (zero exactly representable).
    assert sites["r1"].range == pytest.approx((0.0, 2.5))
    assert sites[qranges.INPUT].range == pytest.approx((-3.0, 4.0), abs=7 / 255)
    assert sites["logits"].range == pytest.approx((-9.0, 7.0), abs=16 / 255)
    assert "quant_add/output" in result["record"]["missing"]


def _fit_steps(model, x, y, steps: int = 3) -> None:
    model.fit(x[: 32 * steps], keras.utils.to_categorical(y[: 32 * steps], 4), batch_size=32, epochs=1, verbose=0,
              shuffle=False)


def test_batchnorm_freeze_stops_moving_statistics(fp32_model, calib_state, data):
    (x, y), _ = data
    qat_model = make_qat(fp32_model, calib_state, QATConfig())
    qat_model.compile(keras.optimizers.SGD(0.01, momentum=0.9), keras.losses.CategoricalCrossentropy(from_logits=True))
    folded = qat_model.get_layer("quant_c1").layer
    before = folded.moving_mean.numpy().copy()
    _fit_steps(qat_model, x, y)
    moved = folded.moving_mean.numpy().copy()
    assert np.abs(moved - before).max() > 0
    qtrain.freeze_batchnorm(qat_model)
    assert qtrain.frozen_state(qat_model)["bn"]
    kernel_before = folded.kernel.numpy().copy()
    _fit_steps(qat_model, x, y)
    np.testing.assert_array_equal(folded.moving_mean.numpy(), moved)
    assert np.abs(folded.kernel.numpy() - kernel_before).max() > 0  # weights still train
    # Frozen BN and ranges: the training graph computes what is deployed.
    qtrain.freeze_ranges(qat_model)
    np.testing.assert_allclose(qat_model(x[:64], training=True), qat_model(x[:64], training=False), atol=1e-5)


def test_range_freeze_keeps_min_max(fp32_model, calib_state, data):
    (x, y), _ = data
    qat_model = make_qat(fp32_model, calib_state, QATConfig())
    qat_model.compile(keras.optimizers.SGD(0.05), keras.losses.CategoricalCrossentropy(from_logits=True))
    sites = qranges.quantizer_sites(qat_model)
    before = [s.range for s in sites]
    _fit_steps(qat_model, x, y)
    after = [s.range for s in sites]
    assert before != after  # moving averages move
    assert qtrain.freeze_ranges(qat_model) == len(sites)
    _fit_steps(qat_model, x, y)
    assert [s.range for s in sites] == after


def test_qat_model_round_trips_through_h5(fp32_model, calib_state, data, tmp_path):
    (_, _), (xt, _) = data
    cfg = QATConfig(keep_float=("logits",), weights=WeightQuant(granularity="per_tensor"))
    qat_model = make_qat(fp32_model, calib_state, cfg)
    path = tmp_path / "m.h5"
    with qquantize.quantize_scope():
        qat_model.save(path)
    loaded = qquantize.load_qat_model(str(path))
    np.testing.assert_array_equal(loaded.predict(xt[:32], verbose=0), qat_model.predict(xt[:32], verbose=0))


# --------------------------------------------------------------------------- real architectures


@pytest.mark.slow
@pytest.mark.parametrize("name, keep_float", [("resnet18", ()), ("mobilenetv2", ()),
                                              ("resnet18", ("stem_conv", "logits"))])
def test_real_architectures_convert_with_the_expected_precision(name, keep_float):
    """resnet18/mobilenetv2 (width 0.25, random weights): every op INT8 except the float layers."""
    import models
    from tfq.ptq import prepare_calibration

    model = models.build_model(name, input_shape=(32, 32, 3), num_classes=10, width_multiplier=0.25, seed=0)
    x = np.random.default_rng(0).normal(size=(64, 32, 32, 3)).astype(np.float32)
    cfg = QATConfig(keep_float=keep_float)
    qat_model = qquantize.quantize_model(model, cfg)
    record = qranges.init_ranges(qat_model, model, method="minmax", symmetric=False,
                                 state=prepare_calibration(model, x[:32]))["record"]
    assert not record["missing"]
    model_bytes, report = convert(qat_model, model, cfg)
    summary = tflite_model.summarize(model_bytes)
    compute = sorted(op.name for op in summary.float_ops() if op.name not in ("QUANTIZE", "DEQUANTIZE"))
    assert compute == (["CONV_2D", "FULLY_CONNECTED"] if keep_float else [])
    dtypes = {t.dtype for t in summary.weight_tensors()}
    assert dtypes == ({"INT8", "FLOAT16"} if keep_float else {"INT8"})
    agreement = qconvert.check_agreement(qat_model, model_bytes, x)
    assert agreement.sqnr_db > 25, agreement  # random weights: near-tied logits, so no top-1 bound here
