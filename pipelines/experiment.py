"""Run a config-driven experiment: the stages it names, cached, resumable, with one report.

Examples::

    python -m pipelines.experiment --config configs/experiments/tiny.yaml
    python -m pipelines.experiment --config configs/experiments/resnet18.yaml --repeats 3
    python -m pipelines.experiment --config configs/experiments/smallcnn.yaml --set ptq.calibration=[minmax,kl]
    python -m pipelines.experiment --config configs/experiments/tiny.yaml --out runs/tiny --rerun bench

The config (``tfq.experiment.ExperimentConfig``) names the stages (train, ptq,
qat, sensitivity, mixed, bench) and one section per stage; every section is
validated by that stage's own config class, and every stage's command line is
checked by that stage's own parser, before any work starts. Stages run in
dependency order into one experiment directory, each in its own sub-directory
(``<exp>/train``, ``<exp>/ptq``, ...), by calling the stage CLI's
``parse_args``/``main`` in this process (never a subprocess of this command).

Caching and resume (details in ``tfq/experiment.py``): running the same
command again reuses the newest experiment of the same name under ``--root``
(``--out DIR`` names it explicitly, ``--fresh`` starts a new one). A stage
whose config and inputs are unchanged (content hash in ``stages.json``) is
reused; a changed stage and the stages after it are recomputed, the outdated
directory moved aside to ``<stage>.old-<time>``; an interrupted stage resumes
(training from its last epoch, the others from the start).

``--repeats N`` repeats every latency measurement N times and trains N seeds
of the training stages (``repeat_training: false`` in the config: latency
only); the report gives mean ± standard deviation. At the end the report is
written to ``<exp>/report/`` (``--no-report`` skips it).

Exit status: 0 done, 1 a stage failed (rerun the same command after fixing
it), 2 bad config or arguments (nothing was run), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tfq  # noqa: F401
from tfq.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, guarded, setup_logging

if TYPE_CHECKING:
    from tfq.experiment import BenchSection, ExperimentConfig, StageContext

log = logging.getLogger("pipelines.experiment")

STAGE_NAMES = ("train", "ptq", "qat", "sensitivity", "mixed", "bench")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.experiment", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="experiment YAML or JSON (configs/experiments/*.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override one config key, e.g. --set train.epochs=5 or --set stages=[train,ptq]")
    p.add_argument("--repeats", type=int, help="repeat latency measurements (and training seeds) N times")
    o = p.add_argument_group("experiment directory")
    o.add_argument("--out", help="experiment directory (default: newest runs/<name>-<time>, or a new one)")
    o.add_argument("--root", default="runs", help="parent of derived experiment directories (default: runs)")
    o.add_argument("--fresh", action="store_true", help="start a new experiment directory instead of reusing")
    o.add_argument("--rerun", action="append", choices=STAGE_NAMES, default=[],
                   help="recompute this stage even when cached (repeatable)")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _set_dotted(mapping: dict[str, Any], key: str, value: Any) -> None:
    """Sets ``a.b.c`` in nested mappings, creating sections that are absent."""
    from tfq.configs import ConfigError

    node = mapping
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        elif not isinstance(nxt, dict):
            raise ConfigError(f"--set {key}: {part!r} holds {nxt!r}, not a section")
        node = nxt
    node[parts[-1]] = value


def load_config(args: argparse.Namespace) -> ExperimentConfig:
    """The config file, then ``--set`` overrides, then ``--repeats``; validated as a whole."""
    from tfq.configs import load_mapping, parse_scalar, parse_set_args
    from tfq.experiment import ExperimentConfig

    mapping = load_mapping(args.config)
    for key, raw in parse_set_args(args.set).items():
        _set_dotted(mapping, key, parse_scalar(raw))
    if args.repeats is not None:
        mapping["repeats"] = args.repeats
    return ExperimentConfig.from_dict(mapping)


# --------------------------------------------------------------------------- adapters
#
# One function per stage turns the unit's context into that stage CLI's
# arguments (written against the stage CLIs in this checkout: train, ptq,
# sensitivity, qat, mixed, edge.bench). Every argv is checked by the stage's
# own parse_args before any work starts (check_stage_clis), so a drift in a
# stage's flags fails early and names the stage.


#: Stages whose CLI continues an unfinished run in ``--out`` with the same
#: config (from its last finished epoch); the others restart with --overwrite.
RESUMES_ITSELF = {"train", "qat"}


def _common(ctx: StageContext) -> list[str]:
    """``--out``/``--root`` (searches stay inside the experiment) and ``--overwrite`` to restart."""
    argv = ["--out", str(ctx.out), "--root", str(ctx.exp_dir)]
    if ctx.resume and ctx.unit.stage.value not in RESUMES_ITSELF:
        argv.append("--overwrite")  # restart an interrupted stage in place
    return argv


def _baseline(ctx: StageContext) -> list[str]:
    from tfq.experiment import Stage

    return ["--baseline", str(ctx.inputs[Stage.TRAIN])]


def train_argv(ctx: StageContext) -> list[str]:
    """pipelines.train: the resolved TrainConfig as --config; resumes an unfinished --out itself."""
    return ["--config", str(ctx.write_config_file(ctx.stage_config.to_dict())), *_common(ctx)]


def ptq_argv(ctx: StageContext) -> list[str]:
    """pipelines.ptq: the shared PTQConfig keys as --config, modes and methods as flags."""
    sec = ctx.stage_config
    argv = [
        *_baseline(ctx),
        "--config", str(ctx.write_config_file(sec.options)),
        "--modes", *sec.modes,
        "--calibration", *sec.calibration,
        "--latency-runs", str(sec.latency_runs),
        "--warmup", str(sec.warmup),
    ]
    if sec.test_samples:
        argv += ["--test-samples", str(sec.test_samples)]
    if sec.int16x8_test_samples:
        argv += ["--int16x8-test-samples", str(sec.int16x8_test_samples)]
    if sec.threads:
        argv += ["--threads", *map(str, sec.threads)]
    return [*argv, *_common(ctx)]


def sensitivity_argv(ctx: StageContext) -> list[str]:
    """pipelines.sensitivity: SensitivityConfig as --config."""
    return [*_baseline(ctx), "--config", str(ctx.write_config_file(ctx.stage_config.to_dict())), *_common(ctx)]


def qat_argv(ctx: StageContext) -> list[str]:
    """pipelines.qat: QATConfig as --config, ranges from the experiment's PTQ stage.

    ``ptq_run`` is pointed at the experiment's PTQ stage when ranges are
    initialized from PTQ; the stage's own latency timing is skipped (the bench
    stage measures every model the same way).
    """
    from tfq.experiment import Stage

    data = ctx.stage_config.to_dict()
    if Stage.PTQ in ctx.inputs and data.get("init_from_ptq") and not data.get("ptq_run"):
        data["ptq_run"] = str(ctx.inputs[Stage.PTQ])
    return [*_baseline(ctx), "--config", str(ctx.write_config_file(data)), "--latency-runs", "0", *_common(ctx)]


def mixed_argv(ctx: StageContext) -> list[str]:
    """pipelines.mixed: MixedConfig (with its budget) as --config; the experiment's sensitivity run."""
    from tfq.experiment import Stage

    sens = ["--sensitivity", str(ctx.inputs[Stage.SENSITIVITY])] if Stage.SENSITIVITY in ctx.inputs else []
    return [*_baseline(ctx), "--config", str(ctx.write_config_file(ctx.stage_config.to_dict())), *sens,
            *_common(ctx)]


