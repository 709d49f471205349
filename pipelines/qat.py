"""Quantization-aware training of an FP32 baseline, with a PTQ-style table.

Examples::

    # The newest complete baseline of resnet18, 10 epochs at baseline lr / 100:
    python -m pipelines.qat --model resnet18

    # An explicit baseline, per-tensor weights, symmetric activations:
    python -m pipelines.qat --baseline runs/resnet18-cifar10-20250101-120000 \\
        --weights per_tensor --symmetric-activations

    # Mixed INT8/FP16: keep the stem and the classifier float:
    python -m pipelines.qat --model mobilenetv2 --keep-float 'stem_.*' --keep-float logits

    # A config file (QATConfig fields), then flags, then --set overrides:
    python -m pipelines.qat --model resnet18 --config configs/qat/resnet18_cifar10.yaml \\
        --set freeze_bn_after=6

Configuration is resolved in this order: the defaults (or ``--preset NAME``),
then ``--config FILE`` (YAML/JSON with :class:`tfq.qat.QATConfig` fields), then
the flags given, then ``--set KEY=VALUE``; ``lr``/``batch_size``/
``weight_decay`` left unset come from the baseline (lr / 100). The resolved
config is written to ``config.json``.

Ranges start from the PTQ calibration: a complete PTQ run of the same
baseline under ``--root`` (its ``int8_<method>_ranges.json``), else the same
calibration run here on the calib split. The PTQ reference in the table is
that run's best INT8 model, else one converted here.

Outputs, in ``runs/<model>-<dataset>-qat-<time>/`` (or ``--out DIR``):
``model_qat.h5``, ``model_int8.tflite`` + ``model_int8_config.json``,
``config.json``, ``metrics.jsonl``, ``accuracy_per_epoch.csv``,
``qat_curves.png``, ``results.json`` and ``results.md`` (see
:mod:`tfq.qat.stage`). Resume: run the same command again; the newest
unfinished (or failed) QAT run of the same baseline and configuration is
continued from its last finished epoch (``--fresh`` starts a new one); the
check thresholds (``min_agreement``, ``max_logit_steps``,
``agreement_samples``) may differ, so a failed check can be re-run without
training again.
"""

from __future__ import annotations

import argparse
import logging
import sys

import tfq  # noqa: F401  (Keras 2 before TensorFlow)
from tfq.cli import EXIT_FAILURE, EXIT_OK, add_common_args, guarded, setup_logging

log = logging.getLogger("pipelines.qat")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parses the command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m pipelines.qat", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_argument_group("FP32 baseline")
    g.add_argument("--model", help="model name of the baseline to find (resnet18, mobilenetv2, smallcnn, ...)")
    g.add_argument("--dataset", help="dataset of the baseline (default: any)")
    g.add_argument("--baseline", metavar="RUN_DIR", help="an explicit training run directory")
    q = p.add_argument_group("quantization")
    q.add_argument("--preset", help="start from a named preset (int8_per_channel, int8_per_tensor, ...)")
    q.add_argument("--weights", choices=["per_channel", "per_tensor"], help="Conv/DepthwiseConv weight granularity")
    q.add_argument("--symmetric-activations", action="store_true", default=None,
                   help="symmetric activation ranges (zero point 0)")
    q.add_argument("--keep-float", action="append", metavar="REGEX",
                   help="keep layers whose whole name matches REGEX float (FP16 weights); repeatable")
    q.add_argument("--calibration", choices=["minmax", "percentile", "kl", "mse"],
                   help="calibration method of the range initialization")
    q.add_argument("--no-init-from-ptq", dest="init_from_ptq", action="store_false", default=None,
                   help="start ranges cold (TFMOT's defaults) instead of from PTQ calibration")
    q.add_argument("--ptq-run", metavar="RUN_DIR", help="take ranges and the PTQ reference from this PTQ run")
    t = p.add_argument_group("fine-tuning")
    t.add_argument("--epochs", type=int)
    t.add_argument("--lr", type=float, help="peak learning rate (default: baseline lr / 100)")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--steps-per-epoch", type=int, help="cap steps per epoch (smoke tests)")
    t.add_argument("--freeze-bn-after", type=int, metavar="K", help="freeze BatchNorm statistics from epoch K on")
    t.add_argument("--freeze-ranges-after", type=int, metavar="K", help="freeze activation ranges from epoch K on")
    t.add_argument("--seed", type=int)
    t.add_argument("--distill", action="store_true", default=None,
                   help="distill from the FP32 baseline (KL on softened logits plus the label loss)")
    t.add_argument("--distill-temperature", type=float, metavar="T", help="softening temperature (default 4)")
    t.add_argument("--distill-weight", type=float, metavar="W", help="share of the teacher term in [0, 1] (default 0.5)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--test-samples", type=int, help="evaluate on the first N test images only")
    e.add_argument("--latency-runs", type=int, default=50, help="timed runs per thread count (0 skips latency)")
    e.add_argument("--threads", type=int, action="append", help="thread counts for latency (repeatable)")
    add_common_args(p)
    p.add_argument("--fresh", action="store_true", help="start a new run instead of resuming an unfinished one")
    return p.parse_args(argv)


