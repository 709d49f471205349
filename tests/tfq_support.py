"""Plain helpers shared by the tests, importable by name (unlike ``conftest``)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def tiny_train_config(**overrides):
    """smallcnn at width 0.25 on digits: about a second per epoch."""
    from tfq.data import DataConfig
    from tfq.train import ModelConfig, OptimizerConfig, TrainConfig

    cfg = TrainConfig(
        model=ModelConfig(name="smallcnn", width_multiplier=0.25),
        data=DataConfig(name="digits"),
        optimizer=OptimizerConfig(lr=0.05, warmup_epochs=0.5),
        epochs=4,
        batch_size=32,
        seed=0,
        latency_runs=5,
    )
    return cfg.with_overrides(overrides) if overrides else cfg
