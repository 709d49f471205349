"""pipelines.qat end to end on the tiny digits baseline, in-process (and --help once as a subprocess)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

import tfq  # noqa: F401  (Keras 2 before TensorFlow)
from pipelines.qat import main, parse_args

PTQ_HEADERS = ("variant", "mode", "calibration", "weights", "I/O", "top-1", "Δ top-1 (pp)", "top-5", "agree",
               "SQNR dB", "size", "size/FP32", "1-thr p50 ms", "all-thr p50 ms", "float ops left")


def _args(baseline, tmp, *extra):
    return parse_args([
        "--baseline", str(baseline), "--root", str(tmp / "runs"), "--out", str(tmp / "runs" / "qat"),
        "--epochs", "2", "--steps-per-epoch", "4", "--freeze-bn-after", "1", "--freeze-ranges-after", "1",
        "--latency-runs", "0", "--test-samples", "128", *extra,
    ])


@pytest.fixture(scope="module")
def qat_run(tiny_baseline, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qat")
    assert main(_args(tiny_baseline, tmp)) == 0
    return tmp, tmp / "runs" / "qat"


def test_cli_writes_the_run_directory(qat_run, tiny_baseline):
    from tfq.baseline import load_baseline
    from tfq.qat.config import QATConfig

    _, run = qat_run
    for name in ("run.json", "config.json", "plan.json", "metrics.jsonl", "accuracy_per_epoch.csv",
                 "qat_curves.png", "model_qat.h5", "model_int8.tflite", "model_int8_config.json",
                 "results.json", "results.md"):
        assert (run / name).is_file(), name
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["kind"] == "qat" and manifest["status"] == "complete"
    assert manifest["baseline"] == str(tiny_baseline)

    cfg = QATConfig.from_dict(json.loads((run / "config.json").read_text()))
    base = load_baseline(tiny_baseline)
    assert cfg.lr == pytest.approx(base.config.optimizer.lr / 100)  # default: baseline lr / 100
    assert cfg.batch_size == base.config.batch_size

    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert [r["bn_frozen"] for r in lines] == [False, True]  # freeze after 1 epoch
    assert [r["ranges_frozen"] for r in lines] == [False, True]

    rows = list(csv.DictReader((run / "accuracy_per_epoch.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert all(r["fp32_val_top1"] and r["ptq_val_top1"] and r["qat_val_top1"] for r in rows)
    assert (run / "qat_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_table_has_the_ptq_columns_and_the_tflite_is_int8(qat_run):
    from edge import tflite_model

    _, run = qat_run
    results = json.loads((run / "results.json").read_text())
    names = [r["name"] for r in results["rows"]]
    assert names[0] == "fp32" and names[1].startswith("ptq_int8") and names[2] == "qat_int8"
    for row in results["rows"]:
        for key in ("top1", "top5", "agreement", "sqnr_db", "size_bytes", "size_ratio", "latency_ms", "float_ops",
                    "delta_top1"):
            assert key in row, (row["name"], key)
    table = (run / "results.md").read_text()
    for h in PTQ_HEADERS:
        assert f" {h} " in table, h
    assert results["agreement"]["top1_agreement"] >= 0.99 and results["agreement"]["passed"]
    summary = tflite_model.summarize((run / "model_int8.tflite").read_bytes())
    assert summary.float_ops() == []
    assert {t.dtype for t in summary.weight_tensors()} == {"INT8"}
    assert results["reference"]["range_init"]["source"] == "calibrated"
    assert not results["reference"]["range_init"]["missing"]
    assert results["reference"]["ptq"]["source"] == "converted_here"


def test_same_command_resumes_an_interrupted_run(qat_run, tiny_baseline):
    tmp, run = qat_run
    manifest = json.loads((run / "run.json").read_text())
    manifest["status"] = "running"  # as if killed before the conversion
    (run / "run.json").write_text(json.dumps(manifest))
    (run / "results.json").unlink()
    assert main(_args(tiny_baseline, tmp)) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # the two finished epochs were restored, not trained again
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    assert (run / "results.json").is_file()
    # A finished run is never overwritten silently.
    assert main(_args(tiny_baseline, tmp)) == 2


def test_changed_check_thresholds_check_a_finished_run_again_without_training(qat_run, tiny_baseline):
    """What the experiment does when only QAT's check fields change: mark the run unfinished, rerun."""
    tmp, run = qat_run
    manifest = json.loads((run / "run.json").read_text())
    manifest["status"] = "interrupted"
    (run / "run.json").write_text(json.dumps(manifest))
    assert main(_args(tiny_baseline, tmp, "--set", "agreement_samples=64")) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # no epoch trained again
    assert json.loads((run / "results.json").read_text())["agreement"]["samples"] == 64
    assert json.loads((run / "config.json").read_text())["agreement_samples"] == 64
    # A training setting that differs is not a resume: the finished-looking directory is refused.
    manifest = json.loads((run / "run.json").read_text())
    manifest["status"] = "interrupted"
    (run / "run.json").write_text(json.dumps(manifest))
    assert main(_args(tiny_baseline, tmp, "--set", "agreement_samples=64", "--lr", "0.5")) == 2
    manifest["status"] = "complete"
    (run / "run.json").write_text(json.dumps(manifest))


