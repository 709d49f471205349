"""Android target: TFLite's ``benchmark_model`` on a phone, driven over ``adb``.

Flow of ``python -m edge.bench MODEL.tflite ... --target android --benchmark-binary PATH``:

1. find ``adb``, list devices and pick one (``--serial`` when several are attached);
2. create ``--remote-dir`` on the device, push ``benchmark_model`` and ``chmod 755`` it;
3. per model: push it (size checked), run ``[taskset MASK] benchmark_model --graph=...
   --num_threads=N --num_runs=R --warmup_runs=W --min_secs=S --use_xnnpack=...
   [--use_gpu=true] [--use_nnapi=true] --report_peak_memory_footprint=true``, parse its
   output, then rest ``--cooldown`` seconds before the next model;
4. delete the remote folder (unless ``--keep-on-device``), even after a failure.

Every remote argument is shell-quoted (:meth:`edge.adb.Adb.shell`). A failure that
ends the session (no device, unauthorized, device gone, binary not executable)
stops the loop with a clear error; models measured before it keep their
results and the rest are marked ``skipped``. A per-model failure (timeout,
output that cannot be parsed, delegate failure) marks that model and goes on.

``benchmark_model`` reports mean/std/min/max but no percentiles, so
``p50``/``p90``/``p99`` are null for this target.
"""

from __future__ import annotations

import argparse
import logging
import os
import posixpath
import re
import sys
import time
from typing import Any

from edge._common import EdgeError
from edge.adb import (AdbError, AdbTimeoutError, DeviceLostError, DeviceUnauthorizedError, NoDeviceError,
                      RemoteCommandError, connect)

logger = logging.getLogger("edge.android")

BINARY_NAME = "benchmark_model"


class BenchmarkOutputError(EdgeError):
    """benchmark_model's output has no timing that can be parsed."""


class BinaryNotExecutableError(AdbError):
    """The benchmark binary cannot run on the device (mode bits, ABI, noexec mount)."""


# --------------------------------------------------------------------------- output parser

_NUM = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_STAT_KEYS = ("count", "first", "curr", "min", "max", "avg", "std")


def _parse_stat_line(line: str) -> dict[str, float] | None:
    """Parses ``count=50 first=.. curr=.. min=.. max=.. avg=.. std=..`` (and the all-same variant)."""
    m = re.search(r"count=(\d+)(.*)$", line)
    if not m:
        return None
    stat: dict[str, float] = {"count": int(m.group(1))}
    for key, value in re.findall(r"(\w+)=" + _NUM, m.group(2)):
        if key in _STAT_KEYS:
            stat[key] = float(value)
    if "avg" not in stat and "curr" in stat:  # "count=N curr=X(all same)" or a single run
        stat.update(first=stat.get("first", stat["curr"]), min=stat["curr"], max=stat["curr"],
                    avg=stat["curr"], std=0.0)
    return stat


