"""Activation-range calibration: representative samples, histograms and calibrators.

The TFLite converter records the min/max of every activation tensor over the
representative dataset and quantizes with exactly that range, so one outlier
can waste most of the INT8 grid. This module computes better ranges; tfq's PTQ
stage (:mod:`tfq.ptq`) writes them into the calibrated model before the
quantizer runs, so they land in the ``.tflite``.

The stage is three steps, each usable on its own::

    samples = representative_samples(x_calib, 500, seed=0, input_shape=(32, 32, 3))
    stats = collect_statistics(calibrated_tflite, samples)        # histograms
    ranges = compute_ranges(stats, CalibrationConfig(method="kl"), QuantGrid.INT8)

Calibrators are numpy functions of one :class:`TensorHistogram`, listed in the
:data:`CALIBRATORS` table (method -> function):

``minmax``
    The observed range: the converter's rule, on correctly recorded activations
    (see :func:`calibrate_minmax`).
``percentile``
    Clips at the ``percentile``-th percentile of the values (each tail of a
    two-sided tensor; the magnitude for a symmetric grid).
``kl``
    TensorRT's entropy calibration: the clip threshold whose 128-level (or, for
    a one-sided post-ReLU tensor on the asymmetric grid, 256-level) quantized
    histogram is closest in KL divergence to the 2048-bin reference.
``mse``
    The range minimizing the expected quantization MSE on the target grid:
    rounding noise ``step**2 / 12`` for every in-range value plus the squared
    clipping error of every value outside.

Exact zeros (the post-ReLU spike) are counted apart: zero is always on the
grid, so KL and MSE leave them out of their objective.

Rules select tensors by regular expression (``re.search``) on the *TFLite
tensor names* of the calibrated model, which contain the Keras layer names;
the converter fuses Conv+BN+ReLU, so the tensor after a ReLU is named like
``model/stage2_block1_relu1/Relu;model/stage2_block1_conv1/Conv2D`` and a rule
``stage2_block1_relu1`` or ``conv1`` both match it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from tfq.configs import ConfigBase, ConfigError

__all__ = [
    "CALIBRATORS",
    "CalibrationConfig",
    "CalibrationDataError",
    "CalibrationMethod",
    "CalibrationWarning",
    "LayerRule",
    "QuantGrid",
    "TensorHistogram",
    "TensorRange",
    "collect_statistics",
    "compute_ranges",
    "finalize_range",
    "op_aliases",
    "representative_samples",
    "validate_calibration_data",
]

log = logging.getLogger(__name__)

DEFAULT_NUM_BINS = 2048
DEFAULT_PERCENTILE = 99.99


class CalibrationDataError(ValueError):
    """Calibration data is unusable (NaN/Inf, wrong shape or dtype, empty)."""


class CalibrationWarning(UserWarning):
    """Calibration went ahead with less than asked (for example fewer samples)."""


class CalibrationMethod(str, enum.Enum):
    """How an activation range is chosen from the calibration statistics."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    KL = "kl"
    MSE = "mse"


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class LayerRule(ConfigBase):
    """A per-tensor override of the global calibration settings.

    Attributes:
      pattern: Regular expression searched (``re.search``) in the TFLite tensor
        name; the first matching rule wins.
      method: Calibration method for matching tensors (global one when None).
      percentile: Percentile for ``percentile`` (global one when None).
      symmetric: Symmetric range for matching tensors (global one when None).
    """

    pattern: str
    method: CalibrationMethod | None = None
    percentile: float | None = None
    symmetric: bool | None = None

    def __post_init__(self) -> None:
        if not self.pattern:
            raise ConfigError("per_layer rule: pattern must be a non-empty regular expression")
        try:
            re.compile(self.pattern)
        except re.error as e:
            raise ConfigError(f"per_layer rule: invalid regular expression {self.pattern!r}: {e}") from None
        if self.percentile is not None:
            _check_percentile(self.percentile, f"per_layer rule {self.pattern!r}")

    def matches(self, names: str | Sequence[str]) -> bool:
        """True when :attr:`pattern` is found in one of ``names``.

        Args:
          names: A tensor name, or its aliases (see :attr:`TensorHistogram.aliases`).
        """
        if isinstance(names, str):
            names = (names,)
        return any(re.search(self.pattern, n) is not None for n in names)


def _check_percentile(p: float, where: str) -> None:
    if not 50.0 < float(p) <= 100.0:
        raise ConfigError(f"{where}: percentile must be in (50, 100], got {p!r}")


