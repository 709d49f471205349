"""Benchmark ``.tflite`` models on the target they will run on.

Usage::

    python -m edge.bench resnet18_fp32.tflite resnet18_int8.tflite --target cpu --threads 2 \\
        --runs 100 --warmup 10 --eval test.npz --preprocessing runs/<train>/preprocessing.json \\
        --json bench.json

Targets:

* ``cpu``: the LiteRT CPU kernels, XNNPACK on (default) or off (``--no-xnnpack``,
  through the op-resolver type), ``--threads N``.
* ``gpu``: the GPU delegate loaded from ``--delegate-lib`` or ``$TFQ_GPU_DELEGATE_LIB``.
* ``edgetpu``: the ``libedgetpu`` delegate (``--delegate-lib``, ``$TFQ_EDGETPU_LIB``,
  or the platform's default soname) on a model compiled by ``edge.edgetpu compile``.
* ``android``: TFLite's ``benchmark_model`` binary on a phone over ``adb`` (see
  :mod:`edge.android`).

How it measures (cpu/gpu/edgetpu): every model runs in a fresh worker process
(``python -m edge.bench --_worker``), so peak RSS (the process's high-water
mark -- ``VmHWM`` on Linux, ``ru_maxrss`` elsewhere -- read right after the
timed loop, before accuracy evaluation; ``rss_before_mb`` is the same mark
before the interpreter is created) belongs to that model alone
and a model that crashes the runtime cannot kill this process. The worker
validates the flatbuffer, then creates the interpreter (``init_ms``: loading,
delegate application and tensor allocation), sets the inputs once, times the first
``invoke()`` (``first_ms``), runs ``--warmup`` untimed invocations, then times
only ``invoke()`` with ``time.perf_counter_ns`` until both ``--runs`` and
``--min-seconds`` are reached. With ``--eval`` it then computes top-1 (and top-5)
on the target, and agreement of top-1 predictions with ``--reference`` (default:
the first model).

Several models give one side-by-side Markdown table on stdout; ``--json``
writes every result (target, delegate, threads, warm-up/run counts, interpreter
name and version, latency statistics, ...) atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge._common import EdgeError, check_writable, markdown_table, setup_logging, write_json_atomic, write_text_atomic

logger = logging.getLogger("edge.bench")

TARGETS = ("cpu", "gpu", "edgetpu", "android")
GPU_LIB_ENV = "TFQ_GPU_DELEGATE_LIB"
EDGETPU_LIB_ENV = "TFQ_EDGETPU_LIB"
DEFAULT_EDGETPU_LIB = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
REPO_ROOT = Path(__file__).resolve().parents[1]

INSTALL_GPU = (
    "build or download the TFLite GPU delegate for this platform "
    "(libtensorflowlite_gpu_delegate.so) and pass --delegate-lib PATH or set "
    f"${GPU_LIB_ENV}"
)
INSTALL_EDGETPU = (
    "install the Edge TPU runtime (Debian: apt-get install libedgetpu1-std from the Coral "
    "repository, see https://coral.ai/docs/accelerator/get-started) and plug in the device, "
    f"or pass --delegate-lib PATH / set ${EDGETPU_LIB_ENV}"
)


# --------------------------------------------------------------------------- spec


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    """What one worker measures for one model (JSON round-trips through the worker)."""

    model: str
    target: str = "cpu"
    threads: int | None = None
    use_xnnpack: bool = True
    delegate_lib: str | None = None
    delegate_options: dict[str, str] = dataclasses.field(default_factory=dict)
    allow_fallback: bool = False
    warmup: int = 5
    runs: int = 50
    min_seconds: float = 0.0
    batch: int = 1
    input_shape: tuple[int, ...] | None = None
    timing: bool = True
    eval_path: str | None = None
    preprocessing: dict[str, Any] | None = None
    eval_limit: int | None = None
    eval_batch_size: int = 64
    logits_path: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise EdgeError(f"unknown target {self.target!r}; choose one of {list(TARGETS)}")
        if self.runs < 1:
            raise EdgeError(f"--runs must be >= 1, got {self.runs}")
        if self.warmup < 0:
            raise EdgeError(f"--warmup must be >= 0, got {self.warmup}")
        if self.min_seconds < 0:
            raise EdgeError(f"--min-seconds must be >= 0, got {self.min_seconds}")
        if self.threads is not None and self.threads < 1:
            raise EdgeError(f"--threads must be >= 1, got {self.threads}")
        if self.batch < 1:
            raise EdgeError(f"--batch must be >= 1, got {self.batch}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchSpec:
        d = dict(d)
        if d.get("input_shape") is not None:
            d["input_shape"] = tuple(d["input_shape"])
        return cls(**d)


# --------------------------------------------------------------------------- worker side


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: ``ru_maxrss`` carries
    the parent's high-water mark across fork+exec, so a worker would report the
    caller's RSS when that was larger. Elsewhere ``getrusage().ru_maxrss``
    (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def make_inputs(interpreter: Any, seed: int = 0) -> list[np.ndarray]:
    """Sets every input tensor once to seeded random data of its dtype; returns the arrays.

    Integer (quantized) inputs get uniform values over the dtype's range, float
    inputs uniform values in [0, 1).
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for d in interpreter.get_input_details():
        shape = tuple(int(s) for s in d["shape"])
        dtype = np.dtype(d["dtype"])
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            arr = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=np.int64).astype(dtype)
        elif dtype.kind == "b":
            arr = rng.integers(0, 2, size=shape).astype(bool)
        else:
            arr = rng.random(shape, dtype=np.float64).astype(dtype)
        interpreter.set_tensor(d["index"], arr)
        arrays.append(arr)
    return arrays