def bench_argv(
    sec: BenchSection, models: Sequence[str], target: str, threads: int, json_path: str | os.PathLike
) -> list[str]:
    """edge.bench for one target and thread count, results as JSON."""
    argv = [*models, "--target", target, "--threads", str(threads), "--runs", str(sec.runs),
            "--warmup", str(sec.warmup), "--min-seconds", str(sec.min_seconds), "--timeout", str(sec.timeout),
            "--json", str(json_path), "--overwrite"]
    if sec.allow_fallback:
        argv.append("--allow-fallback")
    return [*argv, *sec.extra_args]


#: Stage -> (CLI module, argv builder, exit codes that mean the stage finished).
#: pipelines.mixed exits 3 when no plan meets the budget; it still writes the
#: best plan (run.json status budget_not_met), which the report shows marked.
CLI_STAGES: dict[str, tuple[str, Any, tuple[int, ...]]] = {
    "train": ("pipelines.train", train_argv, (0,)),
    "ptq": ("pipelines.ptq", ptq_argv, (0,)),
    "sensitivity": ("pipelines.sensitivity", sensitivity_argv, (0,)),
    "qat": ("pipelines.qat", qat_argv, (0,)),
    "mixed": ("pipelines.mixed", mixed_argv, (0, 3)),
}


