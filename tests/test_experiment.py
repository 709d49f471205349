"""Experiments: config validation, the stage graph, hashing, caching and resume, the tiny experiment.

Fast tests drive :class:`tfq.experiment.Experiment` with fake adapters (no
TensorFlow). The integration tests run ``configs/experiments/tiny.yaml``
through ``pipelines.experiment`` in-process, once per module (about a minute
and a half on 2 cores), on the stages whose CLIs exist in this checkout; a
stage that is not there yet is skipped with its reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfq.configs import ConfigError, load_mapping
from tfq.experiment import (
    GRAPH,
    STAGE_ORDER,
    Experiment,
    ExperimentConfig,
    Stage,
    StageError,
    Target,
    dir_digest,
    stage_available,
    unit_hash,
    Unit,
)
from tfq.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "experiments" / "tiny.yaml"


# --------------------------------------------------------------------------- config


def test_committed_configs_validate():
    for name in ("tiny", "smallcnn", "resnet18", "mobilenetv2"):
        data = load_mapping(REPO / "configs" / "experiments" / f"{name}.yaml")
        listed = [s for s in data.get("stages", []) if stage_available(Stage(s))]
        cfg = ExperimentConfig.from_dict({**data, "stages": listed})
        assert cfg.units(), name
        if name != "tiny":
            assert cfg.dataset == "cifar10"
            assert cfg.model == name


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"foo": 1}, ["unknown key foo", "valid keys are", "stages"]),
        ({"stages": ["train", "ptqq"]}, ["stages[1]", "'ptqq'", "valid choices", "'ptq'", "'bench'"]),
        ({"train": {"optimizer": {"lrr": 0.1}}}, ["train.optimizer.lrr", "valid keys", "lr"]),
        ({"ptq": {"modes": ["int9"]}}, ["ptq.modes[0]", "'int9'", "'int8'", "'int16x8'"]),
        ({"ptq": {"options": {"granularty": "per_tensor"}}}, ["ptq.options.granularty", "granularity"]),
        ({"sensitivity": {"variants": ["nope"]}}, ["sensitivity.variants[0]", "'only_int8'"]),
        ({"bench": {"targets": ["tpu"]}}, ["bench.targets[0]", "'tpu'", "'edgetpu'"]),
        ({"model": "resnet19"}, ["resnet19", "resnet18"]),
        ({"dataset": "cifar11"}, ["cifar11", "cifar10"]),
        ({"stages": ["ptq"]}, ["'ptq' needs 'train'", "baseline"]),
        ({"stages": ["train", "bench"]}, ["'bench' needs one of", "ptq"]),
        ({"repeats": 0}, ["repeats"]),
        ({"ptq": {"int16x8_test_samples": 0}}, ["ptq.int16x8_test_samples must be >= 1"]),
        ({"stages": ["train", "mixed"], "mixed": {}}, ["mixed.budget", "max_drop"]),
    ],
)
def test_bad_config_names_key_and_choices(data, expected):
    with pytest.raises(ConfigError) as e:
        ExperimentConfig.from_dict(data)
    for text in expected:
        assert text in str(e.value), (text, str(e.value))


def test_train_section_cannot_contradict_top_level():
    with pytest.raises(ConfigError, match="set it at the top level"):
        ExperimentConfig.from_dict({"model": "smallcnn", "train": {"model": {"name": "resnet18"}}})


def test_train_config_merges_defaults_section_and_seed():
    cfg = ExperimentConfig.from_dict({"dataset": "digits", "seed": 7, "repeats": 3,
                                      "train": {"epochs": 2, "model": {"width_multiplier": 0.5}}})
    t0, t2 = cfg.train_config(0), cfg.train_config(2)
    assert (t0.epochs, t0.model.width_multiplier, t0.batch_size) == (2, 0.5, 32)  # digits default batch 32
    assert (t0.seed, t2.seed) == (7, 9)
    names = [u.name for u in cfg.units()]
    assert names == ["train", "ptq", "bench", "train.rep1", "train.rep2"]
    latency_only = cfg.replace(repeat_training=False)
    assert [u.name for u in latency_only.units()] == ["train", "ptq", "bench"]


def test_units_follow_the_graph_order():
    cfg = ExperimentConfig.from_dict({
        "stages": ["bench", "mixed", "sensitivity", "ptq", "train"], "mixed": {"budget": {"max_drop": 1}},
    })
    assert [u.name for u in cfg.units()] == ["train", "ptq", "sensitivity", "mixed", "bench"]
    for stage, spec in GRAPH.items():
        for before in (*spec.requires, *spec.uses, *spec.needs_one_of):
            assert STAGE_ORDER.index(before) < STAGE_ORDER.index(stage), (before, stage)


def test_targets_match_edge_bench():
    from edge.bench import TARGETS

    assert tuple(t.value for t in Target) == tuple(TARGETS)


def test_hash_changes_with_config_and_inputs(tmp_path):
    u = Unit("ptq", Stage.PTQ)
    h = unit_hash(u, {"a": 1}, {"train": "x"})
    assert h == unit_hash(u, {"a": 1}, {"train": "x"})
    assert h != unit_hash(u, {"a": 2}, {"train": "x"})
    assert h != unit_hash(u, {"a": 1}, {"train": "y"})
    assert h != unit_hash(Unit("ptq.rep1", Stage.PTQ, 1), {"a": 1}, {"train": "x"})


def test_digest_ignores_manifest_and_scratch(tmp_path):
    run = RunDir.create(kind="train", out=tmp_path / "r")
    run.write_json("results.json", {"top1": 0.5})
    d = dir_digest(run.path)
    run.update_manifest(status="complete")
    (run.path / "backup").mkdir()
    (run.path / "backup" / "ckpt").write_text("x")
    assert dir_digest(run.path) == d
    run.write_json("results.json", {"top1": 0.6})
    assert dir_digest(run.path) != d


# --------------------------------------------------------------------------- runner with fake adapters


class FakeStages:
    """Adapters that write a minimal complete run directory and count their calls."""

    def __init__(self):
        self.calls: list[tuple[str, bool]] = []
        self.interrupt: set[str] = set()
        self.fail: set[str] = set()

    def adapter(self, stage: Stage):
        def run(ctx):
            self.calls.append((ctx.unit.name, ctx.resume))
            if ctx.unit.name in self.interrupt:
                RunDir.create(kind=stage.value, out=ctx.out, overwrite=ctx.resume)
                raise KeyboardInterrupt
            if ctx.unit.name in self.fail:
                raise RuntimeError("boom")
            ctx.record_command(f"fake.{stage.value}", ["--out", str(ctx.out)])
            run_dir = RunDir.create(kind=stage.value, out=ctx.out, overwrite=ctx.resume)
            run_dir.write_json("results.json", {"config": ctx.stage_config.to_dict(),
                                                "inputs": sorted(s.value for s in ctx.inputs)})
            run_dir.mark_complete()

        return run

    def adapters(self):
        return {s: self.adapter(s) for s in Stage}


def _cfg(**over):
    data = {"name": "fake", "stages": ["train", "ptq", "bench"], "train": {"epochs": 1},
            "ptq": {"modes": ["fp32", "int8"]}}
    data.update(over)
    return ExperimentConfig.from_dict(data)


def _statuses(path: Path) -> dict[str, str]:
    return {k: v["status"] for k, v in json.loads((path / "stages.json").read_text())["units"].items()}


def test_reuse_recompute_downstream_and_move_aside(tmp_path):
    fake = FakeStages()
    path = tmp_path / "exp"
    Experiment(_cfg(), path, fake.adapters()).run()
    assert [c for c, _ in fake.calls] == ["train", "ptq", "bench"]
    assert _statuses(path) == {"train": "complete", "ptq": "complete", "bench": "complete"}
    assert (path / "experiment.json").is_file() and (path / "environment.json").is_file()
    mtime = (path / "train" / "results.json").stat().st_mtime_ns

    fake.calls.clear()
    outcomes = Experiment(_cfg(), path, fake.adapters()).run()
    assert fake.calls == []
    assert {o.action for o in outcomes} == {"reused"}
    assert set(_statuses(path).values()) == {"reused"}
    assert (path / "train" / "results.json").stat().st_mtime_ns == mtime

    # A changed ptq section recomputes ptq and bench (its input changed), not train.
    Experiment(_cfg(ptq={"modes": ["fp32", "int8"], "calibration": ["minmax", "kl"]}), path, fake.adapters()).run()
    assert [c for c, _ in fake.calls] == ["ptq", "bench"]
    assert len(list(path.glob("ptq.old-*"))) == 1 and len(list(path.glob("bench.old-*"))) == 1
    assert not list(path.glob("train.old-*"))
    assert json.loads((path / "ptq" / "results.json").read_text())["config"]["calibration"] == ["minmax", "kl"]

    # --rerun forces a stage; stages after it are reused when its output is byte-identical
    # (their input digest is unchanged), recomputed otherwise.
    cfg2 = _cfg(ptq={"modes": ["fp32", "int8"], "calibration": ["minmax", "kl"]})
    fake.calls.clear()
    Experiment(cfg2, path, fake.adapters(), rerun=[Stage.TRAIN]).run()
    assert [c for c, _ in fake.calls] == ["train"]
    fake.calls.clear()
    Experiment(cfg2, path, fake.adapters(), rerun=[Stage.PTQ]).run()
    assert [c for c, _ in fake.calls] == ["ptq"]
    (path / "ptq" / "extra.tflite").write_bytes(b"new output")
    fake.calls.clear()
    Experiment(cfg2, path, fake.adapters(), rerun=[Stage.TRAIN]).run()
    # ptq's directory no longer has its recorded digest -> recomputed; it then writes the same output
    # as before (the recorded digest), so bench stays cached.
    assert [c for c, _ in fake.calls] == ["train", "ptq"]
    assert not (path / "ptq" / "extra.tflite").exists()


def test_changed_qat_check_threshold_rechecks_in_place_without_recomputing(tmp_path):
    fake = FakeStages()
    path = tmp_path / "exp"
    stages = ["train", "ptq", "qat", "bench"]
    Experiment(_cfg(stages=stages, qat={"epochs": 1}), path, fake.adapters()).run()
    fake.calls.clear()
    # Only a check threshold changed: QAT runs again in its own directory as a resume (the QAT
    # CLI then converts and checks without training); train and ptq are reused. Bench follows
    # because QAT's output changed (its config.json records the threshold; here results.json).
    outcomes = Experiment(_cfg(stages=stages, qat={"epochs": 1, "min_agreement": 0.95}), path,
                          fake.adapters()).run()
    assert fake.calls == [("qat", True), ("bench", False)]
    assert [o.action for o in outcomes] == ["reused", "reused", "resumed", "computed"]
    assert not list(path.glob("qat.old-*"))
    rec = json.loads((path / "stages.json").read_text())["units"]["qat"]
    assert rec["check"]["min_agreement"] == 0.95 and rec["status"] == "complete"
    # The same thresholds again: reused.
    fake.calls.clear()
    Experiment(_cfg(stages=stages, qat={"epochs": 1, "min_agreement": 0.95}), path, fake.adapters()).run()
    assert fake.calls == []
    # A training setting changed: recomputed (old directory moved aside), and bench after it.
    Experiment(_cfg(stages=stages, qat={"epochs": 2, "min_agreement": 0.95}), path, fake.adapters()).run()
    assert [c for c, _ in fake.calls] == ["qat", "bench"] and len(list(path.glob("qat.old-*"))) == 1


def test_dropped_stage_is_reused_when_it_comes_back(tmp_path):
    fake = FakeStages()
    path = tmp_path / "exp"
    with_sens = _cfg(stages=["train", "ptq", "sensitivity", "bench"])
    Experiment(with_sens, path, fake.adapters()).run()
    Experiment(_cfg(), path, fake.adapters()).run()
    assert _statuses(path)["sensitivity"] == "dropped"
    fake.calls.clear()
    Experiment(with_sens, path, fake.adapters()).run()
    assert fake.calls == [] and _statuses(path)["sensitivity"] == "reused"


def test_cli_overrides_and_repeats(tmp_path):
    from pipelines.experiment import load_config, parse_args

    cfg = load_config(parse_args(["--config", str(TINY), "--repeats", "3", "--set", "train.optimizer.lr=0.02",
                                  "--set", "stages=[train,ptq,bench]", "--set", "bench.threads=[1,2]"]))
    assert cfg.repeats == 3 and cfg.train_config().optimizer.lr == 0.02
    assert cfg.stages == (Stage.TRAIN, Stage.PTQ, Stage.BENCH) and cfg.bench.threads == (1, 2)
    assert [u.name for u in cfg.units()] == ["train", "ptq", "bench"]  # tiny: repeat_training false
    with pytest.raises(ConfigError, match="not a section"):
        load_config(parse_args(["--config", str(TINY), "--set", "seed.x=1"]))


def test_cli_adapter_maps_exit_codes(monkeypatch):
    """A stage CLI's 130 becomes KeyboardInterrupt, other codes StageError, parser errors ValueError."""
    import types

    from pipelines.experiment import _parse, _run_cli

    def parse_args(argv):
        import argparse

        p = argparse.ArgumentParser(prog="fake")
        p.add_argument("--code", type=int, required=True)
        return p.parse_args(argv)

    module = types.SimpleNamespace(parse_args=parse_args, main=lambda args: args.code)
    monkeypatch.setitem(sys.modules, "fake_stage_cli", module)
    recorded = []
    ctx = types.SimpleNamespace(record_command=lambda m, argv: recorded.append([m, *argv]))
    assert _run_cli(ctx, "fake_stage_cli", ["--code", "0"]) == 0
    assert _run_cli(ctx, "fake_stage_cli", ["--code", "3"], ok_codes=(0, 3)) == 3
    with pytest.raises(StageError, match="exited with status 1"):
        _run_cli(ctx, "fake_stage_cli", ["--code", "1"])
    with pytest.raises(KeyboardInterrupt):
        _run_cli(ctx, "fake_stage_cli", ["--code", "130"])
    with pytest.raises(ValueError, match="fake_stage_cli rejected the arguments.*--nope"):
        _parse("fake_stage_cli", ["--code", "1", "--nope"])
    assert recorded[0] == ["fake_stage_cli", "--code", "0"]


