"""QATConfig: defaults, validation, file round trips, presets (no TensorFlow)."""

from __future__ import annotations

import pytest

from tfq.configs import ConfigError
from tfq.qat.config import PRESETS, Granularity, QATConfig, WeightQuant, preset


def test_defaults_are_per_channel_asymmetric_with_range_init():
    cfg = QATConfig()
    assert cfg.weights.granularity is Granularity.PER_CHANNEL
    assert cfg.per_channel
    assert cfg.weights.symmetric and cfg.weights.narrow_range
    assert cfg.activations.symmetric is False
    assert cfg.keep_float == ()
    assert cfg.lr is None  # baseline lr / 100
    assert cfg.init_from_ptq is True


def test_round_trip_through_dict_and_yaml(tmp_path):
    cfg = QATConfig(
        weights=WeightQuant(granularity="per_tensor"), keep_float=["stem_.*", "logits"], epochs=3,
        freeze_bn_after=1, freeze_ranges_after=2, calibration_method="kl",
    )
    assert QATConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "qat.yaml"
    path.write_text(
        "weights: {granularity: per_tensor}\nkeep_float: ['stem_.*', logits]\nepochs: 3\n"
        "freeze_bn_after: 1\nfreeze_ranges_after: 2\ncalibration_method: kl\n"
    )
    assert QATConfig.load(path) == cfg


@pytest.mark.parametrize(
    "data, message",
    [
        ({"weights": {"symmetric": False}}, "zero point 0"),
        ({"weights": {"granularity": "per_row"}}, "per_channel"),
        ({"keep_float": ["conv("]}, "invalid regular expression"),
        ({"keep_float": "logits"}, "list"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2, "freeze_bn_after": 3}, "freeze_bn_after"),
        ({"lr": 0.0}, "lr"),
        ({"calibration_method": "entropy"}, "minmax"),
        ({"min_agreement": 1.5}, "min_agreement"),
        ({"learning_rate": 0.1}, "valid keys are"),
    ],
)
def test_invalid_values_fail_with_a_precise_message(data, message):
    with pytest.raises(ConfigError, match=message):
        QATConfig.from_dict(data)


def test_overrides_from_the_command_line():
    cfg = QATConfig().with_overrides({"weights.granularity": "per_tensor", "epochs": "4", "keep_float": "[logits]"})
    assert cfg.weights.granularity is Granularity.PER_TENSOR
    assert cfg.epochs == 4
    assert cfg.keep_float == ("logits",)


def test_presets():
    assert set(PRESETS) >= {"int8_per_channel", "int8_per_tensor", "int8_symmetric_activations", "mixed_int8_fp16"}
    assert not preset("int8_per_tensor").per_channel
    assert preset("int8_symmetric_activations").activations.symmetric
    assert preset("mixed_int8_fp16").keep_float
    with pytest.raises(ConfigError, match="presets are"):
        preset("int4")


def test_committed_config_files_load(repo_root):
    files = sorted((repo_root / "configs" / "qat").glob("*.yaml"))
    assert files, "configs/qat/*.yaml are missing"
    for path in files:
        QATConfig.load(path)


def test_distillation_is_off_by_default_and_set_from_dotted_overrides():
    assert QATConfig().distill.enabled is False
    cfg = QATConfig().with_overrides({"distill.enabled": "true", "distill.temperature": "2", "distill.weight": "0.8"})
    assert (cfg.distill.enabled, cfg.distill.temperature, cfg.distill.weight) == (True, 2.0, 0.8)
    assert QATConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("data, message", [({"temperature": 0}, "temperature"), ({"weight": 1.5}, "weight"),
                                           ({"weight": -0.1}, "weight")])
def test_invalid_distillation_values_fail_with_a_precise_message(data, message):
    with pytest.raises(ConfigError, match=f"distill.{message}"):
        QATConfig.from_dict({"distill": data})
