"""Tests for the ``models`` package: registry, builders, layer names, loading.

Models are tiny or built only to count parameters; forward passes use 8x8 and
32x32 inputs. Builds are cached per (name, arguments) because building is the
slow part and the tests only read the models.
"""

import functools
import re
import subprocess
import sys
from pathlib import Path

import tfq  # noqa: F401  (selects Keras 2; must come before anything imports TensorFlow)

import numpy as np
import pytest
import tf_keras as keras

import models
from models import blocks
from models.registry import BuildOptions, Stem

REPO_ROOT = Path(__file__).resolve().parents[1]
ALL_MODELS = ["mobilenetv2", "resnet18", "resnet20", "resnet32", "resnet34", "resnet50", "resnet56", "smallcnn"]
IMAGENET_224 = {"input_shape": (224, 224, 3), "num_classes": 1000, "stem": "imagenet"}


@functools.lru_cache(maxsize=None)
def _cached_build(name: str, frozen_kwargs: tuple) -> keras.Model:
    return models.build_model(name, **dict(frozen_kwargs))


def build(name: str, **kwargs) -> keras.Model:
    """Builds a model once per (name, kwargs); callers must not modify it."""
    return _cached_build(name, tuple(sorted(kwargs.items())))


def trainable_count(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def layer_names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers]