def test_interrupted_stage_resumes_in_place(tmp_path):
    fake = FakeStages()
    path = tmp_path / "exp"
    fake.interrupt.add("bench")
    with pytest.raises(KeyboardInterrupt):
        Experiment(_cfg(), path, fake.adapters()).run()
    assert _statuses(path) == {"train": "complete", "ptq": "complete", "bench": "interrupted"}
    assert RunDir(path).manifest()["status"] == "interrupted"

    fake.interrupt.clear()
    fake.calls.clear()
    outcomes = Experiment(_cfg(), path, fake.adapters()).run()
    assert fake.calls == [("bench", True)]  # resumed in the same directory, not moved aside
    assert [o.action for o in outcomes] == ["reused", "reused", "resumed"]
    assert not list(path.glob("bench.old-*"))
    assert json.loads((path / "stages.json").read_text())["units"]["bench"]["attempts"] == 2


def test_failed_stage_raises_and_is_recorded(tmp_path):
    fake = FakeStages()
    fake.fail.add("ptq")
    path = tmp_path / "exp"
    with pytest.raises(StageError, match="stage 'ptq' failed: boom"):
        Experiment(_cfg(), path, fake.adapters()).run()
    rec = json.loads((path / "stages.json").read_text())["units"]
    assert rec["ptq"]["status"] == "failed" and rec["ptq"]["error"] == "boom"
    assert "bench" not in rec


