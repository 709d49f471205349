"""Layer-wise quantization sensitivity of an FP32 baseline.

Examples::

    python -m pipelines.sensitivity --model resnet18 --dataset cifar10
    python -m pipelines.sensitivity --baseline runs/resnet18-cifar10-20250101-120000
    python -m pipelines.sensitivity --model mobilenetv2 --eval-samples 256 --variants only_int8,weights_int4
    python -m pipelines.sensitivity --model smallcnn --no-debugger --out runs/smallcnn-sens --overwrite

For every quantizable layer, LiteRT models with (a) only this layer quantized
and (b) every layer but this one quantized, plus weight-only (int8, int4) and
activation-only variants, are scored by top-1 drop and logit SQNR against the
FP32 ``.tflite`` on a fixed, seeded subset of the ``val`` split; TFLite's
QuantizationDebugger statistics are added beside them. Writes
``sensitivity.csv``, ``sensitivity.json`` and ``sensitivity.png`` (ranked,
most sensitive first) into a new run directory. The baseline model is
analyzed on a clone and never changed.

Configuration order: defaults -> ``--config FILE`` -> flags -> ``--set KEY=VALUE``
(keys of :class:`tfq.sensitivity.SensitivityConfig`).
"""

from __future__ import annotations

import argparse
import logging
import sys

import tfq  # noqa: F401
from tfq.cli import EXIT_OK, add_common_args, guarded, setup_logging

log = logging.getLogger("pipelines.sensitivity")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.sensitivity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("baseline")
    g.add_argument("--model", help="model name of the baseline to analyze (newest complete train run)")
    g.add_argument("--dataset", help="dataset of the baseline (default: any)")
    g.add_argument("--baseline", metavar="RUN_DIR", help="an explicit training run directory")
    a = p.add_argument_group("analysis")
    a.add_argument("--eval-samples", type=int, help="size of the fixed evaluation subset of val (default 512)")
    a.add_argument("--calib-samples", type=int, help="calibration samples from the calib split (default 256)")
    a.add_argument("--variants", help="comma-separated subset of: only_int8, all_but_int8, weights_int8, "
                                      "weights_int4, activations_int8 (default: all)")
    a.add_argument("--no-debugger", action="store_true", help="skip TFLite's QuantizationDebugger")
    a.add_argument("--threads", type=int, help="interpreter threads")
    a.add_argument("--seed", type=int, help="seed of the evaluation subset")
    add_common_args(p)
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace):
    """Defaults -> --config file -> flags -> --set overrides."""
    from tfq.configs import load_mapping, parse_set_args
    from tfq.sensitivity import SensitivityConfig

    cfg = SensitivityConfig.from_dict(load_mapping(args.config)) if args.config else SensitivityConfig()
    flags = {
        "eval_samples": args.eval_samples,
        "calib_samples": args.calib_samples,
        "variants": [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None,
        "debugger": False if args.no_debugger else None,
        "num_threads": args.threads,
        "seed": args.seed,
    }
    cfg = cfg.with_overrides({k: v for k, v in flags.items() if v is not None})
    return cfg.with_overrides(parse_set_args(args.set))


@guarded
def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    cfg = resolve_config(args)
    if not args.model and not args.baseline:
        raise ValueError("give --model NAME (newest complete baseline) or --baseline RUN_DIR")
    from tfq.baseline import resolve_baseline
    from tfq.rundir import RunDir
    from tfq.sensitivity import analyze_sensitivity

    baseline = resolve_baseline(args.model, args.dataset, args.baseline, root=args.root)
    model_name, dataset = baseline.config.model.name, baseline.config.data.name
    if args.model and args.baseline and args.model != model_name:
        raise ValueError(f"--model {args.model} does not match the baseline's model {model_name!r}")
    run = RunDir.create(
        kind="sensitivity",
        name=f"{baseline.name}-sensitivity",
        out=args.out,
        root=args.root,
        overwrite=args.overwrite,
        meta={"model": model_name, "dataset": dataset, "baseline": str(baseline.run.path)},
    )
    print(f"run directory: {run.path}", flush=True)
    run.write_json("config.json", cfg.to_dict())
    ds = baseline.dataset
    x_val, y_val = ds.arrays("val")
    x_cal, _ = ds.arrays("calib")
    model = baseline.load_model()
    result = analyze_sensitivity(
        model, x_cal, x_val, y_val, cfg,
        on_layer=lambda layer: run.append_jsonl("layers.jsonl", layer.to_dict()),
    )
    result.write_csv(run.file("sensitivity.csv"))
    run.write_json("sensitivity.json", result.to_dict())
    result.plot(run.file("sensitivity.png"), title=f"{baseline.name}: quantization sensitivity per layer")
    top = result.int8_ranking()[:5]
    results = {
        "reference": result.reference,
        "most_sensitive": top,
        "most_robust_int4": result.int4_ranking()[:5],
        "layers": len(result.layers),
        "elapsed_s": result.elapsed_s,
    }
    run.write_json("results.json", results)
    run.mark_complete()
    ref = result.reference
    print(
        f"\n{baseline.name}: {len(result.layers)} quantizable layers, {ref['eval_samples']} val samples; "
        f"FP32 top-1 {100 * ref['fp32_top1']:.2f}%, full INT8 {100 * ref['all_int8']['top1']:.2f}% "
        f"(drop {ref['all_int8']['drop']:.2f} points) in {result.elapsed_s:.0f} s"
    )
    print(f"most sensitive (only_int8 SQNR): {', '.join(top)}")
    print(f"wrote {run.file('sensitivity.csv')}, sensitivity.json, sensitivity.png")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))


__all__ = ["main", "parse_args"]
