"""Training stage: configs, schedule, CLI, run directory, resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfq_support import REPO, tiny_train_config
from pipelines import train as train_cli
from tfq.configs import ConfigError
from tfq.train import TrainConfig, make_schedule

TINY_FLAGS = ["--model", "smallcnn", "--dataset", "digits", "--width", "0.25", "--epochs", "2", "--batch-size", "64"]


def test_config_round_trip_and_validation():
    cfg = tiny_train_config()
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ConfigError, match="epoch"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="stem.*'cifar', 'imagenet'"):
        TrainConfig.from_dict({"model": {"stem": "big"}})
    with pytest.raises(ConfigError, match="lr must be > 0"):
        TrainConfig.from_dict({"optimizer": {"lr": -1}})


def test_override_order_defaults_file_flags_set(tmp_path):
    cfg_file = tmp_path / "train.yaml"
    cfg_file.write_text("epochs: 7\nbatch_size: 16\noptimizer:\n  lr: 0.2\n  momentum: 0.8\n")
    args = train_cli.parse_args(["--config", str(cfg_file), "--epochs", "3", "--set", "optimizer.lr=0.01"])
    cfg = train_cli.resolve_config(args)
    assert cfg.epochs == 3  # flag beats file
    assert cfg.batch_size == 16  # file beats default
    assert cfg.optimizer.lr == 0.01  # --set beats file
    assert cfg.optimizer.momentum == 0.8
    assert cfg.optimizer.weight_decay == TrainConfig().optimizer.weight_decay  # default kept


def test_warmup_cosine_schedule():
    opt = tiny_train_config().optimizer.replace(lr=0.1, warmup_epochs=1.0)
    sched = make_schedule(opt, steps_per_epoch=10, epochs=5)
    lrs = np.array([float(sched(s)) for s in range(50)])
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[9] == pytest.approx(0.1)  # end of warm-up
    assert lrs[10] == pytest.approx(0.1, rel=1e-3)
    assert np.all(np.diff(lrs[10:]) <= 1e-9)  # cosine decays monotonically
    assert lrs[-1] < 0.001


def test_train_cli_writes_complete_run_directory(tmp_path):
    out = tmp_path / "run"
    assert train_cli.main(train_cli.parse_args(TINY_FLAGS + ["--out", str(out)])) == 0
    for name in ["run.json", "config.json", "preprocessing.json", "dataset.json", "model.keras",
                 "metrics.jsonl", "results.json", "best.json"]:
        assert (out / name).is_file(), name
    assert (out / "tensorboard").is_dir()
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["kind"] == "train" and manifest["status"] == "complete"
    assert manifest["model"] == "smallcnn" and manifest["dataset"] == "digits"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert {"loss", "top1", "val_top1", "val_loss", "lr"} <= set(lines[0])
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["test_top1"] <= results["test_top5"] <= 1.0
    assert results["keras_latency_ms"]["p50"] > 0
    best = json.loads((out / "best.json").read_text())
    # chosen on validation: best top-1, ties broken by the lower validation loss
    chosen = max(lines, key=lambda r: (r["val_top1"], -r["val_loss"]))
    assert best["epoch"] == chosen["epoch"] and best["val_top1"] == chosen["val_top1"]
    saved = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert saved.epochs == 2 and saved.model.width_multiplier == 0.25


def test_same_seed_trains_identically(tmp_path):
    cfg = tiny_train_config(epochs=1)
    from tfq.rundir import RunDir
    from tfq.train import train

    a = train(cfg, RunDir.create(kind="train", out=tmp_path / "a"), verbose=0)
    b = train(cfg, RunDir.create(kind="train", out=tmp_path / "b"), verbose=0)
    ma = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    mb = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if k != "time_s"} for x in lines]
    assert strip(ma) == strip(mb)
    assert a["test_top1"] == b["test_top1"]


def test_existing_run_directory_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"keep": 1}')
    rc = train_cli.main(train_cli.parse_args(TINY_FLAGS + ["--out", str(out)]))
    assert rc == 2
    assert "not a tfq run directory" in capsys.readouterr().err
    assert (out / "results.json").read_text() == '{"keep": 1}'


def test_unknown_model_and_dataset_list_valid_names(capsys):
    assert train_cli.main(train_cli.parse_args(["--model", "resnet19"])) == 2
    err = capsys.readouterr().err
    assert "resnet19" in err and "resnet18" in err and "mobilenetv2" in err
    assert train_cli.main(train_cli.parse_args(["--dataset", "cifar11"])) == 2
    err = capsys.readouterr().err
    assert "cifar11" in err and "cifar10" in err and "digits" in err


def test_unavailable_offline_dataset_says_how_to_prepare(tmp_path, capsys):
    rc = train_cli.main(train_cli.parse_args(
        ["--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r")]))
    assert rc == 2
    err = capsys.readouterr().err
    assert "--data-dir" in err and "Traceback" not in err


def test_strategy_is_multi_worker_when_tf_config_is_set(subprocess_env):
    code = (
        "import tfq\n"
        "import tensorflow as tf\n"
        "from tfq.train import choose_strategy\n"
        "s = choose_strategy()\n"
        "print('multi' if isinstance(s, tf.distribute.MultiWorkerMirroredStrategy) else type(s).__name__)\n"
    )
    plain = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True,
                           timeout=120)
    assert plain.stdout.strip().endswith("_DefaultDistributionStrategy"), plain.stderr[-2000:]
    env = dict(subprocess_env)
    env["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["localhost:0"]}, "task": {"type": "worker", "index": 0}})
    multi = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert multi.stdout.strip().endswith("multi"), multi.stderr[-2000:]


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} lines in {timeout} s")


def test_training_subprocess_interrupted_mid_epoch_resumes(tmp_path, subprocess_env):
    """Kill the real command mid-epoch, run the same command, it continues."""
    cmd = [sys.executable, "-m", "pipelines.train", "--model", "smallcnn", "--dataset", "digits",
           "--width", "0.5", "--epochs", "4", "--batch-size", "8", "--root", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        runs_dir = tmp_path / "runs"
        deadline = time.time() + 180
        while time.time() < deadline and not (runs_dir.exists() and list(runs_dir.glob("*/metrics.jsonl"))):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.05)
        metrics = next(runs_dir.glob("*/metrics.jsonl"))
        _wait_for_lines(metrics, 1, proc, 180)
        time.sleep(0.3)  # well inside epoch 2
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    run_dir = metrics.parent
    first = metrics.read_text().splitlines()
    assert 1 <= len(first) < 4
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    done = subprocess.run(cmd, cwd=REPO, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in runs_dir.iterdir()] == [run_dir.name]  # the same run, not a new one
    lines = metrics.read_text().splitlines()
    assert lines[: len(first)] == first  # finished epochs were not repeated
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "complete" and "resumed" in manifest
    assert "resuming the unfinished run" in done.stderr


def test_train_throughput_benchmark_measures_both_determinism_settings(tmp_path, capsys):
    from benchmarks.train_throughput import main, parse_args

    out = tmp_path / "tp"
    argv = ["--models", "smallcnn", "--batches", "1", "--warmup-batches", "0", "--batch-size", "4",
            "--out", str(out)]
    assert main(parse_args(argv)) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert [(r["model"], r["deterministic"]) for r in report["rows"]] == [("smallcnn", True), ("smallcnn", False)]
    assert all(r["images"] == 4 and r["images_per_s"] > 0 for r in report["rows"])
    md = out.with_suffix(".md").read_text()
    assert "speed-up" in md and any(line.strip("| ").startswith("smallcnn") for line in md.splitlines())
    before = out.with_suffix(".json").read_bytes()
    assert main(parse_args(argv)) == 2 and "--overwrite" in capsys.readouterr().err
    assert out.with_suffix(".json").read_bytes() == before
