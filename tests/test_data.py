"""Tests for tfq.data: sources, the split rule, statistics and tf.data pipelines.

Everything runs offline: digits ships with scikit-learn, TFDS datasets go
through ``tfds.testing.mock_data``, and the real CIFAR-10 check reads
``../shared/data`` (skipped when absent).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tfq  # noqa: F401  (Keras 2 before TensorFlow)
from tfq import data as tfq_data
from tfq.configs import ConfigError
from tfq.data import (
    Augmentation,
    DataConfig,
    DatasetUnavailableError,
    channel_stats,
    load_dataset,
    make_tf_dataset,
    save_npz,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DIGITS_N = 1797


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig())


# ----------------------------------------------------------------------------- digits and the split rule


def test_digits_arrays(digits):
    assert digits.num_classes == 10 and digits.class_names == [str(i) for i in range(10)]
    assert digits.image_shape == (8, 8, 1)
    for split in ("train", "val", "calib", "test"):
        x, y = digits.x(split), digits.y(split)
        assert x.dtype == np.uint8 and x.shape[1:] == (8, 8, 1) and len(x) == len(y) > 0
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() <= 9
    assert digits.x("train").min() == 0 and digits.x("train").max() == 255
    assert set(np.unique(digits.y("test"))) == set(range(10))


def test_digits_pixels_are_the_scaled_sklearn_digits(digits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    pos = digits.indices["test"][:5]
    expected = np.round(raw.images[pos] * 255 / 16).astype(np.uint8)[..., None]
    np.testing.assert_array_equal(digits.x("test")[:5], expected)
    np.testing.assert_array_equal(digits.y("test")[:5], raw.target[pos])


def test_digits_split_sizes_follow_the_rule(digits):
    sizes = {k: len(v) for k, v in digits.indices.items()}
    n_test = round(0.2 * DIGITS_N)  # no official test split: last 20% in source order
    n_val = round(0.1 * (DIGITS_N - n_test))
    assert sizes == {"train": DIGITS_N - n_test - n_val, "val": n_val, "calib": 1000, "test": n_test}
    assert sizes["train"] + sizes["val"] + sizes["test"] == DIGITS_N
    assert digits.info["split_sizes"] == sizes and digits.summary()["split_sizes"] == sizes


def test_digits_splits_are_disjoint_and_calib_comes_from_train(digits):
    idx = {k: set(v.tolist()) for k, v in digits.indices.items()}
    assert not idx["train"] & idx["val"] and not idx["train"] & idx["test"] and not idx["val"] & idx["test"]
    assert idx["calib"] <= idx["train"] and len(idx["calib"]) == len(digits.indices["calib"])
    assert idx["train"] | idx["val"] | idx["test"] == set(range(DIGITS_N))
    # test is the tail of the source order, never shuffled into training.
    np.testing.assert_array_equal(digits.indices["test"], np.arange(DIGITS_N - len(idx["test"]), DIGITS_N))
    # The arrays are the indexed examples.
    train_pos = {int(p): i for i, p in enumerate(digits.indices["train"])}
    rows = [train_pos[int(p)] for p in digits.indices["calib"][:20]]
    np.testing.assert_array_equal(digits.x("calib")[:20], digits.x("train")[rows])


def test_loading_is_deterministic_and_seeded(digits):
    again = load_dataset(DataConfig())
    for split in ("train", "val", "calib", "test"):
        np.testing.assert_array_equal(again.x(split), digits.x(split))
        np.testing.assert_array_equal(again.y(split), digits.y(split))
    assert again.preprocessing == digits.preprocessing
    other = load_dataset(DataConfig(seed=1))
    assert set(other.indices["val"].tolist()) != set(digits.indices["val"].tolist())
    np.testing.assert_array_equal(other.indices["test"], digits.indices["test"])  # seed never moves test


def test_digits_preprocessing_is_computed_on_train(digits):
    mean, std = channel_stats(digits.x("train"))
    assert digits.preprocessing.mean == mean and digits.preprocessing.std == std
    assert digits.preprocessing.image_size == (8, 8) and digits.preprocessing.channels == 1
    x, y = digits.arrays("train")
    assert x.dtype == np.float32 and abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3
    raw, y_raw = digits.arrays("test", preprocessed=False)
    assert raw.dtype == np.uint8 and y_raw is digits.y("test")
    assert "train" in digits.info["preprocessing_stats"]


def test_channel_stats_is_exact():
    x = np.random.default_rng(0).integers(0, 256, size=(50, 6, 7, 3), dtype=np.uint8)
    mean, std = channel_stats(x)
    flat = x.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(mean, flat.mean(0), atol=1e-6)
    np.testing.assert_allclose(std, flat.std(0), atol=1e-6)


def test_digits_augmentation_and_summary(digits):
    assert digits.augmentation == Augmentation(pad=1, flip=False)  # digits are not mirror-invariant
    assert load_dataset(DataConfig(augment=False, limit=100)).augmentation.enabled is False
    summary = json.loads(json.dumps(digits.summary()))
    assert summary["name"] == "digits" and summary["image_shape"] == [8, 8, 1] and summary["seed"] == 0
    assert summary["official_test_split"] is False and "last round(test_fraction*N)" in summary["split_rule"]


def test_limit_and_resize():
    ds = load_dataset(DataConfig(limit=100, image_size=16, calib_size=10))
    assert {k: len(v) for k, v in ds.indices.items()} == {"train": 72, "val": 8, "calib": 10, "test": 20}
    assert ds.image_shape == (16, 16, 1) and ds.augmentation.pad == 2
    assert ds.info["native_image_shape"] == [8, 8, 1]


def test_too_few_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="too few examples to split: 2 source examples"):
        load_dataset(DataConfig(limit=2))


def test_unknown_split_names_the_valid_ones(digits):
    with pytest.raises(KeyError, match="unknown split 'validation'; valid splits are: train, val, calib, test"):
        digits.x("validation")


# ----------------------------------------------------------------------------- DataConfig


def test_unknown_dataset_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar-10'; valid names are: digits, cifar10, cifar100, "
                       r"imagefolder:PATH, npz:PATH"):
        DataConfig(name="cifar-10")
    with pytest.raises(ValueError, match="needs a path after 'npz:'"):
        tfq_data.check_dataset_name("npz:")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"val_fraction": 0.0}, "val_fraction must be in"),
        ({"test_fraction": 1.0}, "test_fraction must be in"),
        ({"calib_size": 0}, "calib_size must be >= 1"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"limit": 0}, "limit must be a positive integer"),
        ({"image_size": 0}, "image_size must be a positive integer"),
    ],
)
def test_data_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(**overrides)


def test_data_config_round_trip():
    cfg = DataConfig(name="npz:/data/x.npz", image_size=32, limit=10, augment=False)
    assert DataConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ConfigError, match="unknown key val_frac"):
        DataConfig.from_dict({"val_frac": 0.2})


# ----------------------------------------------------------------------------- TFDS (mocked, no network)


def test_cifar10_through_mocked_tfds_with_data_dir(tmp_path):
    import tensorflow_datasets as tfds

    empty = tmp_path / "tfds"
    empty.mkdir()
    cfg = DataConfig(name="cifar10", data_dir=str(empty), limit=30, calib_size=5)
    # Without the mock this data_dir holds nothing: the load fails ...
    with pytest.raises(DatasetUnavailableError):
        load_dataset(cfg)
    # ... so a successful load below proves mock_data intercepted tfds.load.
    with tfds.testing.mock_data(num_examples=40):
        ds = load_dataset(cfg)
    assert ds.num_classes == 10 and ds.image_shape == (32, 32, 3)
    assert ds.info["official_test_split"] is True and ds.info["source"].startswith("tfds:cifar10")
    assert {k: len(v) for k, v in ds.indices.items()} == {"train": 27, "val": 3, "calib": 5, "test": 30}
    np.testing.assert_array_equal(ds.indices["test"], np.arange(30, 60))  # numbered after the train examples
    assert ds.preprocessing.mean == (0.4914, 0.4822, 0.4465) and ds.preprocessing.std == (0.2470, 0.2435, 0.2616)
    assert ds.augmentation == Augmentation(pad=4, flip=True)
    for split in ("train", "test"):
        assert ds.x(split).dtype == np.uint8 and ds.y(split).dtype == np.int64 and ds.y(split).max() < 10


def test_cifar100_through_mocked_tfds():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        ds = load_dataset(DataConfig(name="cifar100", calib_size=4))
    assert ds.num_classes == 100 and ds.image_shape == (32, 32, 3) and len(ds.y("test")) == 20
    assert ds.preprocessing.mean == (0.5071, 0.4865, 0.4409)


def test_missing_offline_copy_explains_how_to_prepare_it(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(DataConfig(name="cifar10", data_dir=str(tmp_path)))
    message = str(info.value)
    assert "tfds build cifar10 --data_dir DIR" in message and "--data-dir DIR" in message
    assert str(tmp_path) in message
    with pytest.raises(DatasetUnavailableError, match="no such directory"):
        load_dataset(DataConfig(name="cifar10", data_dir=str(tmp_path / "nope")))


def test_failed_download_becomes_dataset_unavailable(monkeypatch):
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        assert "data_dir" not in kwargs and "download" not in kwargs  # default location, download allowed
        raise ConnectionError("Failed to establish a new connection: [Errno -3] name resolution")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.raises(DatasetUnavailableError, match="downloading it failed.*ConnectionError") as info:
        load_dataset(DataConfig(name="cifar10"))
    assert "--data-dir DIR" in str(info.value)


# ----------------------------------------------------------------------------- imagefolder


def _write_png(path: Path, size: tuple[int, int], color: tuple[int, int, int], mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((size[1], size[0], 3), np.uint8) + np.array(color, np.uint8)
    rgb[0, 0] = 255 - rgb[0, 0]  # not constant
    Image.fromarray(rgb).convert(mode).save(path)


def _image_folder(root: Path, per_class: int = 4, mode: str = "RGB") -> Path:
    colors = {"cat": (200, 10, 10), "dog": (10, 200, 10), "ant": (10, 10, 200)}
    for c, (name, color) in enumerate(colors.items()):
        for i in range(per_class):
            _write_png(root / name / f"img{i}.png", (10 + i, 12), color, mode)  # sizes differ
    (root / "ant" / "notes.txt").write_text("not an image")
    return root


def test_imagefolder_rgb_resized(tmp_path):
    root = _image_folder(tmp_path / "folder", per_class=5)
    ds = load_dataset(DataConfig(name=f"imagefolder:{root}", image_size=12, calib_size=3))
    assert ds.class_names == ["ant", "cat", "dog"] and ds.num_classes == 3
    assert ds.image_shape == (12, 12, 3) and ds.augmentation == Augmentation(pad=1, flip=True)
    assert sum(len(v) for k, v in ds.indices.items() if k != "calib") == 15
    # Round-robin source order: the test tail (3 of 15) holds the last file of every class.
    assert sorted(ds.y("test").tolist()) == [0, 1, 2]
    # Pixels: class "cat" is red.
    cat = ds.x("train")[ds.y("train") == 1]
    assert cat[:, 5, 5, 0].min() > 150 and cat[:, 5, 5, 1].max() < 60


def test_imagefolder_needs_image_size_for_mixed_sizes(tmp_path):
    root = _image_folder(tmp_path / "folder")
    with pytest.raises(ValueError, match="different sizes.*set image_size"):
        load_dataset(DataConfig(name=f"imagefolder:{root}"))


def test_imagefolder_grayscale_and_official_splits(tmp_path):
    root = tmp_path / "gray"
    for split, n in (("train", 5), ("test", 2)):
        for name, value in (("a", 30), ("b", 220)):
            for i in range(n):
                _write_png(root / split / name / f"{i}.png", (8, 8), (value, value, value), mode="L")
    ds = load_dataset(DataConfig(name=f"imagefolder:{root}", calib_size=2))
    assert ds.image_shape == (8, 8, 1) and ds.augmentation.flip is False
    assert ds.info["official_test_split"] is True and len(ds.y("test")) == 4 and len(ds.y("train")) + len(ds.y("val")) == 10
    assert ds.x("test")[ds.y("test") == 1][:, 4, 4, 0].tolist() == [220, 220]


def test_imagefolder_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        load_dataset(DataConfig(name=f"imagefolder:{tmp_path / 'missing'}"))
    half = tmp_path / "half"
    _write_png(half / "train" / "a" / "0.png", (4, 4), (1, 2, 3))
    with pytest.raises(ValueError, match="has train/ but no test/"):
        load_dataset(DataConfig(name=f"imagefolder:{half}"))
    empty_class = tmp_path / "empty_class"
    (empty_class / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds no images"):
        load_dataset(DataConfig(name=f"imagefolder:{empty_class}"))


# ----------------------------------------------------------------------------- npz


def _random_arrays(n: int, shape=(6, 6, 3), classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), rng.integers(0, classes, size=n)


def test_npz_images_labels_round_trip(tmp_path):
    x, y = _random_arrays(50, shape=(7, 7))  # NHW: a channel axis is added
    path = save_npz(tmp_path / "d.npz", x, y)
    ds = load_dataset(DataConfig(name=f"npz:{path}", calib_size=8))
    assert ds.image_shape == (7, 7, 1) and ds.num_classes == int(y.max()) + 1
    assert ds.info["official_test_split"] is False
    np.testing.assert_array_equal(ds.indices["test"], np.arange(40, 50))
    np.testing.assert_array_equal(ds.x("test")[..., 0], x[40:])
    np.testing.assert_array_equal(ds.y("val"), y[ds.indices["val"]])
    assert ds.slug == "npz-d"


def test_npz_train_test_layout_with_class_names(tmp_path):
    x, y = _random_arrays(30)
    xt, yt = _random_arrays(10, seed=1)
    names = ["w", "x", "y", "z", "unused"]
    path = save_npz(tmp_path / "tt.npz", x, y[:, None], x_test=xt, y_test=yt, class_names=names)
    with np.load(path) as f:
        assert sorted(f.files) == ["class_names", "x_test", "x_train", "y_test", "y_train"]
    ds = load_dataset(DataConfig(name=f"npz:{path}", calib_size=8))
    assert ds.class_names == names and ds.num_classes == 5
    np.testing.assert_array_equal(ds.x("test"), xt)
    np.testing.assert_array_equal(ds.y("test"), yt)
    assert ds.augmentation == Augmentation(pad=1, flip=True)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_npz(path, x, y)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((4, 5, 5, 3), np.float32), "labels": np.zeros(4, int)}, "must be uint8.*float32"),
        ({"images": np.full((4, 5, 5, 3), np.nan), "labels": np.zeros(4, int)}, "float64 and contain NaN"),
        ({"images": np.zeros((4, 5, 5, 3), np.uint8), "labels": np.zeros(3, int)}, "4 images but 3 labels"),
        ({"images": np.zeros((4, 5, 5, 3), np.uint8), "labels": np.array([0, 1, np.nan, 1])}, "labels contain NaN"),
        ({"images": np.zeros((4, 5, 5, 3), np.uint8), "labels": np.array([0, 1, -1, 1])}, "labels must be >= 0"),
        ({"images": np.zeros((4, 5, 5, 3), np.uint8), "labels": np.zeros((4, 3))}, r"labels must have shape \(N,\)"),
        ({"images": np.zeros((4, 3, 5, 5), np.uint8), "labels": np.zeros(4, int)}, "NCHW arrays must be transposed"),
        ({"images": np.zeros((4, 5), np.uint8), "labels": np.zeros(4, int)}, r"must have shape \(N, H, W\)"),
        (
            {"images": np.zeros((4, 5, 5, 3), np.uint8), "labels": np.array([0, 1, 2, 3]), "class_names": np.array(["a", "b"])},
            "label 3 is out of range for 2 classes",
        ),
        ({"x": np.zeros((4, 5, 5, 3), np.uint8)}, r"must hold 'images' and 'labels'.*found keys \['x'\]"),
        ({"x_train": np.zeros((4, 5, 5, 3), np.uint8), "y_train": np.zeros(4, int), "x_test": np.zeros((1, 5, 5, 3), np.uint8)},
         "only one of x_test/y_test"),
    ],
)
def test_npz_bad_arrays(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=message):
        load_dataset(DataConfig(name=f"npz:{path}"))


def test_npz_missing_file(tmp_path):
    with pytest.raises(ValueError, match="is not a file"):
        load_dataset(DataConfig(name=f"npz:{tmp_path / 'none.npz'}"))


# ----------------------------------------------------------------------------- real data


def test_real_cifar10_through_npz(tmp_path):
    if not (SHARED_DATA / "cifar10" / "train_labels.npy").is_file():
        pytest.skip(f"real CIFAR-10 arrays not found at {SHARED_DATA / 'cifar10'} (see shared/data/README.md)")
    part0 = np.load(SHARED_DATA / "cifar10" / "train_images_part0.npy", mmap_mode="r")
    labels = np.load(SHARED_DATA / "cifar10" / "train_labels.npy", mmap_mode="r")
    x, y = np.asarray(part0[:600]), np.asarray(labels[:600])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    path = save_npz(tmp_path / "cifar600.npz", x, y, class_names=names)
    ds = load_dataset(DataConfig(name=f"npz:{path}", calib_size=100))
    assert ds.num_classes == 10 and ds.class_names == names and ds.image_shape == (32, 32, 3)
    assert set(np.unique(ds.y("train")).tolist()) == set(range(10))
    np.testing.assert_array_equal(ds.x("test"), x[480:])  # last 20% in source order
    np.testing.assert_array_equal(ds.y("test"), y[480:])
    assert ds.augmentation == Augmentation(pad=4, flip=True)
    # Statistics of a 5,000-image slice are close to the published training-set values.
    mean, std = channel_stats(np.asarray(part0[:5000]))
    np.testing.assert_allclose(mean, (0.4914, 0.4822, 0.4465), atol=0.02)
    np.testing.assert_allclose(std, (0.2470, 0.2435, 0.2616), atol=0.02)


# ----------------------------------------------------------------------------- tf.data


@pytest.fixture(scope="module")
def small(digits):
    return digits.x("train")[:40], digits.y("train")[:40], digits.preprocessing


def _epoch(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_eval_pipeline_is_ordered_and_matches_apply(small):
    x, y, pre = small
    ds = make_tf_dataset(x, y, pre, batch_size=16, training=False)
    batches = [b[0].shape[0] for b in ds]
    assert batches == [16, 16, 8]
    first, labels = _epoch(ds)
    second, _ = _epoch(ds)
    assert first.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(first, pre.apply(x))  # exactly the numpy transform
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_array_equal(second, first)
    assert [b[0].shape[0] for b in make_tf_dataset(x, y, pre, batch_size=16, training=False, drop_remainder=True)] == [16, 16]


def test_training_pipeline_shuffles_deterministically(small):
    x, y, pre = small
    aug = Augmentation(pad=1, flip=False)

    def two_epochs(seed):
        ds = make_tf_dataset(x, y, pre, batch_size=16, training=True, augmentation=aug, seed=seed)
        return _epoch(ds), _epoch(ds)

    (a1, ya1), (a2, ya2) = two_epochs(0)
    (b1, yb1), _ = two_epochs(0)
    (c1, yc1), _ = two_epochs(1)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(ya1, yb1)
    assert a1.shape == (40, 8, 8, 1) and a1.dtype == np.float32
    assert sorted(ya1.tolist()) == sorted(y.tolist())  # a permutation of the examples
    assert not np.array_equal(ya1, y)  # shuffled
    assert not np.array_equal(a1, a2) and not np.array_equal(a1, c1)  # new order/crops per epoch and seed


def _candidates(image: np.ndarray, pad: int, flip: bool) -> list[np.ndarray]:
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    h, w = image.shape[:2]
    crops = [padded[i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return crops + ([c[:, ::-1] for c in crops] if flip else [])


def _augmented_in_order(x, y, pre, aug):
    # shuffle_buffer=1 keeps the order, so each output can be matched to its input.
    ds = make_tf_dataset(x, y, pre, batch_size=64, training=True, augmentation=aug, seed=3, shuffle_buffer=1)
    out, labels = _epoch(ds)
    np.testing.assert_array_equal(labels, y)
    return out


def test_augmentation_is_zero_pad_crop_without_flip_for_digits(small, digits):
    x, y, pre = small
    out = _augmented_in_order(x, y, pre, digits.augmentation)
    assert out.shape == pre.apply(x).shape
    changed = 0
    for image, got in zip(x, out):
        options = [pre.apply(c[None])[0] for c in _candidates(image, pad=1, flip=False)]
        assert any(np.array_equal(got, o) for o in options), "output is not a zero-padded crop of its input"
        changed += not np.array_equal(got, pre.apply(image[None])[0])
    assert changed > len(x) // 2  # most images moved


def test_flip_augmentation_mirrors_some_images(small):
    x, y, pre = small
    out = _augmented_in_order(x, y, pre, Augmentation(pad=0, flip=True))
    plain, mirrored = pre.apply(x), pre.apply(x[:, :, ::-1])
    is_plain = [np.array_equal(o, p) for o, p in zip(out, plain)]
    is_mirror = [np.array_equal(o, m) for o, m in zip(out, mirrored)]
    assert all(p or m for p, m in zip(is_plain, is_mirror))
    assert 0 < sum(is_mirror) < len(x)


def test_no_augmentation_in_training_keeps_pixels(small):
    x, y, pre = small
    out = _augmented_in_order(x, y, pre, None)
    np.testing.assert_array_equal(out, pre.apply(x))


def test_dataset_tf_dataset_defaults(digits):
    val, labels = _epoch(digits.tf_dataset("val", batch_size=50))
    np.testing.assert_array_equal(val, digits.arrays("val")[0])
    np.testing.assert_array_equal(labels, digits.y("val"))


def test_make_tf_dataset_rejects_bad_input(small):
    x, y, pre = small
    with pytest.raises(ValueError, match=r"\(9, 9, 1\) but this preprocessing expects \(8, 8, 1\)"):
        make_tf_dataset(np.zeros((4, 9, 9, 1), np.uint8), y[:4], pre, batch_size=2, training=False)
    with pytest.raises(ValueError, match="40 images but 39 labels"):
        make_tf_dataset(x, y[:39], pre, batch_size=2, training=False)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        make_tf_dataset(x, y, pre, batch_size=0, training=False)


# ----------------------------------------------------------------------------- command line


def test_cli_prints_summary(capsys):
    assert tfq_data.main(tfq_data.parse_args(["--name", "digits", "--limit", "200", "--set", "calib_size=50"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"]["split_sizes"]["calib"] == 50 and out["config"]["limit"] == 200
    assert tfq_data.main(tfq_data.parse_args(["--name", "mnist"])) == 1
    assert "unknown dataset 'mnist'" in capsys.readouterr().err


def test_cli_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "tfq.data", "--name", "digits", "--limit", "100"],
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["dataset"]["num_classes"] == 10