def time_invocations(interpreter: Any, warmup: int, runs: int, min_seconds: float = 0.0
                     ) -> tuple[float, list[float]]:
    """Times ``invoke()`` only, with inputs already set.

    Args:
        interpreter: Allocated interpreter with inputs set.
        warmup: Untimed invocations after the first one.
        runs: Minimum number of timed invocations.
        min_seconds: Keep timing until this much time has passed as well.

    Returns:
        ``(first_ms, samples_ms)``: the first invocation, then each timed one.
    """
    clock = time.perf_counter_ns
    invoke = interpreter.invoke
    t0 = clock()
    invoke()
    first_ms = (clock() - t0) / 1e6
    for _ in range(warmup):
        invoke()
    samples: list[float] = []
    deadline = clock() + int(min_seconds * 1e9)
    while len(samples) < runs or clock() < deadline:
        t0 = clock()
        invoke()
        samples.append((clock() - t0) / 1e6)
    return first_ms, samples


def _delegate_for(spec: BenchSpec) -> tuple[str | None, str, dict[str, str]]:
    """Returns (library, delegate name, options) for the target."""
    if spec.target == "gpu":
        return spec.delegate_lib or os.environ.get(GPU_LIB_ENV) or None, "gpu", spec.delegate_options
    if spec.target == "edgetpu":
        lib = spec.delegate_lib or os.environ.get(EDGETPU_LIB_ENV) or DEFAULT_EDGETPU_LIB.get(
            platform.system(), "libedgetpu.so.1")
        return lib, "edgetpu", spec.delegate_options
    return None, "xnnpack" if spec.use_xnnpack else "none", {}


def _build_interpreter(spec: BenchSpec, result: dict[str, Any]) -> Any:
    """Creates the interpreter for the target, applying the fallback policy."""
    from edge.litert import DelegateError, make_interpreter

    lib, name, options = _delegate_for(spec)
    result["delegate"] = name
    if spec.target == "cpu":
        return make_interpreter(spec.model, num_threads=spec.threads, use_xnnpack=spec.use_xnnpack,
                                validate_first=False)
    how_to = INSTALL_GPU if spec.target == "gpu" else INSTALL_EDGETPU
    if lib is None:
        reason = f"no {spec.target} delegate library given: {how_to}"
    else:
        result["delegate_lib"] = lib
        try:
            # The default XNNPACK delegate is left out so coverage counts this delegate alone.
            return make_interpreter(spec.model, num_threads=spec.threads, use_xnnpack=False,
                                    delegates=[(lib, options)], validate_first=False)
        except DelegateError as e:
            reason = f"{e}; {how_to}"
    if not spec.allow_fallback:
        raise EdgeError(f"{reason}. Pass --allow-fallback to run on the CPU instead.")
    logger.warning("%s; falling back to the CPU", reason)
    result["fallback"] = f"cpu: {reason}"
    result["delegate"] = "xnnpack" if spec.use_xnnpack else "none"
    return make_interpreter(spec.model, num_threads=spec.threads, use_xnnpack=spec.use_xnnpack,
                            validate_first=False)