def _snake_case(class_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


# --- registry and arguments ---------------------------------------------------------------


def test_import_is_cheap_and_lists_models():
    code = (
        "import sys, models; names = models.available_models(); "
        "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules; print(names)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(ALL_MODELS)


def test_available_models_sorted():
    assert models.available_models() == ALL_MODELS


def test_register_rejects_duplicate_name():
    with pytest.raises(ValueError, match="'resnet18' is already registered"):
        models.register("resnet18", lambda name, options: None)
    with pytest.raises(ValueError, match="already registered"):
        models.register("smallcnn")(lambda name, options: None)
    assert models.available_models() == ALL_MODELS


def test_unknown_name_quotes_value_and_lists_valid_names():
    with pytest.raises(ValueError) as info:
        models.build_model("resnet99")
    message = str(info.value)
    assert "'resnet99'" in message
    assert ", ".join(ALL_MODELS) in message


@pytest.mark.parametrize(
    ("kwargs", "quoted"),
    [
        ({"num_classes": 0}, "0"),
        ({"num_classes": 2.5}, "2.5"),
        ({"width_multiplier": 0}, "0"),
        ({"width_multiplier": -0.5}, "-0.5"),
        ({"width_multiplier": float("nan")}, "nan"),
        ({"stem": "cifar10"}, "'cifar10'"),
        ({"input_shape": (32, 32)}, "(32, 32)"),
        ({"input_shape": (32, 32, 0)}, "(32, 32, 0)"),
        ({"input_shape": (32.0, 32, 3)}, "(32.0, 32, 3)"),
        ({"dropout": 1.0}, "1.0"),
        ({"seed": -1}, "-1"),
    ],
)
def test_invalid_arguments_quote_the_value(kwargs, quoted):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=re.escape(name)) as info:
        models.build_model("smallcnn", **kwargs)
    assert quoted in str(info.value)


def test_build_options_normalize_types():
    options = BuildOptions(
        input_shape=[np.int64(8), 8, 1], num_classes=np.int32(3), width_multiplier=1,
        stem="imagenet",
    )
    assert options.input_shape == (8, 8, 1) and type(options.input_shape[0]) is int
    assert type(options.num_classes) is int and type(options.width_multiplier) is float
    assert options.stem is Stem.IMAGENET and options.stem == "imagenet"


@pytest.mark.parametrize(
    ("channels", "multiplier", "expected"),
    [(64, 1.0, 64), (16, 1.0, 16), (64, 0.5, 32), (16, 0.25, 8), (32, 0.1, 8), (24, 0.75, 24),
     (1280, 1.4, 1792), (96, 0.35, 32)],
)
def test_scale_width(channels, multiplier, expected):
    assert blocks.scale_width(channels, multiplier) == expected


# --- parameter counts -------------------------------------------------------------------------
# count_params() includes the BatchNorm moving statistics; the trainable counts are
# the numbers PyTorch reports for the same (bias-free) architectures.


@pytest.mark.parametrize(
    ("name", "kwargs", "total", "trainable"),
    [
        ("resnet18", {}, 11_183_562, 11_173_962),
        ("resnet34", {}, 21_299_146, 21_282_122),
        # He et al. 2016's CIFAR ResNets (~0.27 M / 0.46 M / 0.85 M with option-A
        # shortcuts); ours use option-B 1x1 projections at the two downsampling blocks.
        ("resnet20", {}, 274_042, 272_474),
        ("resnet32", {}, 469_370, 466_906),
        ("resnet56", {}, 860_026, 855_770),
        ("resnet50", IMAGENET_224, 25_610_152, 25_557_032),
        ("smallcnn", {}, 289_642, 288_746),
        ("smallcnn", {"input_shape": (8, 8, 1)}, 289_066, 288_170),
        ("mobilenetv2", {}, 2_270_794, 2_236_682),
        ("mobilenetv2", IMAGENET_224, 3_538_984, 3_504_872),
    ],
)
def test_parameter_counts(name, kwargs, total, trainable):
    model = build(name, **kwargs)
    assert model.count_params() == total
    assert trainable_count(model) == trainable


@pytest.mark.parametrize(("name", "n"), [("resnet20", 3), ("resnet32", 5), ("resnet56", 9)])
def test_cifar_resnets_have_6n_plus_2_layers_and_16_32_64_filters(name, n):
    model = build(name)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    three_by_three = [c for c in convs if c.kernel_size == (3, 3)]
    projections = [c for c in convs if c.kernel_size == (1, 1)]
    # 6n + 1 weighted 3x3 convolutions plus the classifier: 6n + 2 layers.
    assert len(three_by_three) == 6 * n + 1
    assert [c.filters for c in projections] == [32, 64]
    assert sorted({c.filters for c in convs}) == [16, 32, 64]
    assert model.output_shape == (None, 10)


def test_resnet50_matches_keras_applications_count_plus_conv_biases():
    # tf_keras.applications.ResNet50 has 25,636,712 parameters: the same network
    # with a bias on every convolution. Ours are bias-free (BatchNorm follows).
    model = build("resnet50", **IMAGENET_224)
    conv_biases = sum(
        layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
    )
    assert model.count_params() + conv_biases == 25_636_712


# --- layer names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_layer_names_are_explicit_and_deterministic(name):
    first = build(name, input_shape=(8, 8, 1), num_classes=7)  # shared with test_forward_pass
    second = models.build_model(name, input_shape=(8, 8, 1), num_classes=7)
    names = layer_names(first)
    assert names == layer_names(second)
    assert len(set(names)) == len(names)
    for layer in first.layers:
        default = _snake_case(type(layer).__name__)
        assert not re.search(r"_\d+$", layer.name), layer.name
        assert not re.fullmatch(rf"{default}(_\d+)?", layer.name), layer.name
    assert first.name == name
    logits = first.layers[-1]
    assert logits.name == "logits" and isinstance(logits, keras.layers.Dense)
    assert logits.activation is keras.activations.linear


def test_resnet_layer_names():
    names = set(layer_names(build("resnet18")))
    assert {"input", "stem_conv", "stem_bn", "stem_relu", "head_pool", "logits"} <= names
    assert "stem_pool" not in names
    for suffix in ["conv1", "bn1", "relu1", "conv2", "bn2", "shortcut_conv", "shortcut_bn",
                   "add", "out"]:
        assert f"stage2_block1_{suffix}" in names
    assert "stage1_block1_shortcut_conv" not in names  # 64 -> 64 channels, stride 1
    assert "stage2_block2_shortcut_conv" not in names
    assert "stage4_block2_out" in names and "stage4_block3_out" not in names

    names50 = set(layer_names(build("resnet50", **IMAGENET_224)))
    assert {"stem_pool", "stage1_block1_shortcut_conv", "stage1_block1_conv3"} <= names50
    assert "stage4_block3_out" in names50


def test_mobilenetv2_layer_names_and_relu6():
    model = build("mobilenetv2")
    names = set(layer_names(model))
    assert "block1_expand_conv" not in names and "block1_dw_conv" in names  # t = 1
    for suffix in ["expand_conv", "expand_bn", "expand_relu", "dw_conv", "dw_bn", "dw_relu",
                   "project_conv", "project_bn", "add"]:
        assert f"block3_{suffix}" in names
    assert "block2_add" not in names  # 16 -> 24 channels
    assert "block17_project_bn" in names and "block18_dw_conv" not in names
    assert {"head_conv", "head_bn", "head_relu", "head_pool", "logits"} <= names
    assert isinstance(model.get_layer("block3_dw_conv"), keras.layers.DepthwiseConv2D)
    assert float(model.get_layer("block3_dw_relu").max_value) == 6.0
    assert float(model.get_layer("stem_relu").max_value) == 6.0


def test_smallcnn_pools_only_while_spatial_size_allows():
    names = set(layer_names(build("smallcnn", input_shape=(8, 8, 1))))
    assert {"stage1_conv1", "stage1_bn1", "stage1_relu1", "stage3_conv2", "stage1_pool",
            "stage2_pool"} <= names
    assert "stage3_pool" not in names
    tiny = build("smallcnn", input_shape=(2, 2, 1))
    assert "stage1_pool" in layer_names(tiny) and "stage2_pool" not in layer_names(tiny)


# --- shapes and forward passes ----------------------------------------------------------------


def _forward(model: keras.Model, batch: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *model.input_shape[1:]), dtype=np.float32)
    return model(x, training=False).numpy()


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("input_shape", [(8, 8, 1), (32, 32, 3)])
def test_forward_pass(name, input_shape):
    model = build(name, input_shape=input_shape, num_classes=7)
    logits = _forward(model)
    assert logits.shape == (2, 7)
    assert np.all(np.isfinite(logits))