def test_changed_output_of_a_finished_stage_is_recomputed(tmp_path):
    fake = FakeStages()
    path = tmp_path / "exp"
    Experiment(_cfg(), path, fake.adapters()).run()
    (path / "ptq" / "results.json").write_text("{}")  # edited by hand
    fake.calls.clear()
    Experiment(_cfg(), path, fake.adapters()).run()
    assert [c for c, _ in fake.calls] == ["ptq"]  # same output again -> bench's input digest unchanged
    assert json.loads((path / "ptq" / "results.json").read_text())["config"]["modes"] == ["fp32", "int8"]
    assert len(list(path.glob("ptq.old-*"))) == 1  # the edited copy was kept aside


def test_external_baseline_is_checked_before_work(tmp_path):
    fake = FakeStages()
    not_done = RunDir.create(kind="train", out=tmp_path / "base", meta={"model": "smallcnn"})
    cfg = ExperimentConfig.from_dict({"stages": ["ptq", "bench"], "baseline": str(not_done.path)})
    with pytest.raises(ConfigError, match="not a finished training run"):
        Experiment(cfg, tmp_path / "exp", fake.adapters()).run()
    assert fake.calls == [] and not (tmp_path / "exp").exists()
    not_done.mark_complete()
    Experiment(cfg, tmp_path / "exp", fake.adapters()).run()
    assert [c for c, _ in fake.calls] == ["ptq", "bench"]
    assert json.loads((tmp_path / "exp" / "ptq" / "results.json").read_text())["inputs"] == ["train"]