def _check_coverage(spec: BenchSpec, result: dict[str, Any], coverage: dict[str, Any]) -> None:
    if spec.target not in ("gpu", "edgetpu") or result.get("fallback"):
        return
    cpu_ops = coverage["cpu_ops"]
    if spec.target == "edgetpu":
        from edge.tflite_model import summarize

        counts = summarize(spec.model).op_counts()
        if EDGETPU_CUSTOM_OP not in counts:
            message = (f"{spec.model} is not compiled for the Edge TPU (no {EDGETPU_CUSTOM_OP}); "
                       "every op would run on the CPU. Compile it first: "
                       f"python -m edge.edgetpu compile {spec.model}")
            if not spec.allow_fallback:
                raise EdgeError(message + " (or pass --allow-fallback)")
            result["fallback"] = "cpu: model not compiled for the Edge TPU"
        return
    if coverage["delegated_ops"] < coverage["total_ops"]:
        rejected = ", ".join(f"{k} x{v}" for k, v in cpu_ops.items())
        message = (f"the GPU delegate took {coverage['delegated_ops']} of {coverage['total_ops']} ops; "
                   f"rejected: {rejected}")
        if not spec.allow_fallback:
            raise EdgeError(message + ". Pass --allow-fallback to run the rest on the CPU.")
        result["fallback"] = f"partial: {sum(cpu_ops.values())} ops on the CPU ({rejected})"


def _resize_for_timing(interpreter: Any, spec: BenchSpec, eval_shape: tuple[int, ...] | None) -> None:
    """Resizes the first input for timing: ``--input-shape``, else the eval images' H/W, plus ``--batch``."""
    details = interpreter.get_input_details()
    if not details:
        return
    d = details[0]
    sig = tuple(int(s) for s in (d.get("shape_signature") if d.get("shape_signature") is not None
                                 and len(d.get("shape_signature")) else d["shape"]))
    shape = tuple(int(s) for s in d["shape"])
    target = list(spec.input_shape) if spec.input_shape else list(shape)
    if not spec.input_shape and eval_shape is not None:
        target = [shape[0], *eval_shape[1:]] if len(eval_shape) == len(shape) else target
    if spec.batch != 1:
        if sig and sig[0] >= 0:
            raise EdgeError(f"{spec.model} has a fixed batch of {sig[0]}; --batch {spec.batch} needs a "
                            "dynamic batch dimension")
        target[0] = spec.batch
    if any(s < 0 for s in sig[1:]) and target[1:] == list(shape[1:]) and not spec.input_shape:
        logger.warning("%s has dynamic input dimensions %s; timing the default shape %s "
                       "(pass --input-shape to choose)", spec.model, sig, shape)
    if tuple(target) != shape:
        if len(target) != len(sig) or any(w >= 0 and t != w for t, w in zip(target, sig)):
            raise EdgeError(f"--input-shape {tuple(target)} does not fit {spec.model}'s input {sig}")
        interpreter.resize_tensor_input(d["index"], target, strict=False)
        interpreter.allocate_tensors()