@dataclasses.dataclass(frozen=True)
class CalibrationConfig(ConfigBase):
    """How activation ranges are calibrated.

    Attributes:
      method: Global calibration method.
      percentile: Percentile used by ``percentile`` (e.g. 99.99).
      num_bins: Histogram bins per tensor (TensorRT uses 2048).
      symmetric: Symmetric activation ranges (zero point 0) instead of the
        default asymmetric ones. INT16x8 is always symmetric.
      per_layer: Rules overriding the global settings for some tensors, e.g.
        ``[{"pattern": "logits", "method": "minmax"}]``.
    """

    method: CalibrationMethod = CalibrationMethod.MINMAX
    percentile: float = DEFAULT_PERCENTILE
    num_bins: int = DEFAULT_NUM_BINS
    symmetric: bool = False
    per_layer: tuple[LayerRule, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.method, CalibrationMethod):
            object.__setattr__(self, "method", _enum_value(CalibrationMethod, self.method, "method"))
        _check_percentile(self.percentile, "calibration")
        if isinstance(self.num_bins, bool) or not isinstance(self.num_bins, int) or not 64 <= self.num_bins <= 65536:
            raise ConfigError(f"calibration: num_bins must be an integer in [64, 65536], got {self.num_bins!r}")
        rules = []
        for r in self.per_layer:
            rules.append(r if isinstance(r, LayerRule) else LayerRule.from_dict(r, _where="per_layer"))
        object.__setattr__(self, "per_layer", tuple(rules))

    def settings_for(self, tensor_name: str, aliases: Sequence[str] = ()) -> "TensorSettings":
        """The method and parameters that apply to one tensor (first matching rule wins).

        Args:
          tensor_name: TFLite tensor name.
          aliases: Other names the rules may match (the weights of the op
            producing the tensor).
        """
        names = (tensor_name, *aliases)
        for i, rule in enumerate(self.per_layer):
            if rule.matches(names):
                return TensorSettings(
                    method=rule.method or self.method,
                    percentile=self.percentile if rule.percentile is None else rule.percentile,
                    symmetric=self.symmetric if rule.symmetric is None else rule.symmetric,
                    rule=i,
                )
        return TensorSettings(self.method, self.percentile, self.symmetric, None)


def _enum_value(enum_cls: type[enum.Enum], value: Any, where: str) -> Any:
    try:
        return enum_cls(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in enum_cls)
        raise ConfigError(f"{where}: got {value!r}; valid choices are {valid}") from None


@dataclasses.dataclass(frozen=True)
class TensorSettings:
    """Resolved calibration settings of one tensor."""

    method: CalibrationMethod
    percentile: float
    symmetric: bool
    rule: int | None  # index of the matching per_layer rule, None for the global settings


@dataclasses.dataclass(frozen=True)
class QuantGrid:
    """The integer grid an activation range is mapped onto.

    Attributes:
      bits: 8 or 16.
      force_symmetric: The format only has symmetric activations (INT16x8).
    """

    bits: int = 8
    force_symmetric: bool = False

    @property
    def steps(self) -> int:
        """Steps between the lowest and highest level (255 for 8 bits)."""
        return 2**self.bits - 1

    @property
    def positive_levels(self) -> int:
        """Levels above zero on the symmetric grid (127 for int8, 32767 for int16)."""
        return 2 ** (self.bits - 1) - 1

    @property
    def qmin(self) -> int:
        """Lowest integer level (-128 for 8 bits)."""
        return -(2 ** (self.bits - 1))

    @property
    def qmax(self) -> int:
        """Highest integer level (127 for 8 bits)."""
        return 2 ** (self.bits - 1) - 1

    def step(self, lo: float, hi: float, symmetric: bool) -> float:
        """Quantization step of a range on this grid."""
        if symmetric or self.force_symmetric:
            return max(abs(lo), abs(hi)) / self.positive_levels
        return (hi - lo) / self.steps

    def qparams(self, lo: float, hi: float) -> tuple[float, int]:
        """The scale and zero point TFLite's quantizers derive from a recorded range.

        Symmetric grids (INT16, the legacy quantizer): ``scale = max(|min|, |max|)
        / 32767``, zero point 0. Asymmetric grids (INT8, the MLIR quantizer): the
        range (as stored, in float32) is widened to contain zero, ``scale = (max -
        min) / 255``, and the zero point is ``qmin - min/scale`` or ``qmax -
        max/scale``, whichever has the smaller error term, rounded half away from
        zero and clamped. A zero point exactly halfway between two integers is
        decided by float rounding inside the quantizer, so tfq never writes such a
        range (see :meth:`nudge`).
        """
        lo = min(float(np.float32(lo)), 0.0)
        hi = max(float(np.float32(hi)), 0.0)
        if self.force_symmetric:
            return max(abs(lo), abs(hi)) / self.positive_levels, 0
        if hi == lo:
            return 1.0, 0
        scale = (hi - lo) / self.steps
        z_min, err_min = self.qmin - lo / scale, abs(self.qmin) + abs(lo / scale)
        z_max, err_max = self.qmax - hi / scale, abs(self.qmax) + abs(hi / scale)
        z = z_min if err_min < err_max else z_max
        if z < self.qmin:
            return scale, self.qmin
        if z > self.qmax:
            return scale, self.qmax
        return scale, int(math.copysign(math.floor(abs(z) + 0.5), z))

    def nudge(self, lo: float, hi: float) -> tuple[float, float]:
        """Snaps a range onto the grid: ``[(qmin - zp) * scale, (qmax - zp) * scale]``.

        The quantizer then recovers exactly this scale and an integral zero
        point, so the parameters in the ``.tflite`` are the ones tfq chose.
        """
        if self.force_symmetric or hi == lo:
            return lo, hi
        scale, zp = self.qparams(lo, hi)
        return (self.qmin - zp) * scale, (self.qmax - zp) * scale