def parse_benchmark_output(text: str) -> dict[str, Any]:
    """Parses TFLite ``benchmark_model`` output, older and newer formats.

    Understood lines (with or without an ``INFO:`` or logcat prefix):

    * ``Running benchmark for at least N iterations ...`` followed by a
      ``count= first= curr= min= max= avg= std=`` line (microseconds): the first
      such block is the warm-up, the last one the timed runs; ``count=N curr=X``
      and ``(all same)`` variants included;
    * ``Inference timings in us: Init: A, First inference: B, Warmup (avg): C,
      Inference (avg): D`` (newer) and ``Average inference timings in us: Warmup: W,
      Init: I, Inference|no stats: A`` (older);
    * memory: ``Memory footprint delta from the start of the tool (MB): init=X
      overall=Y`` (newer), ``Peak memory footprint (MB): init=X overall=Y`` (older),
      ``Overall peak memory footprint (MB) via periodic monitoring: Z``;
    * ``The input model file size (MB): X``, ``Initialized session in X ms``;
    * delegation: ``Replacing N [out of M] node(s) with delegate (NAME) node,
      yielding K partitions``; unsupported-op and ``ERROR`` lines.

    Returns:
        ``init_ms``, ``first_ms``, ``warmup_avg_ms``, ``latency_ms`` (mean, std,
        min, max, count; percentiles None), ``model_size_mb``, ``memory``
        (``init_mb``, ``overall_mb``, ``peak_mb``), ``delegations`` and ``errors``.

    Raises:
        BenchmarkOutputError: When no timing of the timed runs is found.
    """
    stats: list[dict[str, float]] = []
    expect_stat = False
    out: dict[str, Any] = {"init_ms": None, "first_ms": None, "warmup_avg_ms": None, "latency_ms": None,
                           "model_size_mb": None, "memory": {}, "delegations": [], "errors": [],
                           "unsupported_ops": []}
    summary_avg_us = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if "Running benchmark for at least" in line:
            expect_stat = True
            continue
        if expect_stat and "count=" in line:
            stat = _parse_stat_line(line)
            if stat is not None:
                stats.append(stat)
                expect_stat = False
                continue
        m = re.search(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM
                      + r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM, line)
        if m:
            out["init_ms"] = float(m.group(1)) / 1e3
            out["first_ms"] = float(m.group(2)) / 1e3
            out["warmup_avg_ms"] = float(m.group(3)) / 1e3
            summary_avg_us = float(m.group(4))
            continue
        m = re.search(r"Average inference timings in us: (.*)$", line)
        if m:
            fields = dict(re.findall(r"([A-Za-z ]+):\s*" + _NUM, m.group(1)))
            fields = {k.strip().lower(): float(v) for k, v in fields.items()}
            if "init" in fields:
                out["init_ms"] = fields["init"] / 1e3
            if "warmup" in fields:
                out["warmup_avg_ms"] = fields["warmup"] / 1e3
            avg = fields.get("inference", fields.get("no stats"))
            if avg is not None:
                summary_avg_us = avg
            continue
        m = re.search(r"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
                      r"init=" + _NUM + r" overall=" + _NUM, line)
        if m:
            out["memory"].update(init_mb=float(m.group(1)), overall_mb=float(m.group(2)))
            continue
        m = re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM, line)
        if m:
            out["memory"]["peak_mb"] = float(m.group(1))
            continue
        m = re.search(r"The input model file size \(MB\): " + _NUM, line)
        if m:
            out["model_size_mb"] = float(m.group(1))
            continue
        m = re.search(r"Initialized session in " + _NUM + r"\s*ms", line)
        if m and out["init_ms"] is None:
            out["init_ms"] = float(m.group(1))
            continue
        m = re.search(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \(([^)]*)\) node, yielding "
                      r"(\d+) partitions", line)
        if m:
            out["delegations"].append({"delegate": m.group(3), "nodes": int(m.group(1)),
                                       "total": int(m.group(2)) if m.group(2) else None,
                                       "partitions": int(m.group(4))})
            continue
        m = re.search(r"\b([A-Z][A-Z0-9_]+): Operation is not supported", line)
        if m:
            out["unsupported_ops"].append(m.group(1))
        if re.search(r"\bERROR\b|Benchmarking failed|Failed to", line):
            out["errors"].append(line)
    timed = stats[-1] if len(stats) >= 2 or (stats and summary_avg_us is None and len(stats) == 1) else None
    if len(stats) >= 2 and out["warmup_avg_ms"] is None:
        out["warmup_avg_ms"] = stats[0]["avg"] / 1e3
    if len(stats) >= 2 and out["first_ms"] is None and "first" in stats[0]:
        out["first_ms"] = stats[0]["first"] / 1e3
    if timed is not None:
        out["latency_ms"] = {"mean": timed["avg"] / 1e3, "std": timed["std"] / 1e3, "min": timed["min"] / 1e3,
                             "p50": None, "p90": None, "p99": None, "max": timed["max"] / 1e3,
                             "count": int(timed["count"])}
    elif summary_avg_us is not None:
        out["latency_ms"] = {"mean": summary_avg_us / 1e3, "std": None, "min": None, "p50": None, "p90": None,
                             "p99": None, "max": None, "count": None}
    if out["latency_ms"] is None:
        reason = "; ".join(out["errors"][-3:]) or "no 'count=' statistics or 'Inference timings' line"
        raise BenchmarkOutputError(f"cannot parse benchmark_model output: {reason}")
    return out


# --------------------------------------------------------------------------- remote run


