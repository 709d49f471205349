"""How much does edge.bench add to a bare interpreter loop? (a benchmark, not a test)

Run::

    python -m edge.benchmarks.edge_overhead runs/<ptq>/resnet18_*.tflite --threads 2 \\
        --runs 200 --warmup 20 --rounds 5 --out runs/edge_overhead

For each model and round, in this order: a bare loop in this process (make the
interpreter, set random inputs once, ``invoke()`` timed with
``time.perf_counter_ns``), ``edge.bench``'s measurement in this same process
(:func:`edge.bench.run_spec`), and ``edge.bench`` as the CLI measures, in a
worker process (:func:`edge.bench.run_worker`). Rounds interleave the three so
drift (thermal, other load) hits them alike (the order rotates each round); the
table reports the median over rounds of each median latency, and the median over
rounds of the per-round ratio to the bare loop. Run it on an otherwise idle
machine: with other processes competing for the cores, noise exceeds 5%. The target is
``|ratio - 1| <= 5%`` for both edge.bench columns.

Writes ``edge_overhead.json`` and ``edge_overhead.md`` into ``--out`` (refusing
to replace them without ``--overwrite``); prints the table either way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

from edge._common import EdgeError, check_writable, markdown_table, setup_logging, write_json_atomic, write_text_atomic
from edge.bench import BenchSpec, make_inputs, run_spec, run_worker

TOLERANCE = 0.05


def bare_loop_ms(model: str, threads: int | None, use_xnnpack: bool, warmup: int, runs: int) -> float:
    """Median latency of the simplest possible timing loop."""
    from edge.litert import make_interpreter

    interpreter = make_interpreter(model, num_threads=threads, use_xnnpack=use_xnnpack)
    make_inputs(interpreter, seed=0)
    for _ in range(warmup + 1):
        interpreter.invoke()
    samples = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        interpreter.invoke()
        samples[i] = (time.perf_counter_ns() - t0) / 1e6
    return float(np.median(samples))


def measure(models: list[str], threads: int | None, use_xnnpack: bool, warmup: int, runs: int,
            rounds: int) -> list[dict[str, Any]]:
    """Interleaved bare / in-process / worker medians per model.

    The order of the three measurements rotates from round to round, and the
    ratios are computed per round (then the median over rounds is taken), so
    slow drift and load from other processes cancel rather than bias one column.
    """
    rows = []
    for model in models:
        spec = BenchSpec(model=model, threads=threads, use_xnnpack=use_xnnpack, warmup=warmup, runs=runs)

        def worker() -> float:
            result = run_worker(spec)
            if result["status"] != "ok":
                raise EdgeError(f"{model}: {result['error']}")
            return result["latency_ms"]["p50"]

        kinds = {
            "bare": lambda: bare_loop_ms(model, threads, use_xnnpack, warmup, runs),
            "inprocess": lambda: run_spec(spec)["latency_ms"]["p50"],
            "worker": worker,
        }
        order = list(kinds)
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(rounds):
            for kind in order[r % 3:] + order[: r % 3]:
                samples[kind].append(kinds[kind]())
        ratio_i = statistics.median(i / b for i, b in zip(samples["inprocess"], samples["bare"]))
        ratio_w = statistics.median(w / b for w, b in zip(samples["worker"], samples["bare"]))
        rows.append({
            "model": os.path.basename(model), "path": os.path.abspath(model),
            "bare_p50_ms": statistics.median(samples["bare"]),
            "bench_inprocess_p50_ms": statistics.median(samples["inprocess"]),
            "bench_worker_p50_ms": statistics.median(samples["worker"]),
            "ratio_inprocess": ratio_i, "ratio_worker": ratio_w,
            "within_5pct": abs(ratio_i - 1) <= TOLERANCE and abs(ratio_w - 1) <= TOLERANCE,
            "rounds": samples,
        })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["model", "bare p50 ms", "edge.bench p50 ms (same process)", "ratio", "edge.bench p50 ms (worker)",
               "ratio", "within 5%"]
    return markdown_table(headers, [[r["model"], r["bare_p50_ms"], r["bench_inprocess_p50_ms"], r["ratio_inprocess"],
                                     r["bench_worker_p50_ms"], r["ratio_worker"],
                                     "yes" if r["within_5pct"] else "NO"] for r in rows])


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m edge.benchmarks.edge_overhead", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", metavar="MODEL.tflite")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-xnnpack", action="store_true")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default=None, help="folder for edge_overhead.json and edge_overhead.md")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    """Returns 0 when every model is within 5%, 1 otherwise, 2 on bad input."""
    setup_logging(args.verbose)
    try:
        if args.out:
            check_writable(os.path.join(args.out, "edge_overhead.json"), args.overwrite)
            check_writable(os.path.join(args.out, "edge_overhead.md"), args.overwrite)
        rows = measure(args.models, args.threads, not args.no_xnnpack, args.warmup, args.runs, args.rounds)
    except EdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = table(rows)
    print(text, end="")
    if args.out:
        from edge.litert import interpreter_backend

        from edge.bench import host_info

        write_json_atomic(os.path.join(args.out, "edge_overhead.json"),
                          {"tool": "edge.benchmarks.edge_overhead", "tolerance": TOLERANCE, "threads": args.threads,
                           "xnnpack": not args.no_xnnpack, "runs": args.runs, "warmup": args.warmup,
                           "rounds": args.rounds, "host": host_info(), "interpreter": interpreter_backend(),
                           "results": rows}, overwrite=args.overwrite)
        write_text_atomic(os.path.join(args.out, "edge_overhead.md"), text, overwrite=args.overwrite)
    return 0 if all(r["within_5pct"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