def run_spec(spec: BenchSpec) -> dict[str, Any]:
    """Measures one model in this process; returns its result dict.

    This is what the worker process runs. Raises EdgeError (or the runtime's
    errors) on failure; :func:`worker_main` turns them into an error result.
    """
    from edge.litert import TFLiteModel, delegate_coverage, interpreter_backend
    from edge.metrics import latency_stats, top_k_accuracy

    result: dict[str, Any] = base_result(spec)
    result["interpreter"] = interpreter_backend()
    result["rss_before_mb"] = round(peak_rss_mb(), 2)
    eval_data = None
    if spec.eval_path:
        from edge.data import Preprocessing, load_eval

        pre = Preprocessing.from_dict(spec.preprocessing) if spec.preprocessing else None
        eval_data = load_eval(spec.eval_path, pre, spec.eval_limit)

    from edge.tflite_model import validate

    validate(spec.model)  # before the clock: init_ms times loading, delegation and allocation only
    t0 = time.perf_counter_ns()
    interpreter = _build_interpreter(spec, result)
    result["init_ms"] = (time.perf_counter_ns() - t0) / 1e6
    coverage = delegate_coverage(interpreter)
    result["coverage"] = coverage
    _check_coverage(spec, result, coverage)
    result["inputs"] = [
        {"name": d["name"], "dtype": np.dtype(d["dtype"]).name, "shape": [int(s) for s in d["shape"]],
         "scale": float(d["quantization"][0]), "zero_point": int(d["quantization"][1])}
        for d in interpreter.get_input_details()
    ]
    if spec.timing:
        _resize_for_timing(interpreter, spec, eval_data.x.shape if eval_data is not None else None)
        make_inputs(interpreter, spec.seed)
        first_ms, samples = time_invocations(interpreter, spec.warmup, spec.runs, spec.min_seconds)
        stats = latency_stats(samples)
        batch = int(interpreter.get_input_details()[0]["shape"][0]) if interpreter.get_input_details() else 1
        result.update(
            first_ms=first_ms,
            latency_ms=stats,
            measured_runs=len(samples),
            timed_batch=batch,
            throughput_ips=batch * 1000.0 / stats["mean"] if stats["mean"] > 0 else None,
        )
    result["peak_rss_mb"] = round(peak_rss_mb(), 2)
    if eval_data is not None:
        model = TFLiteModel(interpreter)
        try:
            logits = model.predict(eval_data.x, batch_size=spec.eval_batch_size)
        except ValueError as e:
            raise EdgeError(f"{spec.eval_path} does not fit {spec.model}: {e}") from e
        logits2d = logits.reshape(logits.shape[0], -1)
        accuracy = {"n": len(eval_data), "top1": top_k_accuracy(logits2d, eval_data.labels, 1)}
        if logits2d.shape[1] >= 5:
            accuracy["top5"] = top_k_accuracy(logits2d, eval_data.labels, 5)
        result["accuracy"] = accuracy
        if spec.logits_path:
            np.save(spec.logits_path, logits2d)
    result["status"] = "ok"
    return result


def base_result(spec: BenchSpec) -> dict[str, Any]:
    """The fields every result carries, filled from the spec (status "error" until measured)."""
    size = os.path.getsize(spec.model) if os.path.isfile(spec.model) else None
    return {
        "model": os.path.basename(spec.model),
        "path": os.path.abspath(spec.model),
        "size_bytes": size,
        "status": "error",
        "error": None,
        "target": spec.target,
        "delegate": None,
        "fallback": None,
        "threads": spec.threads,
        "xnnpack": spec.use_xnnpack if spec.target == "cpu" else False,
        "warmup": spec.warmup,
        "runs": spec.runs,
        "min_seconds": spec.min_seconds,
        "interpreter": None,
    }


def worker_main(spec_path: str, result_path: str) -> int:
    """Entry point of the worker process: reads a spec, writes a result JSON."""
    with open(spec_path, encoding="utf-8") as f:
        spec = BenchSpec.from_dict(json.load(f))
    try:
        result = run_spec(spec)
        code = 0
    except Exception as e:  # noqa: BLE001 - reported to the parent as the model's error
        from edge.tflite_model import InvalidModelError

        expected = isinstance(e, (EdgeError, InvalidModelError, ValueError, RuntimeError, OSError))
        if not expected:
            logger.exception("unexpected failure measuring %s", spec.model)
        result = base_result(spec)
        result["error"] = str(e) if expected else f"{type(e).__name__}: {e}"
        code = 1
    write_json_atomic(result_path, result, overwrite=True)
    return code


