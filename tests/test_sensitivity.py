"""Layer-wise sensitivity: variants, ranking, the caller's model untouched, outputs, CLI."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import tfq  # noqa: F401
from tfq.mixed import MixedBuilder, float_tflite, keras_layer_names, tflite_logits
from tfq.sensitivity import (
    SensitivityConfig,
    SensitivityResult,
    Variant,
    analyze_sensitivity,
    insert_activation_fake_quant,
    select_subset,
)
from edge.tflite_model import summarize

from test_mixed import LAYERS, tiny_keras_model  # tests/ is on sys.path (rootdir conftest)


@pytest.fixture(scope="module")
def analyzed():
    model = tiny_keras_model(seed=1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=48)
    before = [w.copy() for w in model.get_weights()]
    cfg = SensitivityConfig(eval_samples=32, calib_samples=16, debugger_samples=4)
    result = analyze_sensitivity(model, x[:16], x, y, cfg, progress=False)
    return model, before, result, x


def test_every_layer_is_scored_and_ranked(analyzed):
    _, _, result, _ = analyzed
    assert sorted(r.name for r in result.layers) == sorted(LAYERS)
    assert [r.rank for r in result.layers] == [1, 2, 3, 4]
    sqnr = [r.score(Variant.ONLY_INT8) for r in result.layers]
    assert sqnr == sorted(sqnr)  # most sensitive (lowest SQNR) first
    assert result.int8_ranking() == [r.name for r in result.layers]
    for r in result.layers:
        assert set(r.scores) == {v.value for v in Variant}
        for variant, s in r.scores.items():
            if r.op_type == "DEPTHWISE_CONV_2D" and variant == "weights_int4":
                assert s is None  # LiteRT has no int4 depthwise kernel
                continue
            assert 0.0 <= s["top1"] <= 1.0
            assert math.isfinite(s["sqnr_db"]) and s["sqnr_db"] > 0
        assert r.debugger and r.debugger["rmse_over_scale"] >= 0
    # int4-robust ranking puts the layer without an int4 kernel last.
    assert result.int4_ranking()[-1] == "stage1_dw"
    assert result.reference["eval_samples"] == 32
    assert result.reference["keras_vs_tflite_max_abs_diff"] < 1e-4


def test_callers_model_is_unchanged(analyzed):
    model, before, _, x = analyzed
    after = model.get_weights()
    assert len(before) == len(after)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert model.name == "tiny" and [layer.name for layer in model.layers][1] == "stem_conv"
    model.predict(x[:2], verbose=0)  # still usable


def test_outputs_csv_json_png(analyzed, tmp_path):
    _, _, result, _ = analyzed
    result.write_csv(tmp_path / "s.csv")
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4]
    for col in ("only_int8_drop", "only_int8_sqnr_db", "all_but_int8_sqnr_db", "weights_int4_sqnr_db",
                "activations_int8_sqnr_db", "all_but_int8_recovery", "dbg_rmse_over_scale"):
        assert col in rows[0]
    data = json.loads(json.dumps(result.to_dict()))
    again = SensitivityResult.from_dict(data)
    assert again.int8_ranking() == result.int8_ranking()
    assert again.int4_ranking() == result.int4_ranking()
    result.plot(tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_activation_fake_quant_wraps_one_op():
    model = tiny_keras_model(seed=2)
    x = np.random.default_rng(2).normal(size=(16, 8, 8, 3)).astype(np.float32)
    fp32 = float_tflite(model)
    builder = MixedBuilder(fp32, x, layer_names=keras_layer_names(model))
    layer = builder.layers[1]
    fq = insert_activation_fake_quant(fp32, layer, builder.calibration)
    before, after = summarize(fp32).op_counts(), summarize(fq).op_counts()
    assert after.get("QUANTIZE", 0) - before.get("QUANTIZE", 0) == 2
    assert after.get("DEQUANTIZE", 0) - before.get("DEQUANTIZE", 0) == 2
    ref, out = tflite_logits(fp32, x), tflite_logits(fq, x)
    assert not np.array_equal(ref, out)
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 0.1


def test_subset_is_seeded():
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    y = np.arange(100)
    a = select_subset(x, y, 10, seed=3)
    b = select_subset(x, y, 10, seed=3)
    assert np.array_equal(a[2], b[2]) and len(a[2]) == 10
    assert not np.array_equal(a[2], select_subset(x, y, 10, seed=4)[2])
    assert len(select_subset(x, y, 1000, seed=3)[2]) == 100


def test_config_validation():
    from tfq.configs import ConfigError

    with pytest.raises(ConfigError, match="valid choices are 'only_int8'"):
        SensitivityConfig.from_dict({"variants": ["only_int9"]})
    with pytest.raises(ConfigError, match="eval_samples must be >= 1"):
        SensitivityConfig(eval_samples=0)


def test_cli(tiny_baseline, tmp_path, capsys):
    from pipelines.sensitivity import main, parse_args

    out = tmp_path / "sens"
    argv = ["--baseline", str(tiny_baseline), "--eval-samples", "48", "--calib-samples", "32",
            "--variants", "only_int8,all_but_int8,weights_int4", "--no-debugger", "--out", str(out)]
    assert main(parse_args(argv)) == 0
    for name in ("sensitivity.csv", "sensitivity.json", "sensitivity.png", "results.json", "config.json",
                 "layers.jsonl"):
        assert (out / name).is_file(), name
    assert json.loads((out / "run.json").read_text())["status"] == "complete"
    result = SensitivityResult.load(out)
    assert [r.rank for r in result.layers] == list(range(1, len(result.layers) + 1))
    assert "most sensitive" in capsys.readouterr().out
    # An existing run directory is not overwritten silently.
    assert main(parse_args(argv)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(parse_args(["--model", "nosuchmodel", "--root", str(tmp_path)])) == 2
    assert "python -m pipelines.train --model nosuchmodel" in capsys.readouterr().err
