"""PTQ sweep: calibration methods x weight granularity x modes, against two peers.

For one FP32 baseline, in one run, on the same float model, the same
representative samples and the same test images:

* tfq: ``fp32``, ``fp16``, ``dynamic`` (per granularity), and ``int8`` /
  ``int16x8`` for every calibration method and weight granularity;
* peer 1, the TFLite converter's default full-integer PTQ
  (``optimizations=[DEFAULT]``, representative dataset,
  ``TFLITE_BUILTINS_INT8``; per-channel, min-max ranges, float I/O);
* peer 2, ai-edge-quantizer's static INT8 recipe (``recipe.static_wi8_ai8()``,
  calibrated on the FP32 ``.tflite``; it emits int8 input/output tensors, fed
  through the same float-in/float-out wrapper).

"tfq best" is the INT8 per-channel calibration method chosen by
``tfq.ptq.SELECTION_RULE`` (highest logit SQNR against FP32 on *validation*
images, never the test split), as ``pipelines.ptq --calibration auto`` does;
the comparison with the peers is then read on the test split.

Writes ``<out>.json`` (every number, the environment and the command) and
``<out>.md`` (the tables)::

    python -m benchmarks.ptq_sweep --baseline runs/resnet18-npz-cifar10_shared-20250101-120000 \\
        --out docs/ptq_resnet18_cifar10

This is a benchmark, not a test: a full ResNet-18 sweep on 5,000 CIFAR-10 test
images takes tens of minutes on two cores (INT16x8 runs on reference kernels).
``--quick`` shrinks it for a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import tfq  # noqa: F401  (Keras 2 before TensorFlow)

log = logging.getLogger("benchmarks.ptq_sweep")

ALL_METHODS = ["minmax", "percentile", "kl", "mse"]
ALL_MODES = ["fp32", "dynamic", "fp16", "int8", "int16x8"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ptq_sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--baseline", metavar="RUN_DIR", help="complete training run directory")
    src.add_argument("--model", help="find the newest baseline of this model (with --dataset)")
    p.add_argument("--dataset", help="dataset of the baseline to find")
    p.add_argument("--root", default="runs", help="where baselines are searched (default: runs)")
    p.add_argument("--out", required=True, help="output prefix: writes <out>.json and <out>.md")
    p.add_argument("--overwrite", action="store_true", help="replace existing <out>.json / <out>.md")
    p.add_argument("--modes", nargs="+", choices=ALL_MODES, default=ALL_MODES)
    p.add_argument("--methods", nargs="+", choices=ALL_METHODS, default=ALL_METHODS)
    p.add_argument("--granularities", nargs="+", choices=["per_channel", "per_tensor"],
                   default=["per_channel", "per_tensor"])
    p.add_argument("--percentile", type=float, default=99.99)
    p.add_argument("--num-bins", type=int, default=2048)
    p.add_argument("--calib-samples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-samples", type=int, default=2000, help="validation images used to pick tfq's best")
    p.add_argument("--test-samples", type=int, help="first N test images (default: all)")
    p.add_argument("--int16x8-test-samples", type=int, metavar="N",
                   help="evaluate int16x8 models on the first N of those test images only (their reference "
                        "kernels are ~10x slower); their Δ top-1 is against Keras FP32 on the same N images")
    p.add_argument("--latency-runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, nargs="+", help="thread counts to time (default: 1 and all cores)")
    p.add_argument("--no-peers", action="store_true", help="skip the two peers")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 64 calibration, 200 validation, 300 test images, no latency")
    p.add_argument("-v", "--verbose", action="count", default=0)
    ns = p.parse_args(argv)
    ns.argv = list(sys.argv[1:] if argv is None else argv)
    return ns


# --------------------------------------------------------------------------- peers


def aeq_static_int8(fp32_model: bytes, samples) -> bytes:
    """ai-edge-quantizer's ``static_wi8_ai8`` recipe, calibrated on ``samples`` one at a time."""
    from ai_edge_quantizer import quantizer, recipe

    from edge.litert import make_interpreter

    sigs = make_interpreter(fp32_model).get_signature_list()
    if len(sigs) != 1:
        raise ValueError(f"expected one signature in the FP32 model, got {list(sigs)}")
    key = next(iter(sigs))
    (name,) = sigs[key]["inputs"]
    q = quantizer.Quantizer(fp32_model)
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    calibration = q.calibrate({key: [{name: samples[i : i + 1]} for i in range(samples.shape[0])]},
                              num_threads=os.cpu_count() or 1)
    return bytes(q.quantize(calibration, enable_progress_report=False).quantized_model)


# --------------------------------------------------------------------------- sweep


