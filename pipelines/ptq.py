"""Post-training quantization of an FP32 baseline, with an evaluation table.

Examples::

    # The newest complete baseline of resnet18 (any dataset), every mode:
    python -m pipelines.ptq --model resnet18

    # Quick start: train a tiny baseline on the bundled digits if there is none,
    # then compare FP32 with full-integer INT8:
    python -m pipelines.ptq --model smallcnn --dataset digits --train-if-missing --modes int8

    # All four calibration methods, INT8 per-tensor with uint8 I/O:
    python -m pipelines.ptq --model resnet18 --modes int8 --calibration all \\
        --granularity per_tensor --io uint8

    # A recipe file (a preset name, then its fields), then flag overrides:
    python -m pipelines.ptq --baseline runs/resnet18-cifar10-20250101-120000 \\
        --config configs/ptq/int8_percentile_logits_minmax.yaml --calib-samples 1000

Configuration is resolved in this order: the defaults (or ``--preset NAME``),
then ``--config FILE`` (YAML/JSON holding :class:`tfq.ptq.PTQConfig` fields),
then the flags given, then ``--set KEY=VALUE`` (e.g.
``--set calibration.percentile=99.9``). The resolved config of each model is
written beside it as ``<name>_config.json``.

Outputs, in ``runs/<model>-<dataset>-ptq-<time>/`` (or ``--out DIR``):
``<mode>[_<method>].tflite`` with ``<same>_config.json`` (and
``<same>_ranges.json`` for calibrated modes: every activation range, its
method and whether it landed in the ``.tflite``), ``results.json`` and
``results.md``. The table is printed at the end.

Every model is evaluated on the test split through the LiteRT interpreter;
the FP32 reference for agreement and SQNR is the Keras model itself.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import tfq  # noqa: F401  (Keras 2 before TensorFlow)
from tfq.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_common_args, guarded, setup_logging

log = logging.getLogger("pipelines.ptq")

MODE_CHOICES = ["fp32", "dynamic", "fp16", "int8", "int16x8"]
METHOD_CHOICES = ["minmax", "percentile", "kl", "mse", "all", "auto"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parses the command line (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m pipelines.ptq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_argument_group("FP32 model and data")
    g.add_argument("--model", help="model name of the baseline to find (resnet18, smallcnn, ...)")
    g.add_argument("--dataset", help="dataset of the baseline (default: any; required with --keras-model)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--baseline", metavar="RUN_DIR", help="a complete training run directory to quantize")
    src.add_argument("--keras-model", metavar="PATH", help="a .keras file to quantize (with --dataset)")
    g.add_argument("--data-dir", help="TFDS data directory (with --keras-model)")
    g.add_argument("--preprocessing", metavar="JSON", help="preprocessing.json for --keras-model "
                   "(default: the dataset's own normalization)")
    g.add_argument("--train-if-missing", action="store_true",
                   help="train a baseline first (python -m pipelines.train defaults) when none is found")

    q = p.add_argument_group("quantization")
    q.add_argument("--preset", help="named recipe: int8_per_channel, int8_per_tensor, edgetpu_int8, int16x8, "
                   "fp16, dynamic, fp32")
    q.add_argument("--modes", nargs="+", choices=MODE_CHOICES,
                   help="modes to convert (default: the config's mode with --config/--preset, else all); "
                   "fp32 is always added as the reference")
    q.add_argument("--calibration", nargs="+", choices=METHOD_CHOICES,
                   help="calibration method(s) for int8/int16x8; 'all' for the four; 'auto' converts with the "
                   "four and keeps the one with the best logit SQNR on validation images (default: the config's)")
    q.add_argument("--val-samples", type=int, default=2000,
                   help="validation images that choose the method with --calibration auto (default 2000)")
    q.add_argument("--percentile", type=float, help="percentile of the 'percentile' method (default 99.99)")
    q.add_argument("--num-bins", type=int, help="histogram bins (default 2048)")
    q.add_argument("--symmetric", action="store_true", default=None, help="symmetric activation ranges")
    q.add_argument("--granularity", choices=["per_channel", "per_tensor"], help="weight granularity")
    q.add_argument("--io", choices=["float32", "int8", "uint8", "int16"],
                   help="input/output type of full-integer models (int8/uint8 for int8, int16 for int16x8)")
    q.add_argument("--calib-samples", type=int, help="representative samples from the calib split (default 500)")
    q.add_argument("--seed", type=int, help="seed of the representative subset (default 0)")
    q.add_argument("--keep-float", action="append", metavar="REGEX",
                   help="keep ops whose output or weight names match in float (int8 only; repeatable)")
    q.add_argument("--allow-float-fallback", action="store_true", default=None,
                   help="accept ops that cannot be integer-quantized (they stay float and are listed)")

    e = p.add_argument_group("evaluation")
    e.add_argument("--test-samples", type=int, help="evaluate on the first N test images (default: all)")
    e.add_argument("--int16x8-test-samples", type=int, metavar="N",
                   help="evaluate int16x8 models on the first N of those only: their reference kernels are "
                        "~10-100x slower than int8 (rows record test_images; Δ top-1 is against FP32 on them)")
    e.add_argument("--latency-runs", type=int, default=50, help="timed runs per thread count (>= 50; 0 skips)")
    e.add_argument("--warmup", type=int, default=10, help="untimed runs before timing")
    e.add_argument("--threads", type=int, nargs="+", help="thread counts to time (default: 1 and all cores)")
    add_common_args(p)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- configuration


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config(args: argparse.Namespace):
    """Defaults or preset -> --config file -> flags -> --set overrides.

    Returns:
      ``(base PTQConfig, modes, methods)``.
    """
    from tfq.calibration import CalibrationMethod
    from tfq.configs import load_mapping, parse_set_args
    from tfq.ptq import MODES, IOType, Mode, PTQConfig, get_preset

    data = (get_preset(args.preset) if args.preset else PTQConfig()).to_dict()
    if args.config:
        data = _deep_merge(data, load_mapping(args.config))
    cfg = PTQConfig.from_dict(data)
    flags = {
        "granularity": args.granularity,
        "io": args.io,
        "calib_samples": args.calib_samples,
        "seed": args.seed,
        "allow_float_fallback": args.allow_float_fallback,
        "calibration.percentile": args.percentile,
        "calibration.num_bins": args.num_bins,
        "calibration.symmetric": args.symmetric,
    }
    if args.keep_float:
        flags["keep_float"] = list(args.keep_float)
    if args.calibration and len(args.calibration) == 1 and args.calibration[0] not in ("all", "auto"):
        flags["calibration.method"] = args.calibration[0]
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides.update(parse_set_args(args.set))
    if args.modes and len(args.modes) == 1 and "mode" not in overrides:
        overrides["mode"] = args.modes[0]
    if "io" in overrides and "mode" not in overrides:
        # --io alone picks the full-integer mode that has that I/O type.
        wanted = IOType(overrides["io"])
        if wanted not in cfg.spec.io_types:
            overrides["mode"] = next(m.value for m, spec in MODES.items() if spec.full_integer and wanted in spec.io_types)
    cfg = cfg.with_overrides(overrides) if overrides else cfg

    if args.modes:
        modes = [Mode(m) for m in args.modes]
    elif args.config or args.preset:
        modes = [cfg.mode]
    else:
        modes = list(Mode)
    modes = sorted(set(modes) | {Mode.FP32}, key=list(Mode).index)  # fp32 first: the size reference
    if args.calibration and "auto" in args.calibration and len(args.calibration) > 1:
        raise ValueError("--calibration auto chooses among all four methods; give it alone")
    if not args.calibration:
        methods = [cfg.calibration.method]
    elif "all" in args.calibration or "auto" in args.calibration:
        methods = list(CalibrationMethod)
    else:
        methods = [CalibrationMethod(m) for m in dict.fromkeys(args.calibration)]
    return cfg, modes, methods


# --------------------------------------------------------------------------- baseline


def _train_baseline(args: argparse.Namespace):
    from tfq.baseline import load_baseline
    from tfq.rundir import RunDir
    from tfq.train import default_train_config, run_name, train

    model, dataset = args.model or "smallcnn", args.dataset or "digits"
    cfg = default_train_config(model, dataset)
    if args.data_dir:
        cfg = cfg.with_overrides({"data.data_dir": args.data_dir})
    run = RunDir.create(kind="train", name=run_name(model, dataset), root=args.root,
                        meta={"model": model, "dataset": dataset})
    print(f"no baseline found: training one in {run.path} (--train-if-missing)", flush=True)
    train(cfg, run)
    return load_baseline(run.path)


class _Source:
    """The FP32 model, its data and where they came from."""

    def __init__(self, model, dataset, name: str, dataset_name: str, baseline: str | None):
        self.model = model
        self.dataset = dataset
        self.name = name
        self.dataset_name = dataset_name
        self.baseline = baseline


def load_source(args: argparse.Namespace) -> _Source:
    """Finds the baseline (or loads ``--keras-model``) and its dataset.

    Raises:
      BaselineNotFoundError: No baseline; the message holds the training command.
    """
    from tfq.baseline import BaselineNotFoundError, find_baseline, load_baseline, resolve_baseline

    if args.keras_model:
        import tf_keras as keras

        from tfq.data import DataConfig, load_dataset
        from tfq.preprocessing import Preprocessing

        if not args.dataset:
            raise ValueError("--keras-model needs --dataset (the data to calibrate and evaluate on)")
        model = keras.models.load_model(args.keras_model, compile=False, safe_mode=True)
        dataset = load_dataset(DataConfig(name=args.dataset, data_dir=args.data_dir))
        if args.preprocessing:
            dataset.preprocessing = Preprocessing.load(args.preprocessing)
        return _Source(model, dataset, args.model or model.name, args.dataset, None)
    if not args.baseline and not args.model:
        raise ValueError("give --model NAME (to find its newest baseline), --baseline RUN_DIR or --keras-model PATH")
    if args.baseline:
        baseline = load_baseline(args.baseline)
    elif args.train_if_missing and find_baseline(args.model, args.dataset, args.root) is None:
        baseline = _train_baseline(args)
    else:
        try:
            baseline = resolve_baseline(args.model, args.dataset, root=args.root)
        except BaselineNotFoundError as e:
            raise BaselineNotFoundError(f"{e}\nor run this command again with --train-if-missing.") from None
    cfg = baseline.config
    return _Source(baseline.model, baseline.dataset, cfg.model.name, cfg.data.name, str(baseline.run.path))


# --------------------------------------------------------------------------- run


def row_for(result, metrics: dict[str, Any], fp32_top1: float) -> dict[str, Any]:
    """One results row: what was converted and how it scored."""
    cfg = result.config
    spec = cfg.spec
    row = {
        "name": result.name,
        "mode": cfg.mode.value,
        "method": cfg.calibration.method.value if spec.calibrated else None,
        "granularity": cfg.granularity.value if spec.weight_granularity else None,
        "io": cfg.io.value,
        "file": f"{result.name}.tflite",
        "convert_seconds": round(result.seconds, 3),
    }
    row.update(metrics)
    row["delta_top1"] = metrics["top1"] - fp32_top1
    if result.range_check is not None:
        row["ranges_landed"] = len(result.range_check.landed)
        row["ranges_total"] = len(result.ranges or {})
        row["ranges_overridden"] = [f"{o['tensor']} ({o['op']})" for o in result.range_check.overridden]
    return row


@guarded
def main(args: argparse.Namespace) -> int:
    """Runs the PTQ stage; returns the exit code."""
    setup_logging(args.verbose)
    cfg, modes, methods = resolve_config(args)
    for flag in ("test_samples", "int16x8_test_samples"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    from tfq.calibration import representative_samples
    from tfq.evaluate import default_threads, evaluate_tflite, results_markdown
    from tfq.ptq import SELECTION_RULE, ConversionError, configs_for, prepare_calibration, quantize, select_calibration
    from tfq.rundir import RunDir
    from tfq.train import run_name

    auto = bool(args.calibration and "auto" in args.calibration)
    configs = configs_for(cfg, modes, [cfg.calibration.method] if auto else methods)
    source = load_source(args)
    ds = source.dataset
    x_calib, _ = ds.arrays("calib")
    x_test, y_test = ds.arrays("test")
    if args.test_samples:
        x_test, y_test = x_test[: args.test_samples], y_test[: args.test_samples]
    model = source.model
    input_shape = tuple(int(d) if d is not None else -1 for d in model.input_shape[1:])

    # Bad calibration data fails here, before any conversion or output directory.
    samples = None
    if any(c.spec.calibrated for c in configs):
        samples = representative_samples(x_calib, cfg.calib_samples, seed=cfg.seed, input_shape=input_shape)

    run = RunDir.create(
        kind="ptq", name=f"{run_name(source.name, source.dataset_name)}-ptq", out=args.out, root=args.root,
        overwrite=args.overwrite,
        meta={"model": source.name, "dataset": source.dataset_name, "baseline": source.baseline},
    )
    print(f"run directory: {run.path}", flush=True)
    t_start = time.perf_counter()
    ref_logits = model.predict(x_test, batch_size=128, verbose=0)
    x_val = ref_val = None
    if auto:
        x_val = ds.arrays("val")[0][: args.val_samples]
        ref_val = model.predict(x_val, batch_size=128, verbose=0)
    from edge import metrics as m

    keras_fp32 = {"top1": m.top_k_accuracy(ref_logits, y_test, 1), "top5": m.top_k_accuracy(ref_logits, y_test, 5)}
    log.info("Keras FP32 on %d test images: top-1 %.4f", len(y_test), keras_fp32["top1"])

    state = None
    if samples is not None:
        state = prepare_calibration(model, samples, num_bins=cfg.calibration.num_bins)
        log.info("calibration: %d samples, %d activation tensors, %.1f s",
                 state.num_samples, len(state.stats), state.seconds)

    threads = tuple(args.threads) if args.threads else default_threads()
    rows, fp32_size, failures = [], None, []
    for c in configs:
        name = c.artifact_name()
        selection = None
        try:
            if auto and c.spec.calibrated:
                result, selection = select_calibration(state, c, methods, x_val, ref_val)
                c, name = result.config, result.name
                print(f"{c.mode.value}: --calibration auto chose {c.calibration.method.value} "
                      f"(validation SQNR {max(sc['val_sqnr_db'] for sc in selection):.1f} dB)", flush=True)
            else:
                result = quantize(model, c, state=state, name=name)
        except ConversionError as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            failures.append({"name": name, "error": str(e)})
            continue
        run.write_bytes(f"{name}.tflite", result.model_bytes)
        run.write_json(f"{name}_config.json", c.to_dict())  # loadable again with --config
        if result.ranges is not None:
            run.write_json(f"{name}_ranges.json", result.ranges_dict())
        if fp32_size is None:
            fp32_size = len(result.model_bytes)  # fp32 is always first
        n = len(y_test)
        if c.mode.value == "int16x8" and args.int16x8_test_samples:
            n = min(n, args.int16x8_test_samples)
        metrics = evaluate_tflite(
            result.model_bytes, x_test[:n], y_test[:n], reference_logits=ref_logits[:n], fp32_size_bytes=fp32_size,
            latency_runs=args.latency_runs, warmup=args.warmup, threads=threads,
            expect_integer=c.spec.full_integer,
        )
        row = row_for(result, metrics, m.top_k_accuracy(ref_logits[:n], y_test[:n], 1))
        row["test_images"] = n
        row["config_file"] = f"{name}_config.json"
        row["calib_samples_used"] = state.num_samples if (state and c.spec.calibrated) else None
        if selection is not None:
            row["selection"] = {"rule": SELECTION_RULE, "val_samples": int(len(x_val)), "scores": selection}
        rows.append(row)
        log.info("%s: top-1 %.4f, SQNR %.1f dB, %d bytes", name, row["top1"], row["sqnr_db"], row["size_bytes"])
        if c.mode.value == "fp32" and row["sqnr_db"] < 60:
            log.warning("FP32 .tflite differs from Keras: SQNR %.1f dB (< 60 dB)", row["sqnr_db"])

    table = results_markdown(rows)
    header = (
        f"# PTQ: {source.name} on {source.dataset_name}\n\n"
        f"Baseline: `{source.baseline or args.keras_model}`; Keras FP32 test top-1 "
        f"{100 * keras_fp32['top1']:.2f}% on {len(y_test)} test images; "
        f"{state.num_samples if state else 0} calibration samples (seed {cfg.seed}); latency: batch 1, "
        f"median/p90 of {max(args.latency_runs, 50) if args.latency_runs else 0} runs after {args.warmup} warm-up, "
        f"XNNPACK, threads {list(threads)}.\n\n"
    )
    subset = sorted({r["name"] for r in rows if r["test_images"] < len(y_test)})
    if subset:
        n16 = min(r["test_images"] for r in rows)
        header += (f"{', '.join(subset)}: evaluated on the first {n16} test images only (--int16x8-test-samples); "
                   f"their Δ top-1, agreement and SQNR compare with Keras FP32 on those images.\n\n")
    run.write_text("results.md", header + table)
    run.write_json("results.json", {
        "model": source.name, "dataset": source.dataset_name, "baseline": source.baseline,
        "tfq_version": tfq.__version__, "keras_fp32": keras_fp32, "test_samples": int(len(y_test)),
        "calibration": {"samples": state.num_samples if state else 0, "seed": cfg.seed,
                        "seconds": state.seconds if state else 0.0},
        "config": cfg.to_dict(), "modes": [mm.value for mm in modes], "methods": [mm.value for mm in methods],
        "rows": rows, "failures": failures, "seconds": time.perf_counter() - t_start,
    })
    print()
    print(table)
    if failures:
        print(f"{len(failures)} conversion(s) failed: {', '.join(f['name'] for f in failures)}", file=sys.stderr)
        run.update_manifest(status="failed")
        return EXIT_FAILURE
    run.mark_complete()
    print(f"wrote {run.path}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))


__all__ = ["EXIT_USAGE", "main", "parse_args", "resolve_config"]