@pytest.mark.parametrize("name", ["resnet18", "smallcnn", "mobilenetv2"])
def test_forward_pass_imagenet_stem_on_small_input(name):
    logits = _forward(build(name, input_shape=(32, 32, 3), stem="imagenet"))
    assert logits.shape == (2, 10) and np.all(np.isfinite(logits))


def test_spatial_sizes():
    resnet = build("resnet18", input_shape=(8, 8, 1), num_classes=7)
    assert [resnet.get_layer(f"stage{s}_block2_out").output_shape[1:3] for s in range(1, 5)] == [
        (8, 8), (4, 4), (2, 2), (1, 1)]
    resnet_imagenet = build("resnet18", input_shape=(32, 32, 3), stem="imagenet")
    assert resnet_imagenet.get_layer("stem_pool").output_shape[1:3] == (8, 8)
    mobilenet = build("mobilenetv2")
    assert mobilenet.get_layer("block3_add").output_shape[1:3] == (32, 32)  # cifar: no stride
    assert mobilenet.get_layer("head_relu").output_shape[1:] == (4, 4, 1280)
    mobilenet_imagenet = build("mobilenetv2", **IMAGENET_224)
    assert mobilenet_imagenet.get_layer("head_relu").output_shape[1:] == (7, 7, 1280)


def test_width_multiplier_scales_channels():
    half = build("resnet18", input_shape=(8, 8, 1), width_multiplier=0.5)
    assert half.get_layer("stem_conv").filters == 32
    assert half.get_layer("logits").kernel.shape == (256, 10)
    wide = build("mobilenetv2", input_shape=(8, 8, 1), width_multiplier=1.4)
    assert wide.get_layer("stem_conv").filters == 48
    assert wide.get_layer("head_conv").filters == 1792
    narrow = build("mobilenetv2", input_shape=(8, 8, 1), width_multiplier=0.5)
    assert narrow.get_layer("head_conv").filters == 1280
    assert build("smallcnn", input_shape=(8, 8, 1), width_multiplier=0.25).get_layer(
        "stage1_conv1").filters == 8


def test_dropout_layer_only_when_requested():
    assert "head_dropout" not in layer_names(build("smallcnn", input_shape=(8, 8, 1)))
    model = build("smallcnn", input_shape=(8, 8, 1), dropout=0.3)
    assert model.get_layer("head_dropout").rate == pytest.approx(0.3)
    assert model.layers[-2].name == "head_dropout"


def test_seed_makes_weights_reproducible():
    def weights(seed):
        model = models.build_model("smallcnn", input_shape=(8, 8, 1), seed=seed)
        return model.get_weights()

    first, again, other = weights(0), weights(0), weights(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    kernels = [i for i, w in enumerate(first) if w.ndim > 1]
    assert all(not np.array_equal(first[i], other[i]) for i in kernels)
    # Layers of the same shape still get different weights within one model.
    model = models.build_model("resnet18", input_shape=(8, 8, 1), seed=0)
    assert not np.array_equal(
        model.get_layer("stage1_block1_conv1").kernel.numpy(),
        model.get_layer("stage1_block1_conv2").kernel.numpy(),
    )


# --- loading --------------------------------------------------------------------------------


def test_is_model_path(tmp_path):
    assert models.is_model_path("runs/a/model.keras")
    assert models.is_model_path(tmp_path / "model.h5")
    assert not models.is_model_path("resnet18")
    assert not models.is_model_path(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert models.is_model_path(str(tmp_path))


def test_load_model_by_name():
    model = models.load_model("smallcnn", input_shape=(8, 8, 1), num_classes=3)
    assert model.name == "smallcnn" and model.output_shape == (None, 3)


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
@pytest.mark.parametrize("file_name", ["model.keras", "saved_model_dir", "model.h5"])
def test_load_model_round_trip(tmp_path, file_name):
    model = models.build_model(
        "smallcnn", input_shape=(8, 8, 1), num_classes=3, width_multiplier=0.25, seed=0
    )
    path = tmp_path / file_name
    if file_name == "saved_model_dir":
        model.save(path, save_format="tf")
        assert models.is_model_path(path)
    else:
        model.save(path)
    loaded = models.load_model(str(path))
    assert loaded.optimizer is None  # loaded with compile=False
    assert layer_names(loaded) == layer_names(model)
    np.testing.assert_allclose(_forward(loaded), _forward(model), rtol=1e-6, atol=1e-6)


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        models.load_model(tmp_path / "missing.keras")
    assert "resnet18" in str(info.value) and "saved_model.pb" in str(info.value)
    with pytest.raises(FileNotFoundError):
        models.load_model(str(tmp_path / "missing_dir"))
    with pytest.raises(ValueError, match="unknown model name 'resnet99'") as info:
        models.load_model("resnet99")
    assert ", ".join(ALL_MODELS) in str(info.value) and ".keras" in str(info.value)
    with pytest.raises(ValueError, match="is not a saved model"):
        models.load_model(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="only apply to registered model names"):
        models.load_model(tmp_path, num_classes=3)