def test_flags_override_the_config_file(tmp_path):
    from pipelines.qat import resolve_config
    from tfq.qat.config import Granularity

    cfg_file = tmp_path / "qat.yaml"
    cfg_file.write_text("keep_float: [stem_conv]\nepochs: 7\nfreeze_bn_after: 5\n")
    cfg = resolve_config(parse_args([
        "--model", "resnet18", "--config", str(cfg_file), "--epochs", "6", "--weights", "per_tensor",
        "--symmetric-activations", "--keep-float", "logits", "--calibration", "kl", "--no-init-from-ptq",
        "--freeze-ranges-after", "4", "--lr", "0.002", "--set", "freeze_bn_after=3",
    ]))
    assert cfg.epochs == 6 and cfg.lr == 0.002
    assert cfg.weights.granularity is Granularity.PER_TENSOR and cfg.activations.symmetric
    assert cfg.keep_float == ("stem_conv", "logits")
    assert cfg.calibration_method.value == "kl" and cfg.init_from_ptq is False
    assert cfg.freeze_bn_after == 3 and cfg.freeze_ranges_after == 4
    preset_cfg = resolve_config(parse_args(["--model", "resnet18", "--preset", "mixed_int8_fp16"]))
    assert preset_cfg.keep_float == ("stem_conv", "logits")


def test_missing_baseline_prints_the_training_command(tmp_path, capsys):
    code = main(parse_args(["--model", "resnet18", "--dataset", "cifar10", "--root", str(tmp_path)]))
    assert code == 2
    err = capsys.readouterr().err
    assert "no complete FP32 baseline for resnet18" in err
    assert "python -m pipelines.train --model resnet18 --dataset cifar10" in err


def test_keep_float_pattern_matching_nothing_lists_layers(tiny_baseline, tmp_path, capsys):
    code = main(_args(tiny_baseline, tmp_path, "--keep-float", "stage9_.*"))
    assert code == 2
    err = capsys.readouterr().err
    assert "'stage9_.*' matches no layer" in err
    assert "stage1_conv1" in err and "logits" in err
    assert not (tmp_path / "runs" / "qat").exists()  # failed before creating the run directory


def test_help_as_a_subprocess(repo_root, subprocess_env):
    out = subprocess.run([sys.executable, "-m", "pipelines.qat", "--help"], cwd=repo_root, env=subprocess_env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "--keep-float" in out.stdout and "--freeze-bn-after" in out.stdout


def test_distill_flag_runs_qat_with_the_teacher_term(tiny_baseline, tmp_path, monkeypatch):
    from tfq.qat import train as qtrain

    seen = {}
    real = qtrain.fine_tune

    def spy(*a, **kw):
        seen.update(teacher=kw.get("teacher"), t=kw.get("distill_temperature"), w=kw.get("distill_weight"))
        return real(*a, **kw)

    monkeypatch.setattr(qtrain, "fine_tune", spy)
    args = _args(tiny_baseline, tmp_path, "--distill", "--distill-temperature", "3", "--distill-weight", "0.6")
    args.epochs = 1
    args.freeze_bn_after = args.freeze_ranges_after = None
    assert main(args) == 0
    cfg = json.loads((tmp_path / "runs" / "qat" / "config.json").read_text())
    assert cfg["distill"] == {"enabled": True, "temperature": 3.0, "weight": 0.6}
    assert seen["teacher"] is not None and (seen["t"], seen["w"]) == (3.0, 0.6)
    assert (tmp_path / "runs" / "qat" / "model_int8.tflite").is_file()