def _parse(module_name: str, argv: Sequence[str]) -> tuple[Any, argparse.Namespace]:
    """Imports a stage CLI and parses ``argv`` with its own parser.

    Raises:
      ImportError: The stage CLI is not in this checkout.
      ValueError: Its parser rejected the arguments (its message quoted).
    """
    mod = importlib.import_module(module_name)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return mod, mod.parse_args([str(a) for a in argv])
    except SystemExit as e:
        last = err.getvalue().strip().splitlines()[-1:] or [f"exit {e.code}"]
        raise ValueError(f"{module_name} rejected the arguments the experiment derives: {last[0]}") from None


def _run_cli(
    ctx: StageContext, module_name: str, argv: Sequence[str], ok_codes: Sequence[int] = (0,)
) -> int:
    """Runs one stage CLI in this process; returns its exit code.

    Raises:
      StageError: A non-accepted exit code.
      KeyboardInterrupt: The stage was interrupted (its guarded main returned 130).
    """
    from tfq.experiment import StageError

    ctx.record_command(module_name, argv)
    mod, ns = _parse(module_name, argv)
    rc = mod.main(ns)
    if rc == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    if rc not in ok_codes:
        raise StageError(f"{module_name} exited with status {rc}")
    return rc


def cli_adapter(stage: str) -> Any:
    """The adapter running one CLI stage (``CLI_STAGES``)."""
    module_name, build, ok_codes = CLI_STAGES[stage]

    def adapter(ctx: StageContext) -> None:
        _run_cli(ctx, module_name, build(ctx), ok_codes)

    adapter.__name__ = f"run_{stage}"
    return adapter


def bench_models(ctx: StageContext) -> list[tuple[str, str]]:
    """``(path relative to the experiment, absolute path)`` of every ``.tflite`` to benchmark."""
    from tfq.experiment import Stage

    out = []
    for stage in (Stage.PTQ, Stage.QAT, Stage.MIXED):
        d = ctx.inputs.get(stage)
        if d is None:
            continue
        for f in sorted(Path(d).glob("*.tflite")) + sorted(Path(d).glob("models/*.tflite")):
            rel = os.path.relpath(f, ctx.exp_dir)
            if not ctx.stage_config.include or any(re.search(p, rel) for p in ctx.stage_config.include):
                out.append((rel, str(f.resolve())))
    return out


def run_bench(ctx: StageContext) -> None:
    """The bench stage: edge.bench per target x threads x repeat, aggregated into a run directory.

    Writes ``raw/<target>-t<threads>-r<k>.json`` (edge.bench's own JSON),
    ``config.json`` and ``results.json`` (``measurements``: one entry per model,
    target, threads and repeat; ``summary``: mean ± std over repeats).
    """
    from tfq.experiment import StageError
    from tfq.reporting.collect import summarize_bench
    from tfq.rundir import RunDir, read_json

    sec, repeats = ctx.stage_config, ctx.config.repeats
    models = bench_models(ctx)
    if not models:
        raise StageError(f"no .tflite models to benchmark in {', '.join(str(p) for p in ctx.inputs.values())}"
                         + (f" matching {list(sec.include)}" if sec.include else ""))
    rel_of = {os.path.realpath(a): r for r, a in models}
    run = RunDir.create(kind="bench", out=ctx.out, overwrite=ctx.resume,
                        meta={"model": ctx.config.model, "dataset": ctx.config.dataset})
    run.write_json("config.json", {**sec.to_dict(), "repeats": repeats, "models": [r for r, _ in models]})
    measurements, interpreter, host = [], None, None
    for target in sec.targets:
        for threads in sec.threads:
            for k in range(repeats):
                json_path = ctx.out / "raw" / f"{target.value}-t{threads}-r{k}.json"
                _run_cli(ctx, "edge.bench", bench_argv(sec, [a for _, a in models], target.value, threads, json_path),
                         ok_codes=(0, 1))
                report = read_json(json_path)
                interpreter, host = report.get("interpreter") or interpreter, report.get("host") or host
                for res in report.get("results", []):
                    rel = rel_of.get(os.path.realpath(res.get("path", "")), res.get("model"))
                    measurements.append({
                        "file": rel, "stage": rel.split("/")[0], "target": target.value, "threads": threads,
                        "repeat": k, "status": res.get("status"), "error": res.get("error"),
                        "latency_ms": res.get("latency_ms"), "peak_rss_mb": res.get("peak_rss_mb"),
                        "size_bytes": res.get("size_bytes"), "delegate": res.get("delegate"),
                        "fallback": res.get("fallback"), "measured_runs": res.get("measured_runs"),
                    })
    ok = [m for m in measurements if m["status"] == "ok"]
    if not ok:
        errors = sorted({str(m["error"]) for m in measurements})
        raise StageError(f"edge.bench measured none of {len(models)} model(s): {'; '.join(errors[:3])}")
    setup = {"targets": [t.value for t in sec.targets], "threads": list(sec.threads), "runs": sec.runs,
             "warmup": sec.warmup, "min_seconds": sec.min_seconds, "repeats": repeats,
             "interpreter": interpreter, "host": host}
    run.write_json("results.json", {"setup": setup, "measurements": measurements,
                                    "summary": summarize_bench(measurements)})
    run.mark_complete(measured=len(ok), failed=len(measurements) - len(ok))