def build_command(binary: str, graph: str, *, threads: int | None, runs: int, warmup: int, min_seconds: float,
                  use_xnnpack: bool, use_gpu: bool, use_nnapi: bool, cpu_mask: str | None) -> list[str]:
    """The argument list of one remote benchmark_model run (quoted later by Adb.shell)."""
    argv = ["taskset", cpu_mask] if cpu_mask else []
    argv += [binary, f"--graph={graph}", f"--num_runs={runs}", f"--warmup_runs={warmup}",
             f"--min_secs={min_seconds:g}", f"--use_xnnpack={'true' if use_xnnpack else 'false'}",
             "--report_peak_memory_footprint=true"]
    if threads is not None:
        argv.append(f"--num_threads={threads}")
    if use_gpu:
        argv.append("--use_gpu=true")
    if use_nnapi:
        argv.append("--use_nnapi=true")
    return argv


_NOT_EXECUTABLE = re.compile(r"Permission denied|can't execute|not executable|Exec format error|"
                             r"inaccessible or not found|syntax error|No such file or directory", re.I)


def _result_template(model: str, args: argparse.Namespace, delegate: str) -> dict[str, Any]:
    return {
        "model": os.path.basename(model), "path": os.path.abspath(model),
        "size_bytes": os.path.getsize(model) if os.path.isfile(model) else None,
        "status": "error", "error": None, "target": "android", "delegate": delegate, "fallback": None,
        "threads": args.threads, "xnnpack": not args.no_xnnpack, "warmup": args.warmup, "runs": args.runs,
        "min_seconds": args.min_seconds, "cpu_mask": args.cpu_mask,
        "interpreter": {"name": "benchmark_model", "version": None, "module": args.benchmark_binary},
    }


def _fill_from_output(result: dict[str, Any], parsed: dict[str, Any]) -> None:
    lat = parsed["latency_ms"]
    mem = parsed["memory"]
    result.update(
        init_ms=parsed["init_ms"], first_ms=parsed["first_ms"], warmup_avg_ms=parsed["warmup_avg_ms"],
        latency_ms=lat, measured_runs=lat.get("count"),
        throughput_ips=1000.0 / lat["mean"] if lat.get("mean") else None,
        peak_rss_mb=mem.get("peak_mb", mem.get("overall_mb")), memory_mb=mem,
    )
    if parsed["delegations"]:
        last = parsed["delegations"][-1]
        result["coverage"] = {"delegated_ops": last["nodes"], "total_ops": last["total"],
                              "partitions": [last["partitions"]], "delegate_name": last["delegate"]}
    if parsed["unsupported_ops"]:
        result["unsupported_ops"] = parsed["unsupported_ops"]


def _run_one(adb: Any, remote_bin: str, remote_model: str, args: argparse.Namespace, use_gpu: bool,
             use_nnapi: bool) -> tuple[dict[str, Any] | None, str, str | None]:
    """Runs one benchmark; returns (parsed or None, raw output, error message or None)."""
    argv = build_command(remote_bin, remote_model, threads=args.threads, runs=args.runs, warmup=args.warmup,
                         min_seconds=args.min_seconds, use_xnnpack=not args.no_xnnpack, use_gpu=use_gpu,
                         use_nnapi=use_nnapi, cpu_mask=args.cpu_mask)
    proc = adb.shell(argv, timeout=args.timeout, check=False)
    output = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode in (126, 127) or (proc.returncode != 0 and _NOT_EXECUTABLE.search(output)
                                        and "count=" not in output):
        raise BinaryNotExecutableError(
            f"{args.benchmark_binary} cannot run on the device (exit {proc.returncode}: "
            f"{output.strip().splitlines()[-1] if output.strip() else 'no output'}); build benchmark_model for "
            "the phone's ABI (see the device's ro.product.cpu.abi) and check that it is an executable")
    try:
        parsed = parse_benchmark_output(output)
    except BenchmarkOutputError as e:
        return None, output, f"{e} (exit {proc.returncode})"
    if proc.returncode != 0:
        return parsed, output, f"benchmark_model exited with {proc.returncode}: " + "; ".join(parsed["errors"][:2])
    return parsed, output, None


def cool_down(seconds: float) -> None:
    """Rests between models so the phone's thermal state does not carry over."""
    logger.info("cooling down for %g s", seconds)
    time.sleep(seconds)