QuantGrid.INT8 = QuantGrid(8)  # type: ignore[attr-defined]
QuantGrid.INT16 = QuantGrid(16, force_symmetric=True)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- representative data


def validate_calibration_data(x: Any, input_shape: Sequence[int] | None = None, *, what: str = "calibration data") -> np.ndarray:
    """Checks calibration images and returns them as float32.

    Args:
      x: ``(N, H, W, C)`` preprocessed float images.
      input_shape: The model's input shape without the batch dimension; None
        skips the shape check.
      what: How the data is named in error messages.

    Returns:
      ``x`` as a float32 array.

    Raises:
      CalibrationDataError: For a non-array, an integer/bool/complex dtype (raw
        pixels that skipped preprocessing), no samples, a shape that does not
        match ``input_shape``, or NaN/Inf values (with their count and the
        index of the first bad sample).
    """
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as e:  # noqa: BLE001
            raise CalibrationDataError(f"{what} must be a numpy array, got {type(x).__name__}: {e}") from None
    if x.dtype.kind != "f":
        hint = " (raw pixels? apply the model's preprocessing first)" if x.dtype.kind in "ui" else ""
        raise CalibrationDataError(f"{what} must be floating point (preprocessed float32 images), got dtype {x.dtype}{hint}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise CalibrationDataError(f"{what} holds no samples (shape {x.shape})")
    if input_shape is not None:
        want = tuple(int(d) for d in input_shape)
        got = tuple(int(d) for d in x.shape[1:])
        if len(want) != len(got) or any(w >= 0 and w != g for w, g in zip(want, got)):
            raise CalibrationDataError(
                f"{what} has shape {tuple(x.shape)} but the model expects (N, {', '.join(map(str, want))})"
            )
    finite = np.isfinite(x)
    if not finite.all():
        bad = x.size - int(finite.sum())
        first = int(np.argmin(finite.reshape(x.shape[0], -1).all(axis=1)))
        raise CalibrationDataError(f"{what} contains {bad} NaN/Inf value(s); the first in sample {first}")
    return x.astype(np.float32, copy=False)


def representative_samples(
    x: Any,
    num_samples: int,
    *,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Picks the representative dataset: ``num_samples`` images, seeded, validated.

    Args:
      x: Preprocessed float images of the calibration split.
      num_samples: How many to use.
      seed: Seed of the random subset (``np.random.default_rng``).
      input_shape: The model's input shape without the batch dimension.

    Returns:
      ``(min(num_samples, N), *input_shape)`` float32 images, in a seeded random order.

    Raises:
      CalibrationDataError: See :func:`validate_calibration_data`; also for
        ``num_samples < 1``.

    Warns:
      CalibrationWarning: When the split holds fewer than ``num_samples`` images
        (all of them are used and the count is logged).
    """
    if isinstance(num_samples, bool) or int(num_samples) < 1:
        raise CalibrationDataError(f"calib_samples must be >= 1, got {num_samples!r}")
    x = validate_calibration_data(x, input_shape)
    n = x.shape[0]
    if n < num_samples:
        msg = f"only {n} calibration samples available, fewer than the {num_samples} asked; using all {n}"
        warnings.warn(msg, CalibrationWarning, stacklevel=2)
        log.warning("%s", msg)
        num_samples = n
    rng = np.random.default_rng(seed)
    idx = rng.permutation(n)[:num_samples]
    return np.ascontiguousarray(x[np.sort(idx)])


# --------------------------------------------------------------------------- histograms


class TensorHistogram:
    """A streaming histogram of one activation tensor.

    The range starts at the min/max the converter recorded (when known) and
    grows when a batch falls outside: the counts are then redistributed onto
    the wider bins, assuming values are uniform within a bin. Exact zeros are
    also counted apart in :attr:`zeros`.

    Attributes:
      name: TFLite tensor name.
      index: Tensor index in the calibrated model (subgraph 0).
      aliases: Names of the constant inputs (weights, bias) of the op producing
        the tensor; rules match them too, so ``logits`` selects the final Dense
        output although that tensor is named ``StatefulPartitionedCall:0``.
      counts: ``num_bins`` float64 counts over ``[lo, hi]``.
      lo, hi: Histogram range.
      data_min, data_max: Exact extremes of the values seen.
      recorded_min, recorded_max: What the converter's calibrator recorded; only
        the starting range of the histogram.
      total: Number of values seen.
      zeros: Number of exact zeros seen.
    """

    def __init__(
        self,
        name: str,
        num_bins: int = DEFAULT_NUM_BINS,
        *,
        index: int = -1,
        recorded: tuple[float, float] | None = None,
        aliases: Sequence[str] = (),
    ):
        self.name = name
        self.index = index
        self.aliases = tuple(aliases)
        self.num_bins = int(num_bins)
        self.counts = np.zeros(self.num_bins, np.float64)
        self.recorded_min, self.recorded_max = recorded if recorded is not None else (math.nan, math.nan)
        self.lo = self.hi = math.nan
        if recorded is not None and all(math.isfinite(v) for v in recorded):
            self._set_range(float(recorded[0]), float(recorded[1]))
        self.data_min = math.inf
        self.data_max = -math.inf
        self.total = 0
        self.zeros = 0

    def __repr__(self) -> str:
        return f"TensorHistogram({self.name!r}, [{self.data_min:.4g}, {self.data_max:.4g}], n={self.total})"

    def _set_range(self, lo: float, hi: float) -> None:
        if not hi > lo:
            pad = max(abs(lo), 1e-6) * 1e-3
            lo, hi = lo - pad, hi + pad
        self.lo, self.hi = lo, hi

    @classmethod
    def from_values(cls, values: np.ndarray, num_bins: int = DEFAULT_NUM_BINS, name: str = "") -> "TensorHistogram":
        """A histogram of an array (convenient in tests and notebooks)."""
        h = cls(name, num_bins)
        h.update(values)
        return h

    @property
    def edges(self) -> np.ndarray:
        """``num_bins + 1`` bin edges."""
        return np.linspace(self.lo, self.hi, self.num_bins + 1)

    @property
    def one_sided(self) -> bool:
        """True when no value is negative (post-ReLU tensors)."""
        return self.data_min >= 0.0

    def update(self, values: np.ndarray) -> None:
        """Adds values (any shape) to the histogram."""
        x = np.asarray(values, dtype=np.float32).ravel()
        if x.size == 0:
            return
        bmin, bmax = float(x.min()), float(x.max())
        if not (math.isfinite(bmin) and math.isfinite(bmax)):
            raise CalibrationDataError(
                f"tensor {self.name!r} produced NaN/Inf during calibration; check the model and its inputs"
            )
        if math.isnan(self.lo):
            self._set_range(bmin, bmax)
        elif bmin < self.lo or bmax > self.hi:
            self._grow(min(bmin, self.lo), max(bmax, self.hi))
        self.data_min = min(self.data_min, bmin)
        self.data_max = max(self.data_max, bmax)
        self.total += x.size
        self.zeros += int(np.count_nonzero(x == 0))
        scale = self.num_bins / (self.hi - self.lo)
        idx = ((x - np.float32(self.lo)) * np.float32(scale)).astype(np.int64)
        np.clip(idx, 0, self.num_bins - 1, out=idx)
        self.counts += np.bincount(idx, minlength=self.num_bins)

    def _grow(self, lo: float, hi: float) -> None:
        width = self.hi - self.lo
        # Grow by at least 10% so a slowly drifting range does not rebin every batch.
        lo = min(lo, self.lo - 0.1 * width) if lo < self.lo else self.lo
        hi = max(hi, self.hi + 0.1 * width) if hi > self.hi else self.hi
        log.debug("histogram %s: range grows from [%s, %s] to [%s, %s]", self.name, self.lo, self.hi, lo, hi)
        old_edges, old_counts = self.edges, self.counts
        self.lo, self.hi = lo, hi
        self.counts = _resample(old_counts, old_edges, self.edges)

    def cdf(self, x: np.ndarray | float) -> np.ndarray:
        """Counts below ``x`` (piecewise linear within bins)."""
        cum = np.concatenate([[0.0], np.cumsum(self.counts)])
        return np.interp(x, self.edges, cum, left=0.0, right=float(cum[-1]))

    def quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` of the values lies, clipped to the data range."""
        cum = np.concatenate([[0.0], np.cumsum(self.counts)])
        value = float(np.interp(q * cum[-1], cum, self.edges))
        return min(max(value, self.data_min), self.data_max)

    def resampled(self, lo: float, hi: float, num_bins: int | None = None, *, drop_zeros: bool = False) -> np.ndarray:
        """Counts on ``num_bins`` equal bins over ``[lo, hi]`` (values outside are dropped).

        Args:
          lo, hi: New range.
          num_bins: New bin count (this histogram's by default).
          drop_zeros: Leave the exact zeros out.
        """
        counts = self._counts(drop_zeros)
        return _resample(counts, self.edges, np.linspace(lo, hi, (num_bins or self.num_bins) + 1))

    def magnitude(self, num_bins: int | None = None, *, drop_zeros: bool = False) -> tuple[np.ndarray, float]:
        """The histogram of ``|x|`` over ``[0, max|x|]``.

        Returns:
          ``(counts, amax)``.
        """
        n = num_bins or self.num_bins
        amax = max(abs(self.data_min), abs(self.data_max))
        if amax <= 0:
            return np.zeros(n), 0.0
        counts = self._counts(drop_zeros)
        cum = np.concatenate([[0.0], np.cumsum(counts)])
        new_edges = np.linspace(0.0, amax, n + 1)
        above = np.interp(new_edges, self.edges, cum, left=0.0, right=float(cum[-1]))
        below = np.interp(-new_edges, self.edges, cum, left=0.0, right=float(cum[-1]))
        g = above - below  # counts with |x| <= t
        return np.maximum(np.diff(g), 0.0), amax

    def _counts(self, drop_zeros: bool) -> np.ndarray:
        if not drop_zeros or self.zeros == 0:
            return self.counts
        counts = self.counts.copy()
        b = int(np.clip((0.0 - self.lo) * self.num_bins / (self.hi - self.lo), 0, self.num_bins - 1))
        counts[b] = max(counts[b] - self.zeros, 0.0)
        return counts


def _resample(counts: np.ndarray, edges: np.ndarray, new_edges: np.ndarray) -> np.ndarray:
    """Redistributes histogram counts onto new bin edges (uniform within old bins)."""
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    at = np.interp(new_edges, edges, cum, left=0.0, right=float(cum[-1]))
    return np.maximum(np.diff(at), 0.0)


# --------------------------------------------------------------------------- calibrators


Calibrator = Callable[[TensorHistogram, QuantGrid, TensorSettings], tuple[float, float]]


def calibrate_minmax(h: TensorHistogram, grid: QuantGrid, s: TensorSettings) -> tuple[float, float]:
    """The observed range, or ``±max|x|`` on a symmetric grid.

    This is the converter's rule applied to the true activations. It can differ
    from the converter's own numbers: TFLite's calibrator logs an op's inputs
    again after the op ran, and when the memory planner lets the op write its
    output in place (an ADD of a residual block), the input tensor is recorded
    with the output's values (tensorflow/tensorflow#127842). tfq reads tensors
    with in-place sharing disabled, so its min-max matches Keras.
    """
    if s.symmetric or grid.force_symmetric:
        t = max(abs(h.data_min), abs(h.data_max))
        return -t, t
    return h.data_min, h.data_max


def calibrate_percentile(h: TensorHistogram, grid: QuantGrid, s: TensorSettings) -> tuple[float, float]:
    """Clips each tail at the ``s.percentile``-th percentile (of ``|x|`` when symmetric)."""
    p = s.percentile / 100.0
    if s.symmetric or grid.force_symmetric:
        counts, amax = h.magnitude()
        if amax == 0:
            return 0.0, 0.0
        edges = np.linspace(0.0, amax, len(counts) + 1)
        cum = np.concatenate([[0.0], np.cumsum(counts)])
        t = float(np.interp(p * cum[-1], cum, edges))
        return -t, t
    hi = h.quantile(p) if h.data_max > 0 else h.data_max
    lo = h.quantile(1.0 - p) if h.data_min < 0 else h.data_min
    return lo, hi


def _kl_threshold(counts: np.ndarray, num_levels: int) -> int:
    """TensorRT's entropy calibration on a magnitude (or one-sided) histogram.

    For each candidate number of reference bins ``i`` (``num_levels`` to all),
    the reference distribution P is the first ``i`` bins with the mass beyond
    them added to bin ``i-1``; Q is the first ``i`` bins merged into
    ``num_levels`` groups and spread back over each group's non-empty bins. The
    ``i`` minimizing KL(P || Q) is returned (the clip is the upper edge of bin
    ``i-1``).
    """
    counts = np.asarray(counts, np.float64)
    n = counts.size
    if n <= num_levels or counts.sum() == 0:
        return n
    suffix = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])
    best_i, best_kl = n, math.inf
    eps = 1e-10
    for i in range(num_levels, n + 1):
        sliced = counts[:i]
        p = sliced.copy()
        p[-1] += suffix[i]
        nonzero = sliced > 0
        starts = (np.arange(num_levels) * i) // num_levels
        group_sum = np.add.reduceat(sliced, starts)
        group_nz = np.add.reduceat(nonzero.astype(np.float64), starts)
        avg = np.divide(group_sum, group_nz, out=np.zeros_like(group_sum), where=group_nz > 0)
        q = np.repeat(avg, np.diff(np.append(starts, i))) * nonzero
        p_sum, q_sum = p.sum(), q.sum()
        if p_sum == 0 or q_sum == 0:
            continue
        pn, qn = p / p_sum, q / q_sum
        mask = pn > 0
        kl = float(np.sum(pn[mask] * np.log(pn[mask] / np.maximum(qn[mask], eps))))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return best_i