# --------------------------------------------------------------------------- the CLI


def _write_config(tmp_path: Path, **changes) -> Path:
    data = load_mapping(TINY)
    data.update(changes)
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(data))
    return path


def test_cli_unknown_key_fails_before_any_work(tmp_path, capsys):
    from pipelines.experiment import main, parse_args

    bad = _write_config(tmp_path, bench={"targets": ["cpu"], "thread": [1]})
    root = tmp_path / "runs"
    assert main(parse_args(["--config", str(bad), "--root", str(root)])) == 2
    err = capsys.readouterr().err
    assert "unknown key bench.thread" in err and "valid keys are" in err and "threads" in err
    assert not root.exists()


def test_cli_bad_set_value_names_choices(tmp_path, capsys):
    from pipelines.experiment import main, parse_args

    code = main(parse_args(["--config", str(TINY), "--root", str(tmp_path), "--set", "ptq.calibration=[minmax,best]"]))
    assert code == 2
    assert "ptq.calibration[1]: got 'best'; valid choices are 'minmax', 'percentile', 'kl', 'mse'" in \
        capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_subprocess_bad_value_exit_2(tmp_path, subprocess_env):
    bad = _write_config(tmp_path, stages=["train", "quantize"])
    proc = subprocess.run([sys.executable, "-m", "pipelines.experiment", "--config", str(bad), "--root",
                           str(tmp_path / "runs")], capture_output=True, text=True, env=subprocess_env, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "stages[1]: got 'quantize'; valid choices are" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- the tiny experiment, for real

SKIPPED_REASONS = {
    s: f"pipelines CLI {GRAPH[s].cli} is not in this checkout yet" for s in Stage if not stage_available(s)
}
#: QAT works in the tiny experiment but takes about a minute on 2 cores (tracing the fake-quant
#: model and converting it), so the default run leaves it out; test_qat_added_to_the_tiny_experiment
#: (slow, --runslow) adds it.
LEFT_OUT = {Stage.QAT}


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    """Runs the tiny config (stages available in this checkout, QAT left out) once; returns (path, argv)."""
    from pipelines.experiment import main, parse_args

    stages = [s for s in load_mapping(TINY)["stages"] if Stage(s) not in SKIPPED_REASONS and Stage(s) not in LEFT_OUT]
    path = tmp_path_factory.mktemp("experiment") / "tiny"
    argv = ["--config", str(TINY), "--out", str(path), "--set", f"stages=[{','.join(stages)}]"]
    assert main(parse_args(argv)) == 0
    return path, argv


def _records(path: Path) -> dict:
    return json.loads((path / "stages.json").read_text())["units"]


def test_tiny_experiment_produces_the_whole_report(tiny_experiment):
    path, _ = tiny_experiment
    recs = _records(path)
    assert {r["status"] for r in recs.values()} == {"complete"}
    for name, rec in recs.items():
        assert (path / rec["dir"] / "run.json").is_file()
        assert rec["commands"] and rec["commands"][0][:2] == ["python", "-m"]
    report = path / "report"
    md = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    for text in ("FP32 (Keras)", "fp32", "int8_minmax", "int8_percentile", "top-1 (%)", "cpu 1 thr p50 (ms)",
                 "peak RSS cpu (MB)", "± ", "TensorFlow", "LiteRT", "CPU model", "python -m pipelines.experiment",
                 "python -m pipelines.train", "python -m edge.bench"):
        assert text in md, text
    for png in ("acc_vs_size.png", "acc_vs_latency.png", "calibration_methods.png"):
        assert (report / png).is_file(), png
        assert f"]({png})" in md
    assert "data:image/png;base64," in html and 'src="acc_vs' not in html
    if "sensitivity" in recs:
        assert (report / "sensitivity.png").is_file()
    if "mixed" in recs:
        assert "| mixed" in md
    rows = json.loads((report / "report.json").read_text())["rows"]
    int8 = next(r for r in rows if r["label"] == "int8_minmax")
    assert int8["latency_ms"]["cpu 1 thr"]["p50"]["n"] == 2  # repeats: 2
    assert 0 < int8["size_ratio"] < 0.5


def test_tiny_experiment_second_run_reuses_everything(tiny_experiment, capsys):
    from pipelines.experiment import main, parse_args

    path, argv = tiny_experiment
    before = {p: p.stat().st_mtime_ns for p in path.glob("*/results.json")}
    assert main(parse_args(argv)) == 0
    assert {r["status"] for r in _records(path).values()} == {"reused"}
    assert {p: p.stat().st_mtime_ns for p in path.glob("*/results.json")} == before
    assert "reused" in capsys.readouterr().out


def test_tiny_experiment_changed_bench_recomputes_only_bench(tiny_experiment):
    from pipelines.experiment import main, parse_args

    path, argv = tiny_experiment
    hashes = {k: r["hash"] for k, r in _records(path).items()}
    assert main(parse_args([*argv, "--set", "bench.runs=10", "--no-report"])) == 0
    recs = _records(path)
    assert recs["bench"]["status"] == "complete" and recs["bench"]["hash"] != hashes["bench"]
    assert {k: r["status"] for k, r in recs.items() if k != "bench"} == {k: "reused" for k in recs if k != "bench"}
    assert list(path.glob("bench.old-*"))
    assert json.loads((path / "bench" / "config.json").read_text())["runs"] == 10


def test_report_on_one_stage_run_dir(tiny_experiment, tmp_path):
    from pipelines.report import main, parse_args

    path, _ = tiny_experiment
    out = tmp_path / "ptq-report"
    assert main(parse_args([str(path / "ptq"), "--out", str(out)])) == 0
    md = (out / "report.md").read_text()
    assert "int8_minmax" in md and "int8_percentile" in md and "python -m pipelines.ptq" in md
    assert (out / "acc_vs_size.png").is_file() and (out / "calibration_methods.png").is_file()
    # an existing report is not replaced without --overwrite
    assert main(parse_args([str(path / "ptq"), "--out", str(out)])) == 2
    assert main(parse_args([str(path / "ptq"), str(path / "train"), "--out", str(out), "--overwrite"])) == 0
    assert "FP32 (Keras)" in (out / "report.md").read_text()


@pytest.mark.slow
def test_qat_added_to_the_tiny_experiment(tiny_experiment):
    """Adding QAT computes it alone (plus bench, whose inputs grew); the report gains its rows and curve."""
    if Stage.QAT in SKIPPED_REASONS:
        pytest.skip(SKIPPED_REASONS[Stage.QAT])
    from pipelines.experiment import main, parse_args

    path, _ = tiny_experiment
    stages = [s for s in load_mapping(TINY)["stages"] if Stage(s) not in SKIPPED_REASONS]
    assert main(parse_args(["--config", str(TINY), "--out", str(path)] + (
        [] if len(stages) == len(load_mapping(TINY)["stages"]) else ["--set", f"stages=[{','.join(stages)}]"]))) == 0
    recs = _records(path)
    assert recs["qat"]["status"] == "complete" and recs["bench"]["status"] == "complete"
    assert {recs[k]["status"] for k in ("train", "ptq")} == {"reused"}
    config = json.loads((path / "configs" / "qat.json").read_text())
    assert config["ptq_run"] == str(path / "ptq")
    md = (path / "report" / "report.md").read_text()
    assert "| QAT int8" in md and "qat/model_int8.tflite" in json.dumps(
        json.loads((path / "bench" / "results.json").read_text())["measurements"])
    assert_png = (path / "report" / "qat_curve.png")
    assert assert_png.is_file() and assert_png.stat().st_size > 8000
