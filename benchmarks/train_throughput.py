"""Training throughput with and without TensorFlow op determinism, per model.

``TrainConfig.deterministic`` (default ``true``) calls
``tf.config.experimental.enable_op_determinism()``, which makes CPU training
bitwise repeatable but swaps some kernels for slower deterministic ones (the
depthwise-convolution gradients among them). This benchmark measures what that
costs on this machine, so the choice in a config is an informed one.

Each (model, deterministic) pair runs in its own process (op determinism is
process-wide and cannot be switched off again). A process builds the model as
``pipelines.train`` does (same builder, optimizer, loss), runs
``--warmup-batches`` training steps, then times ``--batches`` steps with
``model.fit`` on random images (throughput does not depend on pixel values).
Writes ``<out>.json`` (every number, the environment and the command) and
``<out>.md``::

    python -m benchmarks.train_throughput --out docs/train_throughput
    python -m benchmarks.train_throughput --models mobilenetv2 --batches 20 --out /tmp/tp

This is a benchmark, not a test; on two cores the default run takes about 15 minutes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_MODELS = ("smallcnn", "resnet18", "mobilenetv2")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_throughput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="registered model names")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=40,
                   help="timed training steps per measurement (12 were too few to be stable)")
    p.add_argument("--warmup-batches", type=int, default=3, help="untimed steps first (graph tracing)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--out", help="writes <out>.json and <out>.md (omit to only print the table)")
    p.add_argument("--overwrite", action="store_true", help="replace existing <out>.json / <out>.md")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per measurement process")
    p.add_argument("--worker", nargs=2, metavar=("MODEL", "DETERMINISTIC"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("batch_size", "batches", "image_size", "num_classes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_batches < 0:
        p.error("--warmup-batches must be >= 0")
    return args


def measure(model: str, deterministic: bool, args: argparse.Namespace) -> dict[str, Any]:
    """Builds ``model`` as pipelines.train does and times ``args.batches`` training steps (this process)."""
    import tfq  # noqa: F401  (Keras 2 before TensorFlow)
    import numpy as np

    from tfq.train import ModelConfig, OptimizerConfig, build_network, make_optimizer, make_schedule, seed_everything

    seed_everything(0, deterministic)
    import tf_keras as keras

    shape = (args.image_size, args.image_size, 3)
    net = build_network(ModelConfig(name=model), shape, args.num_classes, seed=0)
    opt = OptimizerConfig()
    steps = args.batches + args.warmup_batches
    net.compile(optimizer=make_optimizer(opt, make_schedule(opt, steps, 1)),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    n = args.batch_size * args.batches
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, args.num_classes, n), args.num_classes)
    if args.warmup_batches:
        w = args.batch_size * args.warmup_batches
        net.fit(x[:w], y[:w], batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
    t0 = time.perf_counter()
    net.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False)
    seconds = time.perf_counter() - t0
    return {"model": model, "deterministic": deterministic, "images": n, "seconds": seconds,
            "images_per_s": n / seconds, "params": int(net.count_params())}


def _run_worker(model: str, deterministic: bool, args: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.train_throughput", "--worker", model, str(int(deterministic)),
            "--batch-size", str(args.batch_size), "--batches", str(args.batches),
            "--warmup-batches", str(args.warmup_batches), "--image-size", str(args.image_size),
            "--num-classes", str(args.num_classes)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout,
                          cwd=Path(__file__).resolve().parents[1])
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{model} (deterministic={deterministic}) failed: {' | '.join(tail)}")
    return json.loads(lines[-1])


def render_markdown(report: dict[str, Any]) -> str:
    """The table: one row per model, both settings and their ratio."""
    from tfq.report import markdown_table

    env = report["environment"]
    by = {(r["model"], r["deterministic"]): r for r in report["rows"]}
    rows = []
    for model in report["models"]:
        det, free = by.get((model, True)), by.get((model, False))
        ratio = free["images_per_s"] / det["images_per_s"] if det and free else None
        rows.append({"model": model, "det": f"{det['images_per_s']:.1f}" if det else "—",
                     "free": f"{free['images_per_s']:.1f}" if free else "—",
                     "ratio": f"{ratio:.2f}x" if ratio else "—"})
    table = markdown_table(rows, [("model", "model"), ("det", "deterministic (img/s)"),
                                  ("free", "not deterministic (img/s)"), ("ratio", "speed-up")])
    return "\n".join([
        "# Training throughput with and without op determinism",
        "",
        f"Made by `{report['command']}` on {report['created']}: batch {report['batch_size']}, "
        f"{report['image_size']}x{report['image_size']} images, {report['batches']} timed steps after "
        f"{report['warmup_batches']} warm-up steps, one process per measurement.",
        "",
        f"CPU: {env['cpu_model']} ({env['cpu_count']} logical cores); SIMD: {', '.join(env['cpu_features'])}. "
        f"TensorFlow {env['tensorflow']}.",
        "",
        table.rstrip(),
        "",
    ])


def main(args: argparse.Namespace) -> int:
    if args.worker:
        model, det = args.worker
        print(json.dumps(measure(model, det == "1", args)), flush=True)
        return 0
    from importlib import metadata

    from edge.hostinfo import cpu_features, cpu_model

    out = Path(os.path.expanduser(args.out)) if args.out else None
    if out is not None and not args.overwrite:
        existing = [p for p in (out.with_suffix(".json"), out.with_suffix(".md")) if p.exists()]
        if existing:
            print(f"error: {', '.join(map(str, existing))} exists; pass --overwrite to replace it", file=sys.stderr)
            return 2
    from tqdm import tqdm

    rows, failures = [], []
    pairs = [(m, d) for m in args.models for d in (True, False)]
    for model, det in tqdm(pairs, desc="measurements", unit="run", disable=None):
        try:
            rows.append(_run_worker(model, det, args))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            failures.append(str(e))
            print(f"error: {e}", file=sys.stderr)
    report = {
        "tool": "benchmarks.train_throughput",
        "command": "python -m benchmarks.train_throughput " + " ".join(sys.argv[1:]),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "models": list(args.models), "batch_size": args.batch_size, "batches": args.batches,
        "warmup_batches": args.warmup_batches, "image_size": args.image_size,
        "environment": {"cpu_model": cpu_model(), "cpu_features": cpu_features(), "cpu_count": os.cpu_count(),
                        "tensorflow": metadata.version("tensorflow"), "python": sys.version.split()[0]},
        "rows": rows, "failures": failures,
    }
    md = render_markdown(report)
    print(md)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
        out.with_suffix(".md").write_text(md)
        print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