def calibrate_kl(h: TensorHistogram, grid: QuantGrid, s: TensorSettings) -> tuple[float, float]:
    """Entropy (KL) calibration, as in TensorRT.

    A one-sided tensor on the asymmetric grid is searched over ``[0, max]`` with
    256 levels; otherwise the magnitude histogram is searched with 128 levels
    (``2**(bits-1)``) and the threshold ``T`` gives ``[max(min, -T), min(max, T)]``
    (``[-T, T]`` when symmetric). Exact zeros are left out. When the grid has at
    least as many levels as the histogram has bins (INT16), nothing is clipped.
    """
    symmetric = s.symmetric or grid.force_symmetric
    if h.one_sided and not symmetric:
        hi_data = h.data_max
        if hi_data <= 0:
            return 0.0, 0.0
        counts = h.resampled(0.0, hi_data, drop_zeros=True)
        levels = grid.steps + 1
        i = _kl_threshold(counts, levels)
        return 0.0 if h.data_min >= 0 else h.data_min, hi_data * i / counts.size
    counts, amax = h.magnitude(drop_zeros=True)
    if amax == 0:
        return 0.0, 0.0
    i = _kl_threshold(counts, grid.positive_levels + 1)
    t = amax * i / counts.size
    if symmetric:
        return -t, t
    return max(h.data_min, -t), min(h.data_max, t)