def adapters() -> dict[Any, Any]:
    """Stage -> adapter for every stage."""
    from tfq.experiment import Stage

    out = {Stage(name): cli_adapter(name) for name in CLI_STAGES}
    out[Stage.BENCH] = run_bench
    return out


def check_stage_clis(cfg: ExperimentConfig) -> None:
    """Before any work: every listed stage's CLI exists and accepts the arguments derived for it.

    Raises:
      ConfigError: Naming the stage and the problem.
    """
    from tfq.configs import ConfigError
    from tfq.experiment import GRAPH, Stage, StageContext

    with tempfile.TemporaryDirectory(prefix="tfq-exp-check-") as tmp:
        exp = Path(tmp)
        for unit in cfg.units():
            inputs = {s: exp / s.value for s in (*GRAPH[unit.stage].requires, *GRAPH[unit.stage].uses)
                      if s in cfg.stages or (s is Stage.TRAIN and cfg.baseline)}
            ctx = StageContext(cfg, unit, exp, exp / unit.name, inputs, cfg.stage_config(unit.stage, unit.replica))
            if unit.stage is Stage.BENCH:
                module, argv = "edge.bench", bench_argv(cfg.bench, ["model.tflite"], cfg.bench.targets[0].value,
                                                        cfg.bench.threads[0], exp / "b.json")
            else:
                module, build, _ = CLI_STAGES[unit.stage.value]
                argv = build(ctx)
            try:
                _parse(module, argv)
            except ImportError as e:
                raise ConfigError(f"stage {unit.stage.value!r} is listed in stages but its CLI {module} is not "
                                  f"available in this checkout ({e}); remove it from stages") from None
            except ValueError as e:
                raise ConfigError(f"stage {unit.name!r}: {e}") from None


def experiment_dir(args: argparse.Namespace, cfg: ExperimentConfig) -> Path:
    """``--out``, else the newest experiment of this name under ``--root`` (unless ``--fresh``), else a new one."""
    from tfq.experiment import find_experiment
    from tfq.rundir import timestamp

    if args.out:
        return Path(args.out)
    if not args.fresh:
        found = find_experiment(args.root, cfg.run_name)
        if found is not None:
            log.info("continuing the experiment in %s (pass --fresh to start a new one)", found)
            return found
    return Path(args.root) / f"{cfg.run_name}-{timestamp()}"


@guarded
def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    from tfq.experiment import Experiment, Stage, StageError

    cfg = load_config(args)
    check_stage_clis(cfg)
    path = experiment_dir(args, cfg)
    print(f"experiment directory: {path}", flush=True)
    exp = Experiment(cfg, path, adapters(), rerun=[Stage(s) for s in args.rerun],
                     command=["python", "-m", "pipelines.experiment", *args.argv])
    try:
        outcomes = exp.run()
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        print("fix the cause and run the same command again: finished stages are reused", file=sys.stderr)
        return EXIT_FAILURE
    setup_logging(args.verbose)  # the stage CLIs reconfigure logging
    print("\nstages:")
    for o in outcomes:
        took = f" in {o.seconds:.0f} s" if o.action != "reused" else ""
        print(f"  {o.unit.name:<16} {o.action}{took}")
    if not args.no_report:
        from tfq.reporting.build import build_report

        written = build_report([path], path / "report", overwrite=True)
        print(f"report: {written['markdown']} and {written['html'].name} "
              f"({len(written['plots'])} plots: {', '.join(p.name for p in written['plots'])})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))


__all__ = ["adapters", "check_stage_clis", "load_config", "main", "parse_args"]
