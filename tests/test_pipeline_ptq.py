"""The PTQ command line on the tiny digits baseline: in-process, once as a subprocess, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tfq  # noqa: F401  (Keras 2 before TensorFlow)
from pipelines.ptq import main, parse_args, resolve_config


def _run(argv):
    return main(parse_args([str(a) for a in argv]))


def test_cli_in_process_writes_pairs_and_table(tiny_baseline, tmp_path, capsys):
    out = tmp_path / "ptq"
    code = _run(["--baseline", tiny_baseline, "--modes", "int8", "dynamic", "--calibration", "minmax", "kl",
                 "--calib-samples", "64", "--threads", "1", "--out", out])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| variant" in printed and "int8_kl" in printed
    for name in ("fp32", "dynamic", "int8_minmax", "int8_kl"):
        assert (out / f"{name}.tflite").is_file() and (out / f"{name}_config.json").is_file()
    assert (out / "int8_kl_ranges.json").is_file() and not (out / "fp32_ranges.json").exists()

    from tfq.ptq import Mode, PTQConfig

    cfg = PTQConfig.load(out / "int8_kl_config.json")  # the saved config loads back as a recipe
    assert cfg.mode is Mode.INT8 and cfg.calibration.method.value == "kl" and cfg.calib_samples == 64

    results = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert list(rows) == ["fp32", "dynamic", "int8_minmax", "int8_kl"]
    assert rows["fp32"]["size_ratio"] == 1.0 and rows["fp32"]["sqnr_db"] > 60
    for name in ("int8_minmax", "int8_kl"):
        r = rows[name]
        assert r["float_ops"] == [] and r["integer_only"] and r["expect_integer"]
        assert r["size_ratio"] < 0.5 and r["calib_samples_used"] == 64
        assert r["latency_ms"]["1"]["count"] >= 50
        assert r["ranges_landed"] + len(r["ranges_overridden"]) <= r["ranges_total"]
    assert "top-1" in (out / "results.md").read_text()
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["kind"] == "ptq" and manifest["status"] == "complete"
    assert manifest["baseline"] == str(tiny_baseline)


def test_cli_config_file_preset_and_overrides(tiny_baseline, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "calibration:\n  method: percentile\n  percentile: 99.9\n"
        "  per_layer:\n    - {pattern: logits, method: minmax}\n"
        "calib_samples: 32\n"
    )
    out = tmp_path / "ptq"
    code = _run(["--baseline", tiny_baseline, "--preset", "edgetpu_int8", "--config", recipe,
                 "--set", "seed=3", "--latency-runs", "0", "--out", out])
    assert code == 0
    saved = json.loads((out / "int8_percentile_config.json").read_text())
    assert saved["io"] == "uint8" and saved["granularity"] == "per_tensor"  # from the preset
    assert saved["calibration"]["percentile"] == 99.9 and saved["seed"] == 3
    ranges = json.loads((out / "int8_percentile_ranges.json").read_text())["ranges"]
    assert ranges["StatefulPartitionedCall:0"]["method"] == "minmax"  # the logits rule
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["rows"]] == ["fp32", "int8_percentile"]


def test_int16x8_rows_can_use_fewer_test_images(tiny_baseline, tmp_path):
    out = tmp_path / "i16"
    code = _run(["--baseline", tiny_baseline, "--modes", "int16x8", "--test-samples", "60",
                 "--int16x8-test-samples", "20", "--calib-samples", "32", "--latency-runs", "0", "--out", out])
    assert code == 0
    rows = {r["name"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["fp32"]["test_images"] == 60 and rows["int16x8_minmax"]["test_images"] == 20
    # Agreement over 20 images comes in steps of 1/20 (over 60 it would be in steps of 1/60).
    assert (rows["int16x8_minmax"]["agreement"] * 20) % 1 < 1e-9
    assert "int16x8_minmax: evaluated on the first 20 test images only" in (out / "results.md").read_text()


def test_resolve_config_order(tmp_path):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"mode": "int8", "calib_samples": 100}))
    cfg, modes, methods = resolve_config(parse_args(["--model", "m", "--config", str(recipe),
                                                     "--calib-samples", "200", "--set", "calib_samples=300"]))
    assert cfg.calib_samples == 300  # --set wins over the flag, which wins over the file
    assert [m.value for m in modes] == ["fp32", "int8"]
    assert [m.value for m in methods] == ["minmax"]
    cfg, modes, methods = resolve_config(parse_args(["--model", "m", "--calibration", "all"]))
    assert len(modes) == 5 and len(methods) == 4
    cfg, modes, _ = resolve_config(parse_args(["--model", "m", "--io", "int16"]))
    assert cfg.mode.value == "int16x8"


def test_missing_baseline_prints_training_command(tmp_path, capsys):
    code = _run(["--model", "resnet18", "--dataset", "cifar10", "--root", tmp_path / "runs"])
    assert code != 0
    err = capsys.readouterr().err
    assert "python -m pipelines.train --model resnet18 --dataset cifar10" in err
    assert "--train-if-missing" in err


@pytest.mark.parametrize("argv_tail, match", [
    (["--set", "calibration.metod=kl"], "unknown key"),
    (["--modes", "fp16", "--io", "int8"], "not available for mode 'fp16'"),
    (["--preset", "int4"], "valid presets"),
    (["--int16x8-test-samples", "0"], "--int16x8-test-samples must be >= 1"),
])
def test_bad_config_exits_with_message(tiny_baseline, tmp_path, capsys, argv_tail, match):
    code = _run(["--baseline", tiny_baseline, "--out", tmp_path / "o", *argv_tail])
    assert code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_calibration_data_exits_before_conversion(tiny_baseline, tmp_path, monkeypatch, capsys):
    import tfq.data
    import tfq.ptq

    real = tfq.data.Dataset.arrays

    def poisoned(self, split, preprocessed=True):
        x, y = real(self, split, preprocessed)
        if split == "calib":
            x = x.copy()
            x[3, 0, 0, 0] = np.nan
        return x, y

    monkeypatch.setattr(tfq.data.Dataset, "arrays", poisoned)
    monkeypatch.setattr(tfq.ptq, "calibrate_only", lambda *a, **k: pytest.fail("converter ran"))
    code = _run(["--baseline", tiny_baseline, "--modes", "int8", "--out", tmp_path / "o"])
    assert code == 2
    assert "NaN/Inf" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_train_if_missing(tmp_path, monkeypatch, capsys):
    import tfq.train

    real = tfq.train.default_train_config

    def tiny(model, dataset):
        return real(model, dataset).with_overrides({"epochs": 1, "model.width_multiplier": 0.25, "latency_runs": 1})

    monkeypatch.setattr(tfq.train, "default_train_config", tiny)
    root = tmp_path / "runs"
    code = _run(["--model", "smallcnn", "--dataset", "digits", "--train-if-missing", "--root", root,
                 "--modes", "int8", "--calib-samples", "32", "--latency-runs", "0"])
    assert code == 0
    kinds = sorted(json.loads((d / "run.json").read_text())["kind"] for d in root.iterdir())
    assert kinds == ["ptq", "train"]
    assert "training one" in capsys.readouterr().out


def test_cli_subprocess(tiny_baseline, tmp_path, repo_root):
    out = tmp_path / "sub"
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.ptq", "--baseline", str(tiny_baseline), "--modes", "int8",
         "--calib-samples", "32", "--latency-runs", "0", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=repo_root, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "int8_minmax" in proc.stdout and (out / "int8_minmax.tflite").is_file()


def test_keras_model_path(tiny_baseline, tmp_path):
    out = tmp_path / "k"
    code = _run(["--keras-model", tiny_baseline / "model.keras", "--dataset", "digits",
                 "--preprocessing", tiny_baseline / "preprocessing.json", "--modes", "fp16",
                 "--latency-runs", "0", "--out", out])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["baseline"] is None and [r["name"] for r in results["rows"]] == ["fp32", "fp16"]
    assert results["rows"][1]["agreement"] > 0.95


def test_keras_model_needs_dataset(tiny_baseline, tmp_path, capsys):
    assert _run(["--keras-model", tiny_baseline / "model.keras", "--out", tmp_path / "k"]) == 2
    assert "--keras-model needs --dataset" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_quick_on_tiny_baseline(tiny_baseline, tmp_path):
    from benchmarks.ptq_sweep import main as sweep_main
    from benchmarks.ptq_sweep import parse_args as sweep_args

    prefix = tmp_path / "sweep"
    code = sweep_main(sweep_args(["--baseline", str(tiny_baseline), "--out", str(prefix), "--quick",
                                  "--modes", "int8", "int16x8", "--granularities", "per_channel",
                                  "--int16x8-test-samples", "40"]))
    assert code == 0
    report = json.loads(prefix.with_suffix(".json").read_text())
    names = [r["name"] for r in report["rows"]]
    assert names[:1] == ["fp32"] and sum(n.startswith("int8_") for n in names) == 4
    # INT16x8 rows run on the first 40 test images only, and are compared with FP32 on those.
    i16 = [r for r in report["rows"] if r["mode"] == "int16x8"]
    assert len(i16) == 4 and {r["test_images"] for r in i16} == {40}
    assert {r["test_images"] for r in report["rows"] if r["mode"] == "int8"} == {300}
    fp32_on_40 = report["keras_fp32"]["top1_on_int16x8_images"]
    assert all(abs(r["delta_top1"] - (r["top1"] - fp32_on_40)) < 1e-12 for r in i16)
    assert "first 40 test images only" in prefix.with_suffix(".md").read_text()
    # A second sweep into the same prefix refuses before any work, keeping the first one's files.
    before = prefix.with_suffix(".json").read_bytes()
    assert sweep_main(sweep_args(["--baseline", str(tiny_baseline), "--out", str(prefix), "--quick"])) == 2
    assert prefix.with_suffix(".json").read_bytes() == before
    assert {r.get("peer") for r in report["rows"] if r["role"] == "peer"} == {"converter_default", "aeq_static_wi8_ai8"}
    assert report["selection"]["best"] in names and len(report["comparison"]) == 2
    assert "tfq's best calibration against the peers" in prefix.with_suffix(".md").read_text()
    assert isinstance(report["environment"]["cpu_features"], list)
    assert f"CPU: {report['environment']['cpu_model']}; SIMD:" in prefix.with_suffix(".md").read_text()


def test_calibration_auto_picks_on_validation(tiny_baseline, tmp_path, capsys):
    out = tmp_path / "auto"
    code = _run(["--baseline", tiny_baseline, "--modes", "int8", "--calibration", "auto", "--val-samples", "100",
                 "--calib-samples", "64", "--latency-runs", "0", "--out", out])
    assert code == 0
    assert "--calibration auto chose" in capsys.readouterr().out
    rows = json.loads((out / "results.json").read_text())["rows"]
    (int8,) = [r for r in rows if r["mode"] == "int8"]
    scores = int8["selection"]["scores"]
    assert [s["method"] for s in scores] == ["minmax", "percentile", "kl", "mse"]
    assert int8["selection"]["val_samples"] == 100 and "never used to choose" in int8["selection"]["rule"]
    best = max(scores, key=lambda s: (s["val_sqnr_db"], s["val_agreement"]))
    assert int8["method"] == best["method"] and (out / f"int8_{best['method']}.tflite").is_file()
    assert _run(["--baseline", tiny_baseline, "--calibration", "auto", "kl", "--out", tmp_path / "x"]) == 2