# --------------------------------------------------------------------------- parent side


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_worker(spec: BenchSpec, timeout: float | None = None) -> dict[str, Any]:
    """Runs :func:`run_spec` in a fresh Python process and returns its result.

    A crash (signal), non-zero exit without a result, or timeout becomes an
    error result; this process is never affected.
    """
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        result_path = os.path.join(tmp, "result.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(spec.to_dict(), f)
        cmd = [sys.executable, "-m", "edge.bench", "--_worker", spec_path, result_path]
        logger.info("measuring %s in a worker process", spec.model)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_worker_env(),
                                  check=False)
        except subprocess.TimeoutExpired:
            result = base_result(spec)
            result["error"] = f"worker timed out after {timeout:g} s"
            return result
        if proc.stderr:
            logger.debug("worker stderr for %s:\n%s", spec.model, proc.stderr)
        if os.path.exists(result_path):
            with open(result_path, encoding="utf-8") as f:
                return json.load(f)
        result = base_result(spec)
        if proc.returncode < 0:
            import signal

            try:
                name = signal.Signals(-proc.returncode).name
            except ValueError:
                name = str(-proc.returncode)
            result["error"] = f"the interpreter crashed the worker process (signal {name})"
        else:
            result["error"] = f"worker exited with code {proc.returncode}"
        tail = (proc.stderr or "").strip().splitlines()[-5:]
        if tail:
            result["error"] += ": " + " | ".join(tail)
        return result


def _preflight(spec: BenchSpec) -> str | None:
    """Checks a model file (and the eval data against it) without an interpreter.

    Returns:
        An error message, or None when the model can be measured.
    """
    from edge.tflite_model import InvalidModelError, summarize

    try:
        summary = summarize(spec.model)
    except InvalidModelError as e:
        return str(e)
    if spec.eval_path:
        from edge.data import check_npz_against_signature

        inputs = summary.input_tensors()
        if len(inputs) != 1:
            return f"--eval needs a one-input model; {spec.model} has {len(inputs)} inputs"
        check_npz_against_signature(spec.eval_path, inputs[0].shape_signature, os.path.basename(spec.model))
    return None


def _agreement(results: list[dict[str, Any]], logits: dict[str, np.ndarray], reference: str) -> None:
    from edge.metrics import agreement

    ref = logits.get(reference)
    for r in results:
        acc = r.get("accuracy")
        if acc is None:
            continue
        acc["reference"] = os.path.basename(reference)
        mine = logits.get(r["path"])
        if ref is not None and mine is not None and mine.shape == ref.shape:
            acc["agreement"] = agreement(mine, ref)


TABLE_HEADERS = ["model", "target", "delegate", "threads", "size MB", "init ms", "first ms", "mean ms",
                 "std ms", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms", "inf/s", "peak RSS MB",
                 "delegated ops", "top-1", "agreement", "status"]


def results_table(results: list[dict[str, Any]]) -> str:
    """The side-by-side Markdown table of benchmark results."""
    rows = []
    for r in results:
        lat = r.get("latency_ms") or {}
        cov = r.get("coverage") or {}
        acc = r.get("accuracy") or {}
        status = r.get("status", "error")
        if r.get("fallback"):
            status += " (fallback)"
        size = r.get("size_bytes")
        rows.append([
            r.get("model"), r.get("target"), r.get("delegate"), r.get("threads") or "default",
            size / 1e6 if size else None, r.get("init_ms"), r.get("first_ms"),
            lat.get("mean"), lat.get("std"), lat.get("min"), lat.get("p50"), lat.get("p90"),
            lat.get("p99"), lat.get("max"), r.get("throughput_ips"), r.get("peak_rss_mb"),
            f"{cov['delegated_ops']}/{cov['total_ops']}" if cov.get("total_ops") is not None else None,
            acc.get("top1"), acc.get("agreement"), status,
        ])
    return markdown_table(TABLE_HEADERS, rows)