def benchmark_android(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Benchmarks every model of ``args.models`` on a phone; see the module docstring.

    Returns:
        ``(results, device_info)``; results cover every model (ok, error or skipped).

    Raises:
        EdgeError: Before anything was measured (no adb, no device, unauthorized,
            missing binary).
    """
    from edge.tflite_model import InvalidModelError, validate

    if not args.benchmark_binary:
        raise EdgeError("--target android needs --benchmark-binary PATH: TFLite's benchmark_model built for "
                        "the phone (https://ai.google.dev/edge/litert/models/measurement)")
    if not os.path.isfile(args.benchmark_binary):
        raise EdgeError(f"benchmark binary not found: {args.benchmark_binary}")
    delegate = "gpu" if args.use_gpu else "nnapi" if args.use_nnapi else ("xnnpack" if not args.no_xnnpack
                                                                          else "none")
    results = [_result_template(m, args, delegate) for m in args.models]
    adb = connect(args.adb, args.serial, timeout=max(60.0, min(args.timeout, 600.0)))
    device = adb.device_info()
    logger.info("benchmarking on %s (%s, Android %s)", device["serial"], device["model"], device["android"])
    remote_dir = args.remote_dir.rstrip("/") or "/data/local/tmp/tfq_bench"
    remote_bin = posixpath.join(remote_dir, BINARY_NAME)
    fatal: AdbError | None = None
    current: int | None = None  # index of the model being measured when a fatal error hit
    try:
        adb.shell(["mkdir", "-p", remote_dir])
        adb.push(args.benchmark_binary, remote_bin, timeout=args.timeout)
        adb.shell(["chmod", "755", remote_bin])
        for i, (model, result) in enumerate(zip(args.models, results)):
            current = i
            if i > 0 and args.cooldown > 0:
                cool_down(args.cooldown)
            try:
                validate(model)
            except InvalidModelError as e:
                result["error"] = str(e)
                continue
            remote_model = posixpath.join(remote_dir, f"{i}_{os.path.basename(model)}")
            try:
                adb.push(model, remote_model, timeout=args.timeout)
                size = adb.file_size(remote_model)
                if size != os.path.getsize(model):
                    raise RemoteCommandError(f"pushed {size} bytes of {os.path.getsize(model)}", 1, "")
                parsed, output, error = _run_one(adb, remote_bin, remote_model, args, args.use_gpu,
                                                 args.use_nnapi)
                if error and args.use_gpu and args.allow_fallback:
                    logger.warning("%s: GPU run failed (%s); running on the CPU", model, error)
                    parsed, output, error = _run_one(adb, remote_bin, remote_model, args, False, False)
                    result["fallback"] = "cpu: GPU delegate failed"
                    result["delegate"] = "xnnpack" if not args.no_xnnpack else "none"
                if parsed is not None:
                    _fill_from_output(result, parsed)
                cov = result.get("coverage") or {}
                if (error is None and args.use_gpu and not result["fallback"] and cov.get("total_ops")
                        and cov["delegated_ops"] < cov["total_ops"]):
                    message = (f"the GPU delegate took {cov['delegated_ops']} of {cov['total_ops']} ops"
                               + (f" (unsupported: {', '.join(result.get('unsupported_ops', []))})"
                                  if result.get("unsupported_ops") else ""))
                    if args.allow_fallback:
                        result["fallback"] = f"partial: {message}"
                    else:
                        error = message + "; pass --allow-fallback to accept CPU fallback"
                if error:
                    result["error"] = error
                    result["output_tail"] = output.strip().splitlines()[-10:]
                else:
                    result["status"] = "ok"
            except AdbTimeoutError as e:
                result["error"] = f"timed out after {args.timeout:g} s: {e}"
                adb.shell(["pkill", "-f", remote_bin], check=False, timeout=30)
            except RemoteCommandError as e:
                result["error"] = str(e)
            finally:
                if not args.keep_on_device and result["status"] != "skipped":
                    try:
                        adb.shell(["rm", "-f", remote_model], check=False, timeout=60)
                    except AdbError:
                        pass
            current = None
    except (DeviceLostError, DeviceUnauthorizedError, NoDeviceError, BinaryNotExecutableError,
            AdbTimeoutError, RemoteCommandError) as e:
        fatal = e
    finally:
        if not args.keep_on_device:
            try:
                adb.shell(["rm", "-rf", remote_dir], check=False, timeout=60)
            except AdbError as e:
                logger.warning("could not clean up %s on the device: %s", remote_dir, e)
    if fatal is not None:
        if current is not None:
            results[current]["status"] = "error"
            results[current]["error"] = str(fatal)
        for result in results:
            if result["status"] == "error" and result["error"] is None:
                result["status"] = "skipped"
                result["error"] = f"not measured: {fatal}"
        print(f"error: {fatal}", file=sys.stderr)
    return results, device
