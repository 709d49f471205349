"""Calibrators on synthetic distributions, histograms, configs and calibration-data checks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tfq.calibration import (
    CALIBRATORS,
    CalibrationConfig,
    CalibrationDataError,
    CalibrationMethod,
    CalibrationWarning,
    LayerRule,
    QuantGrid,
    TensorHistogram,
    compute_ranges,
    finalize_range,
    representative_samples,
    validate_calibration_data,
)
from tfq.configs import ConfigError

INT8 = QuantGrid.INT8
INT16 = QuantGrid.INT16


def _settings(method, symmetric=False, percentile=99.99):
    return CalibrationConfig(method=method, percentile=percentile, symmetric=symmetric).settings_for("t")


def _range(values, method, grid=INT8, **kw):
    h = TensorHistogram.from_values(values)
    return CALIBRATORS[CalibrationMethod(method)](h, grid, _settings(CalibrationMethod(method), **kw))


def _empirical_mse(x, lo, hi, grid=INT8):
    scale, zp = grid.qparams(lo, hi)
    q = np.clip(np.round(x / scale) + zp, grid.qmin, grid.qmax)
    return float(np.mean((x - (q - zp) * scale) ** 2))


@pytest.fixture(scope="module")
def gauss_outliers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500_000)
    x[:2] = [12.0, -11.0]  # two outliers far beyond the bulk (max |x| of the rest is about 5)
    return x


@pytest.fixture(scope="module")
def relu_heavy():
    """Post-ReLU activations with a heavy tail and half exact zeros."""
    rng = np.random.default_rng(1)
    return np.maximum(rng.standard_t(df=3, size=100_000), 0.0)


def test_registry_covers_every_method():
    assert set(CALIBRATORS) == set(CalibrationMethod)


def test_minmax_is_the_data_range(gauss_outliers):
    lo, hi = _range(gauss_outliers, "minmax")
    assert (lo, hi) == (-11.0, 12.0)
    lo, hi = _range(gauss_outliers, "minmax", symmetric=True)
    assert hi == -lo == 12.0


@pytest.mark.parametrize("method", ["percentile", "kl", "mse"])
def test_calibrators_clip_outliers(gauss_outliers, method):
    lo, hi = _range(gauss_outliers, method)
    assert 2.5 < hi < 10 and -10 < lo < -2.5, (lo, hi)
    # Clipping two outliers buys a much finer grid for everything else.
    bulk = gauss_outliers[2:]
    assert _empirical_mse(bulk, lo, hi) < 0.5 * _empirical_mse(bulk, -11.0, 12.0)


def test_percentile_value_matches_numpy():
    x = np.random.default_rng(2).uniform(0, 1, 200_000)
    lo, hi = _range(x, "percentile", percentile=99.0)
    assert lo == pytest.approx(x.min(), abs=1e-9)  # one-sided: the low end is kept
    assert hi == pytest.approx(np.percentile(x, 99.0), abs=2e-3)


@pytest.mark.parametrize("symmetric", [False, True])
def test_mse_estimate_matches_empirical_optimum(relu_heavy, gauss_outliers, symmetric):
    """The histogram estimate picks a clip within 1% of the best clip found by brute force."""
    for x in (relu_heavy, gauss_outliers[:100_000]):
        lo, hi = _range(x, "mse", symmetric=symmetric)
        lo, hi = finalize_range(lo, hi, INT8, symmetric)
        amax = np.abs(x).max()
        brute = []
        for t in np.linspace(0.05, 1.0, 120) * amax:
            if symmetric:
                b = finalize_range(-t, t, INT8, True)
            else:
                b = finalize_range(max(x.min(), -t), min(x.max(), t), INT8, False)
            brute.append(_empirical_mse(x, *b))
        assert _empirical_mse(x, lo, hi) <= 1.01 * min(brute)


def test_mse_keeps_bounded_uniform_range():
    x = np.random.default_rng(3).uniform(-1, 3, 100_000)
    lo, hi = _range(x, "mse")
    assert lo == pytest.approx(-1, abs=0.02) and hi == pytest.approx(3, abs=0.02)


def test_kl_one_sided_uses_zero_floor(relu_heavy):
    lo, hi = _range(relu_heavy, "kl")
    assert lo == 0.0 and 0 < hi < relu_heavy.max()


def test_int16_grid_clips_little(gauss_outliers):
    lo, hi = _range(gauss_outliers, "mse", grid=INT16)
    assert hi == -lo and hi > 11  # 65k levels: keeping the outliers is cheaper than clipping them
    lo, hi = _range(gauss_outliers, "kl", grid=INT16)
    assert hi == pytest.approx(12.0)


def test_histogram_range_grows_and_keeps_counts():
    h = TensorHistogram("t", 256, recorded=(0.0, 1.0))
    h.update(np.linspace(0, 1, 1000))
    h.update(np.array([5.0, -2.0]))
    assert h.lo <= -2.0 and h.hi >= 5.0
    assert h.total == 1002 and h.counts.sum() == pytest.approx(1002)
    assert (h.data_min, h.data_max) == (-2.0, 5.0)


def test_histogram_counts_zeros_and_magnitude():
    x = np.concatenate([np.zeros(500), np.linspace(-2, 1, 500)])
    h = TensorHistogram.from_values(x, 512)
    assert h.zeros >= 500
    counts, amax = h.magnitude()
    assert amax == 2.0 and counts.sum() == pytest.approx(1000, rel=1e-6)
    assert h.magnitude(drop_zeros=True)[0].sum() == pytest.approx(1000 - h.zeros, rel=1e-6)


def test_histogram_rejects_nan():
    h = TensorHistogram("conv", 64)
    with pytest.raises(CalibrationDataError, match="conv"):
        h.update(np.array([0.0, np.nan]))


# --------------------------------------------------------------------------- grid arithmetic


def test_qparams_asymmetric_and_symmetric():
    scale, zp = INT8.qparams(-1.0, 3.0)
    assert scale == pytest.approx(4.0 / 255) and zp == round(-128 + 1.0 / scale)
    assert INT8.qparams(0.0, 2.0)[1] == -128  # post-ReLU: every level above zero
    assert INT16.qparams(-3.0, 1.0) == (3.0 / 32767, 0)


def test_finalize_symmetric_int8_gives_zero_point_zero():
    lo, hi = finalize_range(-2.0, 1.0, INT8, symmetric=True)
    scale, zp = INT8.qparams(lo, hi)
    assert zp == 0 and scale == pytest.approx(2.0 / 127)


def test_finalize_nudges_onto_grid():
    lo, hi = finalize_range(-1.0, 1.0, INT8, symmetric=False)  # an exact tie for the zero point
    scale, zp = INT8.qparams(lo, hi)
    z = INT8.qmin - lo / scale
    assert abs(z - round(z)) < 1e-4  # no tie left for the quantizer to break


# --------------------------------------------------------------------------- config and ranges


def test_per_layer_rules_and_aliases():
    cfg = CalibrationConfig.from_dict({
        "method": "percentile",
        "per_layer": [{"pattern": "logits", "method": "minmax"}, {"pattern": "^conv", "symmetric": True}],
    })
    assert cfg.settings_for("StatefulPartitionedCall:0", ("model/logits/MatMul",)).method is CalibrationMethod.MINMAX
    assert cfg.settings_for("conv1").symmetric is True
    assert cfg.settings_for("model/relu").method is CalibrationMethod.PERCENTILE
    assert CalibrationConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("bad, match", [
    ({"method": "entropy"}, "valid choices"),
    ({"percentile": 30}, "percentile"),
    ({"num_bins": 10}, "num_bins"),
    ({"per_layer": [{"pattern": "("}]}, "regular expression"),
    ({"per_layer": [{"pattern": "x", "method": "nope"}]}, "valid choices"),
    ({"bins": 10}, "unknown key"),
])
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        CalibrationConfig.from_dict(bad)


def test_compute_ranges_minmax_is_observed_range_not_recorded_one():
    h = TensorHistogram("conv", 256, recorded=(-1.0, 9.0))  # a wrong record only seeds the histogram
    h.update(np.linspace(-1.0, 2.5, 100))
    r = compute_ranges({"conv": h}, CalibrationConfig(method="minmax"))["conv"]
    assert r.method is CalibrationMethod.MINMAX and (r.data_min, r.data_max) == (-1.0, 2.5)
    assert INT8.qparams(r.min, r.max) == pytest.approx(INT8.qparams(-1.0, 2.5))  # snapped onto the same grid


def test_compute_ranges_rule_index_recorded(gauss_outliers):
    a = TensorHistogram.from_values(gauss_outliers, name="a")
    b = TensorHistogram.from_values(gauss_outliers, name="b")
    cfg = CalibrationConfig(method="percentile", per_layer=(LayerRule("^b$", method=CalibrationMethod.MINMAX),))
    ranges = compute_ranges({"a": a, "b": b}, cfg)
    assert ranges["a"].rule is None and ranges["a"].max < 10
    assert ranges["b"].rule == 0 and ranges["b"].max == pytest.approx(12.0, abs=23.0 / 255)  # nudged onto the grid
    assert ranges["a"].clipped_fraction > 0.4 and ranges["b"].clipped_fraction < 0.01


# --------------------------------------------------------------------------- representative data


def test_representative_samples_seeded_subset():
    x = np.random.default_rng(0).normal(size=(50, 4, 4, 1)).astype(np.float32)
    a = representative_samples(x, 10, seed=1, input_shape=(4, 4, 1))
    b = representative_samples(x, 10, seed=1, input_shape=(4, 4, 1))
    c = representative_samples(x, 10, seed=2, input_shape=(4, 4, 1))
    assert a.shape == (10, 4, 4, 1) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fewer_samples_warns_with_count():
    x = np.zeros((7, 4, 4, 1), np.float32)
    with pytest.warns(CalibrationWarning, match="only 7 calibration samples"):
        out = representative_samples(x, 500)
    assert out.shape[0] == 7


@pytest.mark.parametrize("x, match", [
    (np.full((4, 4, 4, 1), np.nan, np.float32), "NaN/Inf"),
    (np.where(np.arange(48).reshape(3, 4, 4, 1) == 20, np.inf, 0.0).astype(np.float32), "sample 1"),
    (np.zeros((4, 4, 4, 1), np.uint8), "raw pixels"),
    (np.zeros((4, 5, 4, 1), np.float32), r"expects \(N, 4, 4, 1\)"),
    (np.zeros((0, 4, 4, 1), np.float32), "no samples"),
])
def test_bad_calibration_data(x, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(CalibrationDataError, match=match):
            validate_calibration_data(x, (4, 4, 1))


def test_num_samples_must_be_positive():
    with pytest.raises(CalibrationDataError, match="calib_samples"):
        representative_samples(np.zeros((3, 2), np.float32), 0)


def test_clipped_fraction_is_finite_for_constant_tensor():
    h = TensorHistogram.from_values(np.zeros(10))
    r = compute_ranges({"z": h}, CalibrationConfig(method="mse"))["z"]
    assert math.isfinite(r.min) and math.isfinite(r.max) and r.clipped_fraction == 0.0