def host_info() -> dict[str, Any]:
    """Where the benchmark ran (no user or host names)."""
    from edge.hostinfo import cpu_features, cpu_model, int8_dot_product

    features = cpu_features()
    return {"system": platform.system(), "machine": platform.machine(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "cpu_model": cpu_model(), "cpu_features": features,
            "int8_dot_product": int8_dot_product(features)}


def host_line(host: dict[str, Any], target: str) -> str:
    """A Markdown note under the table naming the CPU the numbers come from (empty for Android)."""
    if target == "android" or "cpu_features" not in host:
        return ""
    dot = host.get("int8_dot_product")
    return (f"\nHost CPU: {host.get('cpu_model')} ({host.get('cpu_count')} logical cores); SIMD: "
            f"{', '.join(host['cpu_features']) or 'unknown'}; int8 dot product: {dot or 'none'}.\n")


def spec_from_args(args: argparse.Namespace, model: str, **overrides: Any) -> BenchSpec:
    """Builds the per-model :class:`BenchSpec` from parsed CLI arguments."""
    pre = None
    if args.preprocessing:
        from edge.data import Preprocessing

        pre = dataclasses.asdict(Preprocessing.load(args.preprocessing))
    options = {}
    for item in args.delegate_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EdgeError(f"--delegate-option expects KEY=VALUE, got {item!r}")
        options[key] = value
    try:
        input_shape = tuple(int(v) for v in args.input_shape.split(",")) if args.input_shape else None
    except ValueError:
        raise EdgeError(f"--input-shape expects comma-separated integers like 1,224,224,3, got "
                        f"{args.input_shape!r}") from None
    fields = dict(
        model=model, target=args.target, threads=args.threads, use_xnnpack=not args.no_xnnpack,
        delegate_lib=args.delegate_lib, delegate_options=options, allow_fallback=args.allow_fallback,
        warmup=args.warmup, runs=args.runs, min_seconds=args.min_seconds, batch=args.batch,
        input_shape=input_shape,
        eval_path=args.eval, preprocessing=pre, eval_limit=args.eval_limit, eval_batch_size=args.eval_batch_size,
    )
    fields.update(overrides)
    return BenchSpec(**fields)


def benchmark_local(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Runs cpu/gpu/edgetpu benchmarks, one worker per model; returns the results."""
    results: list[dict[str, Any]] = []
    logits: dict[str, np.ndarray] = {}
    reference = os.path.abspath(args.reference or args.models[0])
    with tempfile.TemporaryDirectory(prefix="edge-logits-") as tmp:
        jobs = [(m, True) for m in args.models]
        if args.eval and reference not in {os.path.abspath(m) for m in args.models}:
            jobs.append((reference, False))  # reference for agreement only, not timed
        for i, (model, timed) in enumerate(jobs):
            logits_path = os.path.join(tmp, f"{i}.npy") if args.eval else None
            spec = spec_from_args(args, model, timing=timed, logits_path=logits_path)
            error = _preflight(spec)
            if error is not None:
                result = base_result(spec)
                result["error"] = error
            else:
                result = run_worker(spec, timeout=args.timeout)
            if result["status"] != "ok":
                print(f"error: {os.path.basename(model)}: {result['error']}", file=sys.stderr)
            if logits_path and os.path.exists(logits_path):
                logits[os.path.abspath(model)] = np.load(logits_path)
            if timed:
                results.append(result)
        if args.eval:
            _agreement(results, logits, reference)
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parses the command line of ``python -m edge.bench``."""
    p = argparse.ArgumentParser(
        prog="python -m edge.bench",
        description="Benchmark .tflite models on CPU, GPU delegate, Coral Edge TPU or an Android phone.",
    )
    p.add_argument("models", nargs="*", metavar="MODEL.tflite", help="models to benchmark, side by side")
    p.add_argument("--_worker", nargs=2, metavar=("SPEC", "RESULT"), help=argparse.SUPPRESS)

    t = p.add_argument_group("target")
    t.add_argument("--target", choices=TARGETS, default="cpu", help="where to run (default: cpu)")
    t.add_argument("--threads", type=int, default=None, help="interpreter threads (default: runtime's choice)")
    t.add_argument("--no-xnnpack", action="store_true", help="cpu: disable the XNNPACK delegate")
    t.add_argument("--delegate-lib", default=None,
                   help=f"gpu/edgetpu: delegate library path (default: ${GPU_LIB_ENV} / ${EDGETPU_LIB_ENV})")
    t.add_argument("--delegate-option", action="append", metavar="KEY=VALUE",
                   help="option passed to the delegate library, repeatable (e.g. device=usb)")
    t.add_argument("--allow-fallback", action="store_true",
                   help="run on the CPU when the delegate is missing or rejects ops (marked in the result)")

    m = p.add_argument_group("measurement")
    m.add_argument("--runs", type=int, default=50, help="timed invocations, at least (default: 50)")
    m.add_argument("--warmup", type=int, default=5, help="untimed invocations before timing (default: 5)")
    m.add_argument("--min-seconds", type=float, default=0.0,
                   help="keep timing until this many seconds have passed as well (default: 0)")
    m.add_argument("--batch", type=int, default=1, help="batch size for timing (dynamic-batch models only)")
    m.add_argument("--input-shape", default=None, metavar="N,H,W,C",
                   help="shape to resize a dynamic input to before timing")
    m.add_argument("--timeout", type=float, default=1800.0, help="seconds per model before giving up")

    e = p.add_argument_group("accuracy on the target")
    e.add_argument("--eval", default=None, metavar="DATA.npz", help="labeled data: keys images, labels")
    e.add_argument("--preprocessing", default=None, metavar="JSON",
                   help="preprocessing.json (scale, mean, std) for uint8 images (default: x/255)")
    e.add_argument("--reference", default=None, metavar="MODEL.tflite",
                   help="model whose predictions define agreement (default: the first model)")
    e.add_argument("--eval-limit", type=int, default=None, help="evaluate only the first N samples")
    e.add_argument("--eval-batch-size", type=int, default=64, help="batch size for evaluation")

    a = p.add_argument_group("android (adb)")
    a.add_argument("--adb", default=None, help="adb executable (default: $ADB or adb on PATH)")
    a.add_argument("--serial", default=None, help="device serial (required when several are attached)")
    a.add_argument("--list-devices", action="store_true", help="list attached devices (adb devices -l) and exit")
    a.add_argument("--benchmark-binary", default=None, metavar="PATH",
                   help="TFLite benchmark_model binary built for the phone's ABI")
    a.add_argument("--remote-dir", default="/data/local/tmp/tfq_bench", help="working folder on the device")
    a.add_argument("--use-gpu", action="store_true", help="benchmark_model --use_gpu=true")
    a.add_argument("--use-nnapi", action="store_true", help="benchmark_model --use_nnapi=true")
    a.add_argument("--cpu-mask", default=None, metavar="HEX", help="pin to CPUs with taskset (e.g. f0)")
    a.add_argument("--cooldown", type=float, default=10.0, help="seconds to rest between models (default: 10)")
    a.add_argument("--keep-on-device", action="store_true", help="do not delete the remote folder at the end")

    o = p.add_argument_group("output")
    o.add_argument("--json", default=None, metavar="OUT.json", help="write all results as JSON")
    o.add_argument("--markdown", default=None, metavar="OUT.md", help="write the table as Markdown")
    o.add_argument("--overwrite", action="store_true", help="replace existing --json/--markdown files")
    o.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    """Runs the benchmark; returns 0 when every model was measured, 1 otherwise, 2 on bad usage."""
    setup_logging(args.verbose)
    if args._worker:
        return worker_main(*args._worker)
    try:
        if args.list_devices:
            from edge.adb import Adb, find_adb

            for d in Adb(find_adb(args.adb)).devices():
                print("\t".join([d.serial, d.state, *(f"{k}:{v}" for k, v in d.details.items())]))
            return 0
        if not args.models:
            raise EdgeError("give at least one MODEL.tflite")
        check_writable(args.json, args.overwrite)
        check_writable(args.markdown, args.overwrite)
        spec_from_args(args, args.models[0])  # validates the numeric options once, up front
        if args.target == "android":
            from edge.android import benchmark_android

            if args.eval:
                raise EdgeError("--eval is not available with --target android: benchmark_model measures "
                                "latency and memory only (accuracy on the phone is not implemented)")

            results, device = benchmark_android(args)
        else:
            results, device = benchmark_local(args), None
    except EdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = results_table(results)
    print(table, end="")
    from edge.litert import interpreter_backend

    report = {
        "tool": "edge.bench",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "params": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "verbose"},
        "target": args.target,
        "host": host_info(),
        "device": device,
        "interpreter": interpreter_backend() if args.target != "android" else None,
        "results": results,
    }
    if args.json:
        write_json_atomic(args.json, report, overwrite=args.overwrite)
        logger.info("wrote %s", args.json)
    if args.markdown:
        write_text_atomic(args.markdown, table + host_line(report["host"], args.target), overwrite=args.overwrite)
    failed = [r["model"] for r in results if r.get("status") != "ok"]
    if failed:
        print(f"error: {len(failed)} of {len(results)} model(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
