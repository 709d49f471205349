"""Evaluation of ``.tflite`` classifiers through the LiteRT interpreter.

One call measures what the PTQ table shows for a model: top-1/top-5 on the
given split, agreement with and logit SQNR against the FP32 reference, file
size and its ratio to FP32, single-image latency (median and p90 over at least
``latency_runs`` timed ``invoke()`` calls after ``warmup`` untimed ones, for
each thread count, XNNPACK on as in a default deployment), and the float ops
left in the model (named), so a full-integer model's "no float op" check is in
the numbers.

Latency on a shared machine is noisy; the setup (backend, threads, runs,
warm-up, XNNPACK) is recorded with every number.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge import metrics
from edge.litert import TFLiteModel, interpreter_backend, make_interpreter, quantize_input
from tfq.report import Column, fmt_bytes, fmt_db, fmt_delta_pp, fmt_list, fmt_ms, fmt_pct, fmt_ratio
from edge.tflite_model import load_bytes, summarize

__all__ = [
    "default_threads",
    "evaluate_tflite",
    "measure_latency",
    "predict_tflite",
    "results_columns",
    "results_markdown",
]

log = logging.getLogger(__name__)

MIN_LATENCY_RUNS = 50


def default_threads() -> tuple[int, ...]:
    """``(1, all cores)`` -- one entry when the machine has a single core."""
    n = os.cpu_count() or 1
    return (1,) if n == 1 else (1, n)


def predict_tflite(model: bytes | str | os.PathLike, x: np.ndarray, *, batch_size: int = 64,
                   num_threads: int | None = None) -> np.ndarray:
    """Float outputs of a ``.tflite`` classifier on preprocessed float input."""
    m = TFLiteModel(make_interpreter(model if isinstance(model, bytes) else os.fspath(model),
                                     num_threads=num_threads))
    return m.predict(x, batch_size=batch_size)


def measure_latency(
    model: bytes,
    sample: np.ndarray,
    *,
    num_threads: int,
    runs: int = MIN_LATENCY_RUNS,
    warmup: int = 10,
    use_xnnpack: bool = True,
) -> dict[str, float]:
    """Times single-image ``invoke()`` calls.

    Args:
      model: ``.tflite`` content.
      sample: One preprocessed float image, ``(1, H, W, C)``.
      num_threads: Interpreter threads.
      runs: Timed runs.
      warmup: Untimed runs first.
      use_xnnpack: Apply the default XNNPACK delegate.

    Returns:
      :func:`edge.metrics.latency_stats` of the timed runs, in milliseconds.
    """
    interp = make_interpreter(model, num_threads=num_threads, use_xnnpack=use_xnnpack)
    detail = interp.get_input_details()[0]
    if tuple(detail["shape"]) != tuple(sample.shape):
        interp.resize_tensor_input(detail["index"], list(sample.shape), strict=False)
        interp.allocate_tensors()
        detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], quantize_input(sample, detail))
    for _ in range(warmup):
        interp.invoke()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        times[i] = (time.perf_counter() - t0) * 1000.0
    return metrics.latency_stats(times)


def evaluate_tflite(
    model_bytes_or_path: bytes | str | os.PathLike,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    reference_logits: np.ndarray | None = None,
    fp32_size_bytes: int | None = None,
    latency_runs: int = MIN_LATENCY_RUNS,
    warmup: int = 10,
    threads: Sequence[int] | None = None,
    batch_size: int = 64,
    expect_integer: bool = False,
    return_logits: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], np.ndarray]:
    """Evaluates one ``.tflite`` classifier.

    Args:
      model_bytes_or_path: The model.
      x_test: Preprocessed float images.
      y_test: Integer labels.
      reference_logits: FP32 outputs on ``x_test`` (for agreement and SQNR).
      fp32_size_bytes: Size of the FP32 ``.tflite`` (for the size ratio).
      latency_runs: Timed runs per thread count (0 skips latency; otherwise at
        least 50 are taken, as the report promises).
      warmup: Untimed runs before timing.
      threads: Thread counts to time (default ``(1, os.cpu_count())``).
      batch_size: Batch for the accuracy pass.
      expect_integer: The model is meant to be full-integer; ``integer_only``
        then says whether that holds.
      return_logits: Also return the model's outputs on ``x_test``.

    Returns:
      ``{"size_bytes", "size_ratio", "top1", "top5", "agreement", "sqnr_db",
      "latency_ms": {"<threads>": stats}, "latency_setup", "float_ops",
      "integer_only", "op_counts", "weight_bits", "num_samples", "eval_seconds"}``;
      ``agreement``/``sqnr_db``/``size_ratio`` are None without their reference.
      With ``return_logits``, a ``(result, logits)`` pair.
    """
    content = load_bytes(model_bytes_or_path)
    x_test = np.asarray(x_test, dtype=np.float32)
    y_test = np.asarray(y_test).reshape(-1)
    if x_test.shape[0] != y_test.shape[0]:
        raise ValueError(f"{x_test.shape[0]} test images but {y_test.shape[0]} labels")
    summary = summarize(content)
    float_ops = []
    for op in summary.float_ops():
        outs = [summary.tensor(i, op.subgraph).name for i in op.outputs if i >= 0]
        float_ops.append(f"{op.name}({outs[0] if outs else '?'})")
    threads = tuple(threads) if threads else default_threads()

    t0 = time.perf_counter()
    logits = TFLiteModel(make_interpreter(content, num_threads=max(threads))).predict(x_test, batch_size=batch_size)
    result: dict[str, Any] = {
        "size_bytes": len(content),
        "size_ratio": len(content) / fp32_size_bytes if fp32_size_bytes else None,
        "num_samples": int(x_test.shape[0]),
        "top1": metrics.top_k_accuracy(logits, y_test, 1),
        "top5": metrics.top_k_accuracy(logits, y_test, 5),
        "agreement": None,
        "sqnr_db": None,
        "float_ops": float_ops,
        "integer_only": not float_ops,
        "expect_integer": bool(expect_integer),
        "op_counts": summary.op_counts(),
        "weight_bits": summary.weight_bits(),
    }
    if reference_logits is not None:
        ref = np.asarray(reference_logits, dtype=np.float32)
        result["agreement"] = metrics.agreement(ref, logits)
        result["sqnr_db"] = metrics.sqnr_db(ref, logits)
    result["eval_seconds"] = time.perf_counter() - t0
    if expect_integer and float_ops:
        log.warning("full-integer model has %d float op(s): %s", len(float_ops), ", ".join(float_ops))

    latency: dict[str, Any] = {}
    if latency_runs > 0:
        runs = max(int(latency_runs), MIN_LATENCY_RUNS)
        sample = x_test[:1]
        for n in threads:
            latency[str(n)] = measure_latency(content, sample, num_threads=n, runs=runs, warmup=warmup)
        result["latency_setup"] = {
            "batch": 1, "runs": runs, "warmup": warmup, "threads": list(threads), "xnnpack": True,
            "interpreter": interpreter_backend(), "cpu_count": os.cpu_count(),
        }
    result["latency_ms"] = latency
    return (result, logits) if return_logits else result


# --------------------------------------------------------------------------- the table


def results_columns(include_model: bool = False, extra: Sequence[Any] = ()) -> list:
    """Columns of the evaluation table of quantized variants (PTQ stage and sweep).

    Rows are :func:`evaluate_tflite` results plus ``name``, ``mode``,
    ``method``, ``granularity``, ``io`` and ``delta_top1``; ``extra`` columns go
    after ``I/O``.
    """

    def lat(which: str, q: str):
        def get(r: dict[str, Any]) -> Any:
            lat_ms = r.get("latency_ms") or {}
            many = sorted((k for k in lat_ms if k != "1"), key=int)
            key = "1" if which == "one" else (many[-1] if many else None)
            return (lat_ms.get(key) or {}).get(q) if key else None

        return get

    cols: list[Any] = [Column("model", "model", align="left")] if include_model else []
    cols += [
        Column("name", "variant", align="left"),
        Column("mode", "mode", align="left"),
        Column("method", "calibration", align="left"),
        Column("granularity", "weights", align="left"),
        Column("io", "I/O", align="left"),
        *extra,
        Column("top1", "top-1", fmt_pct),
        Column("delta_top1", "Δ top-1 (pp)", fmt_delta_pp),
        Column("top5", "top-5", fmt_pct),
        Column("agreement", "agree", fmt_pct),
        Column("sqnr_db", "SQNR dB", fmt_db),
        Column("size_bytes", "size", fmt_bytes),
        Column("size_ratio", "size/FP32", fmt_ratio),
        Column(lat("one", "p50"), "1-thr p50 ms", fmt_ms),
        Column(lat("one", "p90"), "1-thr p90 ms", fmt_ms),
        Column(lat("all", "p50"), "all-thr p50 ms", fmt_ms),
        Column(lat("all", "p90"), "all-thr p90 ms", fmt_ms),
        Column(lambda r: r.get("float_ops") if r.get("expect_integer") else None, "float ops left",
               lambda v: "n/a" if v is None else fmt_list(v, limit=3), align="left"),
    ]
    return cols


def results_markdown(rows: list[dict[str, Any]], include_model: bool = False, extra: Sequence[Any] = ()) -> str:
    """The evaluation table as Markdown (see :func:`results_columns`)."""
    from tfq.report import markdown_table

    return markdown_table(rows, results_columns(include_model, extra))
