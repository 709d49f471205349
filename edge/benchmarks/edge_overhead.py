"""How much does edge.bench add to a bare interpreter loop? (a benchmark, not a test)

Run::

    python -m edge.benchmarks.edge_overhead runs/<ptq>/resnet18_*.tflite --threads 2 \\
        --runs 200 --warmup 20 --rounds 3 --out runs/edge_overhead

For each model and round, in this order: a bare loop in this process (make the
interpreter, set random inputs once, ``invoke()`` timed with
``time.perf_counter_ns``), ``edge.bench``'s measurement in this same process
(:func:`edge.bench.run_spec`), and ``edge.bench`` as the CLI measures, in a
worker process (:func:`edge.bench.run_worker`). Rounds interleave the three so
drift (thermal, other load) hits them alike; the table reports the median over
rounds of each median latency, and the ratio to the bare loop. The target is
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
    from tfq.litert import make_interpreter

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
    """Interleaved bare / in-process / worker medians per model."""
    rows = []
    for model in models:
        spec = BenchSpec(model=model, threads=threads, use_xnnpack=use_xnnpack, warmup=warmup, runs=runs)
        bare, inproc, worker = [], [], []
        for _ in range(rounds):
            bare.append(bare_loop_ms(model, threads, use_xnnpack, warmup, runs))
            inproc.append(run_spec(spec)["latency_ms"]["p50"])
            result = run_worker(spec)
            if result["status"] != "ok":
                raise EdgeError(f"{model}: {result['error']}")
            worker.append(result["latency_ms"]["p50"])
        b, i, w = statistics.median(bare), statistics.median(inproc), statistics.median(worker)
        rows.append({
            "model": os.path.basename(model), "path": os.path.abspath(model), "bare_p50_ms": b,
            "bench_inprocess_p50_ms": i, "bench_worker_p50_ms": w, "ratio_inprocess": i / b, "ratio_worker": w / b,
            "within_5pct": abs(i / b - 1) <= TOLERANCE and abs(w / b - 1) <= TOLERANCE,
            "rounds": {"bare": bare, "inprocess": inproc, "worker": worker},
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
    p.add_argument("--rounds", type=int, default=3)
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
        from tfq.litert import interpreter_backend

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
