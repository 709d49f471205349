"""Accuracy, agreement, signal-to-quantization-noise and latency statistics (numpy only).

Shared by tfq's evaluation and the edge runner, so both report the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["agreement", "latency_stats", "sqnr_db", "top_k_accuracy"]


def _as_logits(logits: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(logits)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, classes), got shape {arr.shape}")
    return arr


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the ``k`` highest scores.

    Among equal scores the lower class index ranks first (as ``argmax``
    does); ``k`` larger than the class count counts every sample as correct.

    Args:
        logits: ``(N, C)`` scores (logits or probabilities).
        labels: ``(N,)`` integer class indices, or ``(N, C)`` one-hot.
        k: How many top classes count as a hit.

    Returns:
        Accuracy in [0, 1]; NaN for N == 0.

    Raises:
        ValueError: If shapes disagree or ``k < 1``.
    """
    scores = _as_logits(logits, "logits")
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1)
    if labels.shape[0] != scores.shape[0]:
        raise ValueError(f"{scores.shape[0]} score rows but {labels.shape[0]} labels")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if scores.shape[0] == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def agreement(logits_a: np.ndarray, logits_b: np.ndarray) -> float:
    """Fraction of samples on which two models predict the same top-1 class.

    Args:
        logits_a: ``(N, C)`` scores of the first model.
        logits_b: ``(N, C)`` scores of the second model.

    Returns:
        Agreement in [0, 1]; NaN for N == 0.

    Raises:
        ValueError: If the shapes differ.
    """
    a = _as_logits(logits_a, "logits_a")
    b = _as_logits(logits_b, "logits_b")
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.shape[0] == 0:
        return float("nan")
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in decibels.

    ``10 * log10(sum(reference**2) / sum((reference - test)**2))``, computed in
    float64.

    Args:
        reference: The float reference (e.g. FP32 model outputs).
        test: The approximation, same shape.

    Returns:
        SQNR in dB; ``inf`` when the arrays are identical, ``-inf`` when the
        reference is all zeros but the test is not.

    Raises:
        ValueError: If the shapes differ.
    """
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    if ref.shape != tst.shape:
        raise ValueError(f"shapes differ: {ref.shape} vs {tst.shape}")
    noise = float(np.sum((ref - tst) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def latency_stats(samples_ms: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Summarizes latency samples.

    Percentiles use numpy's default linear interpolation; ``std`` is the
    population standard deviation (ddof=0), as TFLite's benchmark_model reports.

    Args:
        samples_ms: Latencies in milliseconds.

    Returns:
        ``{"mean", "std", "min", "p50", "p90", "p99", "max", "count"}``; all NaN
        (count 0) for no samples.
    """
    x = np.asarray(samples_ms, dtype=np.float64).reshape(-1)
    if x.size == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "min": nan, "p50": nan, "p90": nan, "p99": nan,
                "max": nan, "count": 0}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "min": float(x.min()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(x.max()),
        "count": int(x.size),
    }