def _prefix_moments(counts: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = np.zeros(1)
    return (
        np.concatenate([z, np.cumsum(counts)]),
        np.concatenate([z, np.cumsum(counts * centers)]),
        np.concatenate([z, np.cumsum(counts * centers**2)]),
    )


def _candidates(lo_index: int, hi_index: int, limit: int = 256) -> np.ndarray:
    """Up to ``limit`` edge indices spread over ``[lo_index, hi_index]`` (inclusive)."""
    if hi_index - lo_index + 1 <= limit:
        return np.arange(lo_index, hi_index + 1)
    return np.unique(np.round(np.linspace(lo_index, hi_index, limit)).astype(np.int64))


def calibrate_mse(h: TensorHistogram, grid: QuantGrid, s: TensorSettings) -> tuple[float, float]:
    """The range minimizing the expected quantization MSE on the target grid.

    The expected squared error of a range is ``step**2 / 12`` for each value
    inside it (rounding noise; exact zeros excluded since zero is on the grid)
    plus ``(x - clip(x))**2`` for each value outside it. Candidate ends are
    histogram edges (up to 256 per end), so every candidate costs O(1) with
    prefix sums. One-sided tensors keep ``lo = 0``; two-sided tensors search
    ``lo`` and ``hi`` jointly (asymmetric grid) or ``T`` on ``|x|`` (symmetric).
    """
    symmetric = s.symmetric or grid.force_symmetric
    if symmetric or not h.one_sided:
        if symmetric:
            counts, amax = h.magnitude(drop_zeros=True)
            if amax == 0:
                return 0.0, 0.0
            edges = np.linspace(0.0, amax, counts.size + 1)
            centers = 0.5 * (edges[1:] + edges[:-1])
            n0, n1, n2 = _prefix_moments(counts, centers)
            k = _candidates(1, counts.size)
            t = edges[k]
            step = t / grid.positive_levels
            tail = (n2[-1] - n2[k]) - 2 * t * (n1[-1] - n1[k]) + t**2 * (n0[-1] - n0[k])
            err = step**2 / 12.0 * n0[k] + np.maximum(tail, 0.0)
            best = float(t[int(np.argmin(err))])
            return -best, best
        counts = h._counts(drop_zeros=True)
        edges = h.edges
        centers = 0.5 * (edges[1:] + edges[:-1])
        n0, n1, n2 = _prefix_moments(counts, centers)
        zero_edge = int(np.clip(np.searchsorted(edges, 0.0), 0, counts.size))
        a = _candidates(0, max(zero_edge - 1, 0))[:, None]
        if h.data_max <= 0:  # all values <= 0: only lo is searched
            b = np.array([[counts.size]])
        else:
            b = _candidates(min(max(zero_edge, 1), counts.size), counts.size)[None, :]
        lo, hi = edges[a], edges[b]
        low_tail = n2[a] - 2 * lo * n1[a] + lo**2 * n0[a]
        high_tail = (n2[-1] - n2[b]) - 2 * hi * (n1[-1] - n1[b]) + hi**2 * (n0[-1] - n0[b])
        inside = n0[b] - n0[a]
        step = (hi - lo) / grid.steps
        err = step**2 / 12.0 * inside + np.maximum(low_tail, 0.0) + np.maximum(high_tail, 0.0)
        ia, ib = np.unravel_index(int(np.argmin(err)), err.shape)
        return max(float(lo[ia, 0]), h.data_min), min(float(hi[0, ib]), h.data_max)
    # One-sided on the asymmetric grid: [0, hi].
    if h.data_max <= 0:
        return 0.0, 0.0
    counts = h.resampled(0.0, h.data_max, drop_zeros=True)
    edges = np.linspace(0.0, h.data_max, counts.size + 1)
    centers = 0.5 * (edges[1:] + edges[:-1])
    n0, n1, n2 = _prefix_moments(counts, centers)
    k = _candidates(1, counts.size, limit=counts.size)
    hi = edges[k]
    tail = (n2[-1] - n2[k]) - 2 * hi * (n1[-1] - n1[k]) + hi**2 * (n0[-1] - n0[k])
    err = (hi / grid.steps) ** 2 / 12.0 * n0[k] + np.maximum(tail, 0.0)
    return 0.0, float(hi[int(np.argmin(err))])


#: The calibrator registry: one row per method.
CALIBRATORS: dict[CalibrationMethod, Calibrator] = {
    CalibrationMethod.MINMAX: calibrate_minmax,
    CalibrationMethod.PERCENTILE: calibrate_percentile,
    CalibrationMethod.KL: calibrate_kl,
    CalibrationMethod.MSE: calibrate_mse,
}


# --------------------------------------------------------------------------- ranges


@dataclasses.dataclass(frozen=True)
class TensorRange:
    """The range chosen for one tensor, as written into the calibrated model.

    Attributes:
      name: TFLite tensor name.
      min, max: The range written, in the grid's form: containing zero, snapped
        onto the INT8 grid (:meth:`QuantGrid.nudge`), ``[-128 s, 127 s]`` for a
        symmetric INT8 range so the zero point is 0.
      method: Calibration method used.
      symmetric: Symmetric range.
      data_min, data_max: Observed extremes.
      rule: Index of the per-layer rule that applied, or None.
    """

    name: str
    min: float
    max: float
    method: CalibrationMethod
    symmetric: bool
    data_min: float
    data_max: float
    rule: int | None = None

    @property
    def clipped_fraction(self) -> float:
        """How much of the observed range was clipped away (0 = none)."""
        width = self.data_max - self.data_min
        if width <= 0:
            return 0.0
        kept = min(self.max, self.data_max) - max(self.min, self.data_min)
        return float(max(0.0, 1.0 - kept / width))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["method"] = self.method.value
        d["clipped_fraction"] = self.clipped_fraction
        return d


def finalize_range(lo: float, hi: float, grid: QuantGrid, symmetric: bool) -> tuple[float, float]:
    """Puts a clip range in the form the quantizer expects.

    The range is widened to contain zero. A symmetric INT8 range ``[-T, T]``
    becomes ``[-T * 128/127, T]``: with the converter's rule
    ``scale = (max - min) / 255`` this gives ``scale = T / 127`` and zero point
    exactly 0. INT16 ranges are symmetric ``[-T, T]`` (the quantizer uses
    ``max(|min|, |max|) / 32767``). Asymmetric INT8 ranges are snapped onto the
    grid (:meth:`QuantGrid.nudge`).
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric or grid.force_symmetric:
        t = max(abs(lo), abs(hi))
        if grid.force_symmetric:
            return -t, t
        return -t * (grid.positive_levels + 1) / grid.positive_levels, t
    return grid.nudge(lo, hi)


def compute_ranges(
    stats: Mapping[str, TensorHistogram],
    config: CalibrationConfig,
    grid: QuantGrid = QuantGrid.INT8,  # type: ignore[attr-defined]
) -> dict[str, TensorRange]:
    """Runs the configured calibrator on every tensor's histogram.

    Args:
      stats: Histograms by tensor name (from :func:`collect_statistics`).
      config: Global method and per-layer rules.
      grid: The activation grid (``QuantGrid.INT8`` or ``QuantGrid.INT16``).

    Returns:
      Ranges by tensor name. Tensors whose histogram is empty keep the
      converter's recorded range (method ``minmax``).
    """
    out: dict[str, TensorRange] = {}
    for name, h in stats.items():
        s = config.settings_for(name, h.aliases)
        symmetric = s.symmetric or grid.force_symmetric
        if h.total:
            method = s.method
            lo, hi = CALIBRATORS[method](h, grid, s)
        else:  # never observed (should not happen): keep what the converter recorded
            method = CalibrationMethod.MINMAX
            lo, hi = h.recorded_min, h.recorded_max
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise CalibrationDataError(f"calibration of tensor {name!r} gave a non-finite range [{lo}, {hi}]")
        lo, hi = finalize_range(lo, hi, grid, symmetric)
        out[name] = TensorRange(
            name=name, min=lo, max=hi, method=method, symmetric=symmetric,
            data_min=h.data_min, data_max=h.data_max, rule=s.rule,
        )
    unused = [r.pattern for i, r in enumerate(config.per_layer) if not any(t.rule == i for t in out.values())]
    if unused:
        log.warning("per_layer rule(s) matched no tensor: %s (patterns match TFLite tensor names such as %s)",
                    unused, next(iter(out), "?"))
    return out


# --------------------------------------------------------------------------- statistics pass


def op_aliases(summary: Any) -> dict[int, tuple[str, ...]]:
    """Names of the constant inputs of the op producing each tensor of subgraph 0.

    Args:
      summary: A :class:`edge.tflite_model.ModelSummary`.

    Returns:
      ``{tensor index: (weight names...)}`` for op outputs.
    """
    out: dict[int, tuple[str, ...]] = {}
    for op in summary.ops:
        if op.subgraph != 0:
            continue
        consts = tuple(
            summary.tensor(i).name for i in op.inputs if i >= 0 and summary.tensor(i).is_constant
        )
        for o in op.outputs:
            if o >= 0:
                out[o] = consts
    return out


def calibration_tensors(calibrated_model: bytes) -> dict[str, tuple[int, float, float, tuple[str, ...]]]:
    """The activation tensors of a calibrated model that carry recorded min/max.

    Returns:
      ``{name: (index, recorded_min, recorded_max, aliases)}`` for non-constant
      float tensors of subgraph 0 (aliases: see :func:`op_aliases`).
    """
    from edge.tflite_model import summarize

    summary = summarize(calibrated_model)
    aliases = op_aliases(summary)
    out = {}
    for t in summary.tensors:
        if t.subgraph != 0 or t.is_constant or not t.is_float:
            continue
        q = t.quantization
        if len(q.min) == 1 and len(q.max) == 1:
            out[t.name] = (t.index, q.min[0], q.max[0], aliases.get(t.index, ()))
    return out


def _progress(iterable: Any, total: int, desc: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return iterable
    disable = not sys.stderr.isatty() or total < 4
    return tqdm(iterable, total=total, desc=desc, disable=disable, leave=False)


def collect_statistics(
    calibrated_model: bytes,
    samples: np.ndarray,
    *,
    num_bins: int = DEFAULT_NUM_BINS,
    batch_size: int = 32,
    num_threads: int | None = None,
) -> dict[str, TensorHistogram]:
    """Histograms every calibrated activation tensor over the samples.

    Runs the calibrated float model through the LiteRT interpreter with all
    intermediate tensors preserved (XNNPACK off, so no tensor is hidden inside
    a delegate) and streams each tensor into a :class:`TensorHistogram` whose
    range starts at the converter's recorded min/max.

    Args:
      calibrated_model: A model converted with ``_experimental_calibrate_only``.
      samples: Validated representative samples.
      num_bins: Bins per histogram.
      batch_size: Samples per interpreter call.
      num_threads: Interpreter threads.

    Returns:
      Histograms by TFLite tensor name, in tensor order.
    """
    from edge.litert import make_interpreter

    tensors = calibration_tensors(calibrated_model)
    if not tensors:
        raise CalibrationDataError("the calibrated model records no activation ranges; was it converted with a representative dataset?")
    interp = make_interpreter(calibrated_model, num_threads=num_threads, use_xnnpack=False, preserve_all_tensors=True)
    inputs = interp.get_input_details()
    if len(inputs) != 1:
        raise CalibrationDataError(f"calibration handles one-input models; this one has {len(inputs)}")
    in_index = inputs[0]["index"]
    stats = {
        name: TensorHistogram(name, num_bins, index=idx, recorded=(mn, mx), aliases=al)
        for name, (idx, mn, mx, al) in tensors.items()
    }
    n = samples.shape[0]
    batches = range(0, n, batch_size)
    current = None
    for start in _progress(batches, len(batches), "calibration"):
        batch = np.ascontiguousarray(samples[start : start + batch_size], dtype=np.float32)
        if current != batch.shape:
            interp.resize_tensor_input(in_index, list(batch.shape), strict=False)
            interp.allocate_tensors()
            current = batch.shape
        interp.set_tensor(in_index, batch)
        interp.invoke()
        for h in stats.values():
            h.update(interp.get_tensor(h.index))
    log.info("calibration statistics: %d tensors over %d samples", len(stats), n)
    return stats