_FLAG_FIELDS = {
    "epochs": "epochs",
    "lr": "lr",
    "batch_size": "batch_size",
    "steps_per_epoch": "steps_per_epoch",
    "freeze_bn_after": "freeze_bn_after",
    "freeze_ranges_after": "freeze_ranges_after",
    "seed": "seed",
    "calibration": "calibration_method",
    "init_from_ptq": "init_from_ptq",
    "ptq_run": "ptq_run",
    "distill": "distill.enabled",
    "distill_temperature": "distill.temperature",
    "distill_weight": "distill.weight",
}


def resolve_config(args: argparse.Namespace):
    """Defaults (or --preset) -> --config file -> flags -> --set overrides."""
    from tfq.configs import load_mapping, parse_set_args
    from tfq.qat.config import QATConfig, preset

    cfg = preset(args.preset) if args.preset else QATConfig()
    if args.config:
        data = cfg.to_dict()
        data.update(load_mapping(args.config))
        cfg = QATConfig.from_dict(data)
    overrides: dict = {}
    for flag, field in _FLAG_FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    if args.weights:
        overrides["weights.granularity"] = args.weights
    if args.symmetric_activations:
        overrides["activations.symmetric"] = True
    if args.keep_float:
        overrides["keep_float"] = list(cfg.keep_float) + list(args.keep_float)
    if overrides:
        cfg = cfg.with_overrides(overrides)
    sets = parse_set_args(args.set)
    if sets:
        cfg = cfg.with_overrides(sets)
    return cfg


def open_run_dir(args: argparse.Namespace, cfg, baseline):
    """Creates the run directory, or finds the unfinished one to resume."""
    from pathlib import Path

    from tfq.qat.config import QATConfig
    from tfq.rundir import RunDir, RunDirError, find_runs
    from tfq.train import run_name

    meta = {"model": baseline.config.model.name, "dataset": baseline.config.data.name,
            "baseline": str(baseline.run.path)}

    def same(run: RunDir) -> bool:
        try:
            return (run.manifest().get("baseline") == meta["baseline"] and run.exists("config.json")
                    and QATConfig.from_dict(run.read_json("config.json")).training_identity()
                    == cfg.training_identity())
        except ValueError:
            return False

    if args.out:
        out = Path(args.out)
        if out.exists() and any(out.iterdir()) and not args.overwrite:
            try:
                existing = RunDir.open(out)
            except RunDirError:
                raise RunDirError(f"{out} exists and is not a tfq run directory; choose another --out") from None
            if existing.is_complete:
                raise RunDirError(f"{out} holds a finished run; pass --overwrite to run QAT again there")
            if not same(existing):
                raise RunDirError(f"{out} holds an unfinished run with another baseline or configuration; "
                                  "pass --overwrite to replace it or choose another --out")
            log.info("resuming the unfinished QAT run in %s", out)
            return RunDir.create(kind="qat", out=out, resume=True, meta=meta)
        return RunDir.create(kind="qat", out=out, overwrite=args.overwrite, meta=meta)
    if not args.fresh:
        for run in find_runs(args.root, kind="qat", complete_only=False, model=meta["model"],
                             dataset=meta["dataset"]):
            if not run.is_complete and same(run):
                log.info("resuming the unfinished QAT run %s (pass --fresh to start a new one)", run.path)
                return RunDir.create(kind="qat", out=run.path, resume=True, meta=meta)
    name = f"{run_name(meta['model'], meta['dataset'])}-qat"
    return RunDir.create(kind="qat", name=name, root=args.root, meta=meta)


@guarded
def main(args: argparse.Namespace) -> int:
    """Runs the QAT stage; returns the exit code."""
    setup_logging(args.verbose)
    if not args.model and not args.baseline:
        raise ValueError("give --model NAME (the newest baseline of that model) or --baseline RUN_DIR")
    cfg = resolve_config(args)
    from tfq.baseline import resolve_baseline
    from tfq.qat.convert import ConversionError
    from tfq.qat.quantize import plan_model
    from tfq.qat.registry import UnsupportedLayerError
    from tfq.qat.stage import resolve, run_qat

    baseline = resolve_baseline(args.model or "", args.dataset, args.baseline, args.root)
    if args.model and baseline.config.model.name != args.model:
        raise ValueError(f"--baseline {args.baseline} is a {baseline.config.model.name!r} run, not {args.model!r}")
    cfg = resolve(cfg, baseline)
    # Bad keep_float patterns and unsupported layers fail here, before any output directory.
    try:
        plan_model(baseline.model, cfg)
    except UnsupportedLayerError as e:
        raise ValueError(str(e)) from None

    run = open_run_dir(args, cfg, baseline)
    if run.manifest().get("error"):
        run.update_manifest(error=None)  # a failed run being resumed
    print(f"run directory: {run.path}", flush=True)
    try:
        results = run_qat(
            cfg, baseline, run, root=args.root, test_samples=args.test_samples,
            latency_runs=args.latency_runs, threads=tuple(args.threads) if args.threads else None,
            verbose=1 if sys.stdout.isatty() else 2,
        )
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        run.update_manifest(status="failed", error=str(e))
        return EXIT_FAILURE
    print()
    print(results["markdown"])
    checks = results["checks"]
    print(f"QAT - FP32: {checks['qat_minus_fp32_pp']:+.2f} pp; QAT - PTQ: {checks['qat_minus_ptq_pp']:+.2f} pp; "
          f"Keras vs .tflite agreement {100 * results['agreement']['top1_agreement']:.2f}%")
    print(f"wrote {run.path}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
