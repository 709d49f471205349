"""Tests for tfq.preprocessing: the numpy-only input transform and its JSON file."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tfq.configs import ConfigError
from tfq.preprocessing import FILENAME, Preprocessing


def _rgb(**overrides) -> Preprocessing:
    kwargs = dict(image_size=(4, 5), channels=3, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
    kwargs.update(overrides)
    return Preprocessing(**kwargs)


def test_apply_matches_formula_per_channel():
    pre = _rgb()
    x = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)
    out = pre.apply(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    expected = (x.astype(np.float64) / 255.0 - np.array(pre.mean)) / np.array(pre.std)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
    # Channel order matters: channel 2 uses mean[2]/std[2].
    assert out[0, 0, 0, 2] == pytest.approx((x[0, 0, 0, 2] / 255.0 - 0.4465) / 0.2616, abs=1e-5)
    assert x.dtype == np.uint8  # input untouched


def test_apply_grayscale_and_custom_scale():
    pre = Preprocessing(image_size=(2, 2), channels=1, mean=(0.5,), std=(0.5,), scale=1.0 / 16.0)
    x = np.array([0, 8, 16, 4], dtype=np.uint8).reshape(1, 2, 2, 1)
    np.testing.assert_allclose(pre.apply(x).ravel(), [-1.0, 0.0, 1.0, -0.5])


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 4, 6, 3), np.uint8), r"\(4, 6, 3\) but this preprocessing expects \(4, 5, 3\)"),
        (np.zeros((2, 4, 5, 1), np.uint8), r"\(4, 5, 1\) but this preprocessing expects \(4, 5, 3\)"),
        (np.zeros((4, 5, 3), np.uint8), r"got shape \(4, 5, 3\) \(add a batch axis"),
        (np.zeros((2, 4, 5, 3), np.float32), "must be raw uint8 pixels, got dtype float32"),
    ],
)
def test_apply_rejects_mismatched_images(images, message):
    with pytest.raises(ValueError, match=message):
        _rgb().apply(images)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mean": (0.5, 0.5)}, "mean has 2 values but channels=3"),
        ({"std": (0.2, 0.2, 0.2, 0.2)}, "std has 4 values but channels=3"),
        ({"std": (0.2, 0.0, 0.2)}, "std must be > 0"),
        ({"mean": (0.5, float("nan"), 0.5)}, "mean must be finite"),
        ({"image_size": (32,)}, "image_size must be two positive integers"),
        ({"image_size": (0, 32)}, "image_size must be two positive integers"),
        ({"channels": 0}, "channels must be a positive integer"),
        ({"scale": 0.0}, "scale must be a finite number > 0"),
        ({"mean": "abc"}, "mean must be a sequence"),
    ],
)
def test_validation_errors_quote_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        _rgb(**overrides)


def test_lists_become_tuples_and_object_is_hashable():
    pre = _rgb(image_size=[4, 5], mean=[0.1, 0.2, 0.3], std=np.array([1.0, 2.0, 3.0]))
    assert pre.image_size == (4, 5) and pre.mean == (0.1, 0.2, 0.3) and pre.std == (1.0, 2.0, 3.0)
    assert pre.input_shape == (4, 5, 3)
    assert hash(pre) == hash(_rgb(mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 3.0)))


def test_save_load_round_trip(tmp_path):
    pre = _rgb()
    path = pre.save(tmp_path / "pre.json")
    assert Preprocessing.load(path) == pre
    data = json.loads(path.read_text())
    assert data["image_size"] == [4, 5] and data["channels"] == 3 and len(data["mean"]) == 3
    # A directory means <dir>/preprocessing.json.
    written = pre.save(tmp_path)
    assert written == tmp_path / FILENAME
    assert Preprocessing.load(tmp_path) == pre


def test_save_refuses_to_overwrite(tmp_path):
    path = _rgb().save(tmp_path / "pre.json")
    other = _rgb(mean=(0.0, 0.0, 0.0))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.save(path)
    assert Preprocessing.load(path) == _rgb()
    other.save(path, overwrite=True)
    assert Preprocessing.load(path) == other


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        Preprocessing.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    data = _rgb().to_dict()
    data["mena"] = data.pop("mean")
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="unknown key mena"):
        Preprocessing.load(bad)
    data["mean"] = [0.1]
    del data["mena"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="mean has 1 values but channels=3"):
        Preprocessing.load(bad)


def test_module_does_not_import_tensorflow():
    code = (
        "import sys, numpy as np, tfq.preprocessing as p\n"
        "pre = p.Preprocessing(image_size=(2, 2), channels=1, mean=(0.5,), std=(0.25,))\n"
        "pre.apply(np.zeros((1, 2, 2, 1), np.uint8))\n"
        "bad = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
