"""Mixed-precision .tflite models: build one plan, or search for the best plan within a budget.

Examples::

    # search: the smallest plan whose val top-1 drop vs FP32 is at most 0.5 points
    python -m pipelines.mixed --model resnet18 --max-drop 0.5
    python -m pipelines.mixed --model mobilenetv2 --max-drop 0.5 --objective latency
    python -m pipelines.mixed --model resnet18 --max-size-mb 4          # most accurate plan under 4 MB
    python -m pipelines.mixed --model resnet18 --max-drop 1 --max-latency-ms 15 --no-int4

    # build one plan (a preset, a YAML/JSON file, or regex rules) and verify it
    python -m pipelines.mixed --model resnet18 --plan first_last_fp16
    python -m pipelines.mixed --model resnet18 --plan configs/mixed/int8_weights_fp16_activations.yaml
    python -m pipelines.mixed --model resnet18 --rule 'stage4.*=int4_weights' --rule '^logits$=fp16'

The search (greedy, guided by the sensitivity ranking of ``pipelines.sensitivity``;
see ``docs/mixed.md``) chooses plans on a seeded subset of ``val`` and reports
``test``. It uses ``--sensitivity RUN_DIR``, else the newest complete
sensitivity run of the same baseline under ``--root``, else a quick one it
runs itself. Every plan tried is appended to ``plans.jsonl`` as it is
evaluated; ``pareto.png`` shows them (top-1 vs size, top-1 vs latency).

Output: ``mixed.tflite`` (search) or ``<plan>.tflite``, beside its
``_recipe.json`` (ai-edge-quantizer recipe) and ``_plan.yaml``; ``results.json``.
Exit status: 0 when the budget is met, 3 when no plan meets it (the best plan
found and the gap are reported and written), 2 on bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys

import tfq  # noqa: F401
from tfq.cli import EXIT_OK, add_common_args, guarded, setup_logging

log = logging.getLogger("pipelines.mixed")

EXIT_BUDGET_NOT_MET = 3
# Presets evaluated beside the greedy path, so they compete in the final choice.
SEARCH_PRESETS = ("first_last_fp16", "all_int4_weights")
# Largest |Keras - float .tflite| logit difference, relative to the largest |logit|, before a warning.
KERAS_TOLERANCE = 1e-3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.mixed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    g = p.add_argument_group("baseline")
    g.add_argument("--model", help="model name of the baseline (newest complete train run)")
    g.add_argument("--dataset", help="dataset of the baseline (default: any)")
    g.add_argument("--baseline", metavar="RUN_DIR", help="an explicit training run directory")
    b = p.add_argument_group("budget (any combination; required to search)")
    b.add_argument("--max-drop", type=float, metavar="POINTS", help="largest top-1 drop vs FP32, in points")
    b.add_argument("--max-latency-ms", type=float, help="largest median batch-1 latency (ms)")
    b.add_argument("--max-size-mb", type=float, help="largest .tflite size (MB = 10**6 bytes)")
    b.add_argument("--drop-z", type=float, help="check drop + Z standard errors of the paired val estimate "
                                                "against --max-drop (default 1.0; 0 = the raw drop)")
    s = p.add_argument_group("search")
    s.add_argument("--objective", choices=["size", "latency"], help="minimize within the budget (default: size)")
    s.add_argument("--no-int4", action="store_true", help="never use int4 weights")
    s.add_argument("--sensitivity", metavar="RUN_DIR", help="a pipelines.sensitivity run (or sensitivity.json)")
    s.add_argument("--max-evaluations", type=int, help="cap on plans evaluated (default 80)")
    s.add_argument("--val-samples", type=int, help="val subset plans are chosen on (default 1000)")
    s.add_argument("--test-samples", type=int, help="test samples reported (default: all)")
    s.add_argument("--latency-runs", type=int, help="timed batch-1 runs per plan (default 30)")
    s.add_argument("--threads", type=int, help="interpreter threads")
    pl = p.add_argument_group("one plan instead of a search")
    pl.add_argument("--plan", help="a preset name (all_int8, first_last_fp16, int8_weights_fp16_activations, "
                                   "all_int4_weights, all_fp16) or a YAML/JSON plan file")
    pl.add_argument("--rule", action="append", metavar="REGEX=PRECISION",
                    help="a rule (repeatable, first match wins); precisions: int8, int4_weights, "
                         "int8_weight_only, int4_weight_only, fp16, fp32")
    pl.add_argument("--default", dest="default_precision", help="precision of unmatched layers with --rule "
                                                                 "(default int8)")
    add_common_args(p)
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace):
    """Defaults -> --config file -> flags -> --set overrides."""
    from tfq.configs import load_mapping, parse_set_args
    from tfq.mixed import Budget, MixedConfig

    cfg = MixedConfig.from_dict(load_mapping(args.config)) if args.config else MixedConfig()
    limits = {"max_drop": args.max_drop, "max_latency_ms": args.max_latency_ms, "max_size_mb": args.max_size_mb,
              "drop_z": args.drop_z}
    if any(v is not None for k, v in limits.items() if k != "drop_z") or (args.drop_z is not None and cfg.budget):
        base = cfg.budget.to_dict() if cfg.budget is not None else {}
        base.update({k: v for k, v in limits.items() if v is not None})
        cfg = cfg.replace(budget=Budget.from_dict(base))
    flags = {
        "search.objective": args.objective,
        "search.allow_int4": False if args.no_int4 else None,
        "search.max_evaluations": args.max_evaluations,
        "val_samples": args.val_samples,
        "test_samples": args.test_samples,
        "latency_runs": args.latency_runs,
        "num_threads": args.threads,
    }
    cfg = cfg.with_overrides({k: v for k, v in flags.items() if v is not None})
    return cfg.with_overrides(parse_set_args(args.set))


def resolve_plan(args: argparse.Namespace):
    """The plan given by --plan / --rule, or None (search)."""
    from tfq.mixed import PlanError, Precision, PrecisionPlan

    if args.plan and args.rule:
        raise PlanError("give either --plan or --rule, not both")
    if args.plan:
        return PrecisionPlan.load(args.plan)
    if args.rule:
        return PrecisionPlan.from_rule_strings(args.rule, default=args.default_precision or Precision.INT8)
    if args.default_precision:
        return PrecisionPlan(default=args.default_precision)
    return None


def find_sensitivity(args: argparse.Namespace, baseline):
    """The sensitivity result to guide the search, or None."""
    from pathlib import Path

    from tfq.rundir import find_runs
    from tfq.sensitivity import SensitivityResult

    if args.sensitivity:
        return SensitivityResult.load(args.sensitivity)
    for run in find_runs(args.root, kind="sensitivity", model=baseline.config.model.name):
        if Path(run.manifest().get("baseline", "")).resolve() == Path(baseline.run.path).resolve():
            if run.exists("sensitivity.json"):
                log.info("using the sensitivity ranking of %s", run.path)
                return SensitivityResult.load(run.path)
    return None


def _subset(x, y, n, seed):
    from tfq.sensitivity import select_subset

    xs, ys, _ = select_subset(x, y, n, seed) if n is not None else (x, y, None)
    return xs, ys


def _fmt(metrics) -> str:
    lat = metrics.get("latency_ms", float("nan"))
    se = metrics.get("drop_se")
    se_text = f" +/- {se:.2f}" if se is not None and se == se else ""
    return (f"top-1 {100 * metrics['top1']:.2f}% (drop {metrics['drop']:+.2f}{se_text}), {metrics['size_mb']:.3f} MB, "
            f"{lat:.2f} ms, {metrics['bits_per_weight']:.2f} bits/weight")


@guarded
def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    cfg = resolve_config(args)
    plan = resolve_plan(args)
    if plan is None and cfg.budget is None:
        raise ValueError("give a budget to search (--max-drop, --max-latency-ms, --max-size-mb) "
                         "or a plan to build (--plan, --rule)")
    if not args.model and not args.baseline:
        raise ValueError("give --model NAME (newest complete baseline) or --baseline RUN_DIR")
    import numpy as np

    from tfq.baseline import resolve_baseline
    from tfq.evaluate import evaluate_tflite
    from edge.metrics import top_k_accuracy
    from tfq.mixed import (
        MixedBuilder,
        PlanEvaluator,
        PrecisionPlan,
        float_tflite,
        keras_layer_names,
        paired_drop_se,
        plot_pareto,
        search_plan,
        tflite_logits,
    )
    from tfq.rundir import RunDir

    baseline = resolve_baseline(args.model, args.dataset, args.baseline, root=args.root)
    run = RunDir.create(
        kind="mixed",
        name=f"{baseline.name}-mixed",
        out=args.out,
        root=args.root,
        overwrite=args.overwrite,
        meta={"model": baseline.config.model.name, "dataset": baseline.config.data.name,
              "baseline": str(baseline.run.path), "mode": "plan" if plan is not None else "search"},
    )
    print(f"run directory: {run.path}", flush=True)
    run.write_json("config.json", {**cfg.to_dict(), "plan": plan.to_dict() if plan is not None else None})

    ds = baseline.dataset
    x_val, y_val = _subset(*ds.arrays("val"), cfg.val_samples, cfg.seed)
    x_test, y_test = _subset(*ds.arrays("test"), cfg.test_samples, cfg.seed)
    x_cal, _ = ds.arrays("calib")
    model = baseline.load_model()
    names = keras_layer_names(model)
    fp32 = float_tflite(model)
    builder = MixedBuilder(fp32, x_cal[: cfg.calib_samples], layer_names=names, num_threads=cfg.num_threads)
    val_ref = tflite_logits(fp32, x_val, num_threads=cfg.num_threads)
    keras_diff = float(np.max(np.abs(model.predict(x_val, batch_size=64, verbose=0) - val_ref)))
    scale = float(np.max(np.abs(val_ref))) or 1.0
    log.info("float .tflite vs Keras on val: max |logit difference| %.2e (tolerance %.2e)", keras_diff,
             KERAS_TOLERANCE * scale)
    if keras_diff > KERAS_TOLERANCE * scale:
        log.warning("the float .tflite differs from the Keras model by %.3g (> %.3g)", keras_diff,
                    KERAS_TOLERANCE * scale)
    val_eval = PlanEvaluator(x_val, y_val, val_ref, num_threads=cfg.num_threads, latency_runs=cfg.latency_runs)
    test_ref = tflite_logits(fp32, x_test, num_threads=cfg.num_threads)
    fp32_test_top1 = top_k_accuracy(test_ref, y_test)
    threads = val_eval.latency_threads

    def on_test(model_bytes: bytes) -> dict:
        """tfq.evaluate on the test split, plus the drop and the search's latency figure."""
        res, test_logits = evaluate_tflite(model_bytes, x_test, y_test, reference_logits=test_ref,
                                           fp32_size_bytes=len(fp32), latency_runs=cfg.latency_runs,
                                           threads=(threads,), return_logits=True)
        lat = res["latency_ms"].get(str(threads), {}).get("p50", float("nan"))
        return {**res, "drop": (fp32_test_top1 - res["top1"]) * 100.0, "size_mb": res["size_bytes"] / 1e6,
                "drop_se": paired_drop_se(test_ref, test_logits, y_test),
                "latency_ms": lat, "latency_stats": res["latency_ms"], "bits_per_weight": res["weight_bits"]}

    def report(mixed) -> dict:
        return {"val": val_eval(mixed.model), "test": on_test(mixed.model), **mixed.stats()}

    fp32_report = {"val": val_eval(fp32), "test": on_test(fp32), "size_bytes": len(fp32)}
    int8 = builder.build(PrecisionPlan.preset("all_int8"))
    int8_report = report(int8)
    budget = cfg.budget
    results: dict = {"budget": budget.to_dict() if budget else None, "fp32": fp32_report, "all_int8": int8_report,
                     "val_samples": len(x_val), "test_samples": len(x_test),
                     "keras_vs_tflite_max_abs_diff": keras_diff}

    if plan is not None:
        mixed = builder.build(plan)
        name = plan.name
        chosen = report(mixed)
        met = budget.met(chosen["val"]) if budget else True
        gaps = budget.gaps(chosen["val"]) if budget else {}
        results.update(mode="plan")
    else:
        sens = find_sensitivity(args, baseline)
        if sens is None:
            from tfq.sensitivity import SensitivityConfig, Variant, analyze_sensitivity

            log.info("no sensitivity run found for this baseline; running a quick one (only_int8, weights_int4)")
            sens = analyze_sensitivity(
                model, x_cal, *ds.arrays("val"),
                SensitivityConfig(eval_samples=cfg.sensitivity_samples, calib_samples=cfg.calib_samples,
                                  variants=(Variant.ONLY_INT8, Variant.WEIGHTS_INT4), debugger=False,
                                  num_threads=cfg.num_threads, seed=cfg.seed),
            )
            run.write_json("sensitivity.json", sens.to_dict())
            sens.write_csv(run.file("sensitivity.csv"))
        search = search_plan(
            builder, val_eval, budget,
            int8_ranking=sens.int8_ranking(), int4_ranking=sens.int4_ranking(), config=cfg.search,
            extra_plans=[PrecisionPlan.preset(p) for p in SEARCH_PRESETS],
            on_candidate=lambda c: run.append_jsonl("plans.jsonl", c.to_dict()),
        )
        plot_pareto(search.candidates, run.file("pareto.png"), reference_top1=val_eval.reference_top1,
                    budget=budget, chosen=search.best,
                    title=f"{baseline.name}: mixed-precision plans tried (val)")
        best = search.best
        plan = best.plan.replace(name="mixed")
        mixed = builder.build(plan)
        name = "mixed"
        chosen = report(mixed)
        met, gaps = search.met, search.gaps
        results.update(mode="search", candidates=len(search.candidates), chosen_step=best.step,
                       search=cfg.search.to_dict())

    path = mixed.save(run.path, name, overwrite=True)
    results.update(
        met=met, gaps=gaps, model_file=path.name, plan=plan.to_dict(), assignment=mixed.assignment.to_dict(),
        chosen=chosen, verification=list(mixed.layers),
    )
    run.write_json("results.json", results)
    if met:
        run.mark_complete()
    else:
        run.update_manifest(status="budget_not_met", gaps=gaps)

    print(f"\n{baseline.name}: {len(builder.layers)} quantizable layers; val {len(x_val)} / test {len(x_test)}")
    print(f"  FP32       test {_fmt(fp32_report['test'])}")
    print(f"  all INT8   test {_fmt(int8_report['test'])}")
    print(f"  {name:<10} test {_fmt(chosen['test'])}")
    print(f"             val  {_fmt(chosen['val'])}")
    print(f"  layers: {mixed.assignment.counts()}")
    reasons: dict[str, list[str]] = {}
    for layer, reason in mixed.assignment.fallbacks.items():
        reasons.setdefault(reason, []).append(layer)
    for reason, layers in reasons.items():
        print(f"  fallback for {len(layers)} layer(s) ({', '.join(layers[:3])}{', ...' if len(layers) > 3 else ''})"
              f": {reason}")
    print(f"wrote {path} (+ {name}_recipe.json, {name}_plan.yaml), results.json"
          + (", plans.jsonl, pareto.png" if results["mode"] == "search" else ""))
    if not met:
        gap_text = ", ".join(f"{k} exceeded by {v:.3g}" for k, v in gaps.items() if v > 0)
        what = "the plan does not meet" if results["mode"] == "plan" else "no plan meets"
        print(f"error: {what} the budget {budget.to_dict()}; the best plan found was written anyway "
              f"({gap_text})", file=sys.stderr)
        return EXIT_BUDGET_NOT_MET
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))


__all__ = ["EXIT_BUDGET_NOT_MET", "main", "parse_args"]