def _environment() -> dict[str, Any]:
    from importlib import metadata

    import tensorflow as tf

    from edge.hostinfo import cpu_features, cpu_model, int8_dot_product

    features = cpu_features()

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__, "ai_edge_litert": version("ai-edge-litert"),
        "ai_edge_quantizer": version("ai-edge-quantizer"), "tfq": tfq.__version__,
        "cpu_model": cpu_model(), "cpu_features": features, "int8_dot_product": int8_dot_product(features),
    }


def _row(name: str, role: str, cfg_fields: dict[str, Any], metrics: dict[str, Any], fp32_top1: float,
         **extra: Any) -> dict[str, Any]:
    row = {"name": name, "role": role, **cfg_fields, **metrics, **extra}
    row["delta_top1"] = metrics["top1"] - fp32_top1
    return row


def run_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the sweep; returns the JSON-ready report."""
    from edge import metrics as M
    from tfq.baseline import load_baseline, resolve_baseline
    from tfq.calibration import CalibrationConfig, representative_samples
    from tfq.evaluate import default_threads, evaluate_tflite
    from tfq.ptq import (
        MODES,
        ConversionError,
        Granularity,
        Mode,
        SELECTION_RULE,
        PTQConfig,
        converter_default_int8,
        prepare_calibration,
        quantize,
        quantize_calibrated,
        selection_key,
    )

    if args.quick:
        args.calib_samples, args.val_samples, args.test_samples, args.latency_runs = 64, 200, 300, 0
    baseline = load_baseline(args.baseline) if args.baseline else resolve_baseline(args.model, args.dataset,
                                                                                   root=args.root)
    model, ds = baseline.model, baseline.dataset
    model_name, dataset_name = baseline.config.model.name, baseline.config.data.name
    x_calib, _ = ds.arrays("calib")
    x_val, y_val = ds.arrays("val")
    x_test, y_test = ds.arrays("test")
    x_val, y_val = x_val[: args.val_samples], y_val[: args.val_samples]
    if args.test_samples:
        x_test, y_test = x_test[: args.test_samples], y_test[: args.test_samples]
    input_shape = tuple(int(d) if d is not None else -1 for d in model.input_shape[1:])
    samples = representative_samples(x_calib, args.calib_samples, seed=args.seed, input_shape=input_shape)
    threads = tuple(args.threads) if args.threads else default_threads()
    t_start = time.perf_counter()

    ref_test = model.predict(x_test, batch_size=128, verbose=0)
    ref_val = model.predict(x_val, batch_size=128, verbose=0)
    keras_top1 = M.top_k_accuracy(ref_test, y_test, 1)
    log.info("%s on %s: Keras FP32 test top-1 %.4f (%d images)", model_name, dataset_name, keras_top1, len(y_test))

    n16 = min(args.int16x8_test_samples or len(y_test), len(y_test))
    keras_top1_16 = M.top_k_accuracy(ref_test[:n16], y_test[:n16], 1)

    def evaluate(model_bytes: bytes, expect_integer: bool, fp32_size: int | None, with_val: bool,
                 n: int | None = None) -> dict:
        n = n or len(y_test)
        out = evaluate_tflite(model_bytes, x_test[:n], y_test[:n], reference_logits=ref_test[:n],
                              fp32_size_bytes=fp32_size, latency_runs=args.latency_runs, warmup=args.warmup,
                              threads=threads, expect_integer=expect_integer)
        out["test_images"] = n
        if with_val:
            val = evaluate_tflite(model_bytes, x_val, y_val, reference_logits=ref_val, latency_runs=0)
            out["val_top1"], out["val_sqnr_db"], out["val_agreement"] = val["top1"], val["sqnr_db"], val["agreement"]
        return out

    rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    state = None
    modes = [Mode(m) for m in ALL_MODES if m in args.modes or m == "fp32"]
    grans = [Granularity(g) for g in args.granularities]
    fp32_bytes = quantize(model, PTQConfig(mode=Mode.FP32)).model_bytes
    fp32_size = len(fp32_bytes)

    for mode in modes:
        spec = MODES[mode]
        if not spec.calibrated:
            for g in (grans if spec.weight_granularity else [Granularity.PER_CHANNEL]):
                cfg = PTQConfig(mode=mode, granularity=g)
                name = cfg.artifact_name(with_granularity=spec.weight_granularity)
                b = fp32_bytes if mode is Mode.FP32 else quantize(model, cfg).model_bytes
                m = evaluate(b, False, fp32_size, with_val=False)
                rows.append(_row(name, "tfq", {"mode": mode.value, "method": None,
                                               "granularity": g.value if spec.weight_granularity else None,
                                               "io": "float32"}, m, keras_top1))
                log.info("%s: top-1 %.4f SQNR %.1f dB", name, m["top1"], m["sqnr_db"])
            continue
        if state is None:
            state = prepare_calibration(model, samples, num_bins=args.num_bins)
            log.info("calibration: %d samples, %d tensors, %.1f s", state.num_samples, len(state.stats), state.seconds)
        for g in grans:
            for method in args.methods:
                cfg = PTQConfig(mode=mode, granularity=g, calib_samples=args.calib_samples, seed=args.seed,
                                calibration=CalibrationConfig(method=method, percentile=args.percentile,
                                                              num_bins=args.num_bins))
                name = cfg.artifact_name(with_granularity=True)
                try:
                    res = quantize_calibrated(state, cfg, name=name)
                except ConversionError as e:
                    log.error("%s failed: %s", name, e)
                    failures.append({"name": name, "error": str(e)})
                    continue
                n = n16 if mode is Mode.INT16X8 else None
                m = evaluate(res.model_bytes, True, fp32_size, with_val=mode is Mode.INT8, n=n)
                rows.append(_row(name, "tfq", {"mode": mode.value, "method": method, "granularity": g.value,
                                               "io": "float32"}, m, keras_top1_16 if n else keras_top1,
                                 ranges_landed=len(res.range_check.landed), ranges_total=len(res.ranges),
                                 ranges_overridden=[f"{o['tensor']} ({o['op']})" for o in res.range_check.overridden]))
                log.info("%s: top-1 %.4f SQNR %.1f dB", name, m["top1"], m["sqnr_db"])

    if not args.no_peers:
        peers = [
            ("peer: TFLite converter default int8", "converter_default",
             lambda: converter_default_int8(model, samples), "float32"),
            ("peer: ai-edge-quantizer static_wi8_ai8", "aeq_static_wi8_ai8",
             lambda: aeq_static_int8(fp32_bytes, samples), "int8"),
        ]
        for label, key, build, io in peers:
            try:
                b = build()
            except Exception as e:  # noqa: BLE001 - a peer failing is a result, not a crash
                log.error("%s failed: %s", label, e)
                failures.append({"name": key, "error": f"{type(e).__name__}: {e}"})
                continue
            m = evaluate(b, True, fp32_size, with_val=True)
            rows.append(_row(label, "peer", {"mode": "int8", "method": "minmax", "granularity": "per_channel",
                                             "io": io, "peer": key}, m, keras_top1))
            log.info("%s: top-1 %.4f SQNR %.1f dB", label, m["top1"], m["sqnr_db"])

    # tfq's best: the INT8 per-channel method chosen by tfq.ptq.SELECTION_RULE on validation data.
    candidates = [r for r in rows if r["role"] == "tfq" and r["mode"] == "int8" and r["granularity"] == "per_channel"]
    best = max(candidates, key=selection_key) if candidates else None
    comparison = []
    if best is not None:
        best["selected"] = True
        for peer in (r for r in rows if r["role"] == "peer"):
            comparison.append({
                "peer": peer["name"], "tfq": best["name"],
                "top1_tfq": best["top1"], "top1_peer": peer["top1"], "delta_top1": best["top1"] - peer["top1"],
                "sqnr_tfq": best["sqnr_db"], "sqnr_peer": peer["sqnr_db"],
                "delta_sqnr_db": best["sqnr_db"] - peer["sqnr_db"],
                "matches_or_beats": best["top1"] >= peer["top1"] and best["sqnr_db"] >= peer["sqnr_db"],
            })
    for r in rows:
        r["model"] = model_name
    return {
        "model": model_name, "dataset": dataset_name, "baseline": str(baseline.run.path),
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks.ptq_sweep " + " ".join(shlex.quote(a) for a in args.argv),
        "environment": _environment(),
        "splits": {"calib_samples": int(samples.shape[0]), "val_samples": int(len(y_val)),
                   "test_samples": int(len(y_test)), "seed": args.seed,
                   "split_rule": (ds.info or {}).get("split_rule")},
        "keras_fp32": {"top1": keras_top1, "top5": M.top_k_accuracy(ref_test, y_test, 5),
                       "int16x8_test_samples": n16, "top1_on_int16x8_images": keras_top1_16},
        "calibration": {"percentile": args.percentile, "num_bins": args.num_bins,
                        "seconds": state.seconds if state else None},
        "selection": {"rule": f"INT8 per-channel: {SELECTION_RULE}", "best": best["name"] if best else None},
        "latency": {"runs": max(args.latency_runs, 50) if args.latency_runs else 0, "warmup": args.warmup,
                    "threads": list(threads), "batch": 1, "xnnpack": True},
        "rows": rows, "comparison": comparison, "failures": failures,
        "seconds": time.perf_counter() - t_start,
    }


def _cpu_lines(env: dict[str, Any]) -> list[str]:
    if "cpu_features" not in env:
        return []
    dot = env.get("int8_dot_product")
    return ["", f"CPU: {env.get('cpu_model')}; SIMD: {', '.join(env['cpu_features']) or 'unknown'}; " + (
        f"int8 dot product: {dot}." if dot else
        "no int8 dot-product instruction (no VNNI/dotprod), so INT8 latency is only modestly below FP32 here.")]


def render_markdown(report: dict[str, Any]) -> str:
    """The sweep's tables, with the command that made them."""
    from tfq.evaluate import results_markdown
    from tfq.report import Column, fmt_db, fmt_delta_pp, fmt_pct, markdown_table

    rows = report["rows"]
    lines = [
        f"# PTQ sweep: {report['model']} on {report['dataset']}",
        "",
        f"Made by `{report['command']}` on {report['created']} "
        f"(TensorFlow {report['environment']['tensorflow']}, ai-edge-litert "
        f"{report['environment']['ai_edge_litert']}, ai-edge-quantizer {report['environment']['ai_edge_quantizer']}, "
        f"{report['environment']['cpu_count']} CPU cores, shared machine: latency is indicative).",
        *_cpu_lines(report["environment"]),
        "",
        f"Baseline `{report['baseline']}`: Keras FP32 top-1 {100 * report['keras_fp32']['top1']:.2f}% on "
        f"{report['splits']['test_samples']} test images. {report['splits']['calib_samples']} calibration images "
        f"(seed {report['splits']['seed']}) shared by tfq and both peers; tfq's best method picked on "
        f"{report['splits']['val_samples']} validation images ({report['selection']['rule']}): "
        f"**{report['selection']['best']}**. " + (
            f"Latency: batch 1, median/p90 of {report['latency']['runs']} runs after "
            f"{report['latency']['warmup']} warm-up, XNNPACK, threads {report['latency']['threads']}. "
            if report["latency"]["runs"] else "Latency: not measured in this sweep (`--latency-runs 0`). ") +
        "Δ top-1 is against the Keras FP32 model; agreement and SQNR compare logits with it.",
        "",
        results_markdown(rows, extra=[
            Column(lambda r: "**best**" if r.get("selected") else "", "picked", align="left"),
            Column("val_sqnr_db", "val SQNR", fmt_db),
            Column("test_images", "test images", lambda v: "" if v is None else str(v)),
        ]),
    ]
    n16, n = report["keras_fp32"].get("int16x8_test_samples"), report["splits"]["test_samples"]
    if n16 and n16 < n:
        lines += [f"INT16x8 rows are evaluated on the first {n16} test images only (reference kernels); their "
                  f"Δ top-1 is against Keras FP32 on those images "
                  f"({100 * report['keras_fp32']['top1_on_int16x8_images']:.2f}%).", ""]
    if report["comparison"]:
        lines += [
            "## tfq's best calibration against the peers (test split)",
            "",
            markdown_table(report["comparison"], [
                Column("tfq", "tfq", align="left"), Column("peer", "peer", align="left"),
                Column("top1_tfq", "tfq top-1", fmt_pct), Column("top1_peer", "peer top-1", fmt_pct),
                Column("delta_top1", "Δ top-1 (pp)", fmt_delta_pp),
                Column("sqnr_tfq", "tfq SQNR", fmt_db), Column("sqnr_peer", "peer SQNR", fmt_db),
                Column("delta_sqnr_db", "Δ SQNR dB", fmt_db),
                Column("matches_or_beats", "matches or beats", lambda v: "yes" if v else "**no**"),
            ]),
        ]
    if report["failures"]:
        lines += ["## Failures", ""] + [f"- `{f['name']}`: {f['error']}" for f in report["failures"]] + [""]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from tfq.cli import setup_logging
    from tfq.rundir import atomic_write_text, write_json

    setup_logging(args.verbose)
    json_path, md_path = Path(f"{args.out}.json"), Path(f"{args.out}.md")
    existing = [str(q) for q in (json_path, md_path) if q.exists()]
    if existing and not args.overwrite:
        print(f"error: {' and '.join(existing)} already exist(s); pass --overwrite to replace, or another --out",
              file=sys.stderr)
        return 2
    report = run_sweep(args)
    write_json(json_path, report)
    text = render_markdown(report)
    atomic_write_text(md_path, text)
    print(text)
    print(f"wrote {json_path} and {md_path}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
