"""Report plots (matplotlib, Agg backend): readable at a glance, written atomically as PNG.

Every function takes plain data (no run directories), labels its axes with
units, draws a legend and writes a PNG at :data:`DPI`:

* :func:`plot_tradeoff` -- accuracy against size or latency, one marker per
  model family, error bars for repeats, the Pareto front (most accurate for
  its cost) drawn as a step line with its points ringed.
* :func:`plot_curves` -- per-epoch curves (QAT accuracy) with reference lines.
* :func:`plot_layer_scores` -- per-layer sensitivity, most sensitive on top.
* :func:`plot_grouped_bars` -- calibration methods compared per mode.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "DPI",
    "FAMILY_STYLE",
    "Point",
    "pareto_indices",
    "plot_curves",
    "plot_grouped_bars",
    "plot_layer_scores",
    "plot_tradeoff",
]

DPI = 120

#: Marker and colour per model family (colour-blind-safe tab palette).
FAMILY_STYLE: dict[str, dict[str, str]] = {
    "FP32": {"marker": "s", "color": "tab:gray"},
    "PTQ": {"marker": "o", "color": "tab:blue"},
    "QAT": {"marker": "^", "color": "tab:orange"},
    "mixed": {"marker": "D", "color": "tab:green"},
}


@dataclasses.dataclass(frozen=True)
class Point:
    """One model in a trade-off plot.

    Attributes:
      label: Text written beside the marker.
      family: Key of :data:`FAMILY_STYLE`.
      x: Cost (size in MB, latency in ms).
      y: Accuracy in percent.
      xerr, yerr: Standard deviations over repeats (0: none).
    """

    label: str
    family: str
    x: float
    y: float
    xerr: float = 0.0
    yerr: float = 0.0


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    from tfq.rundir import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def pareto_indices(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of points no other point beats on both cost (lower x) and accuracy (higher y).

    Returns:
      Front indices sorted by increasing x. Points with NaN are never on it.
    """
    pts = [(x, y) for x, y in zip(xs, ys)]
    front = []
    for i, (x, y) in enumerate(pts):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        dominated = any(
            (x2 <= x and y2 >= y) and (x2 < x or y2 > y)
            for j, (x2, y2) in enumerate(pts)
            if j != i and math.isfinite(x2) and math.isfinite(y2)
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (pts[i][0], -pts[i][1]))


def plot_tradeoff(
    points: Sequence[Point],
    path: str | os.PathLike,
    *,
    xlabel: str,
    ylabel: str = "top-1 accuracy (%)",
    title: str = "",
    reference: tuple[str, float] | None = None,
    logx: bool = False,
) -> Path:
    """Accuracy against a cost, with the Pareto front marked.

    Args:
      points: The models.
      path: Output PNG.
      xlabel: Cost axis label, with its unit.
      ylabel: Accuracy axis label, with its unit.
      title: Figure title.
      reference: ``(label, y)`` drawn as a dotted horizontal line (FP32 Keras).
      logx: Log-scale cost axis (sizes spanning orders of magnitude).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    pts = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)]
    for family, style in FAMILY_STYLE.items():
        fam = [p for p in pts if p.family == family]
        if not fam:
            continue
        ax.errorbar(
            [p.x for p in fam], [p.y for p in fam],
            xerr=[p.xerr for p in fam] if any(p.xerr for p in fam) else None,
            yerr=[p.yerr for p in fam] if any(p.yerr for p in fam) else None,
            fmt=style["marker"], color=style["color"], ms=8, capsize=3, linestyle="none", label=family,
        )
    for p in pts:
        ax.annotate(p.label, (p.x, p.y), textcoords="offset points", xytext=(6, 5), fontsize=8)
    front = pareto_indices([p.x for p in pts], [p.y for p in pts])
    if front:
        fx = [pts[i].x for i in front]
        fy = [pts[i].y for i in front]
        ax.step(fx, fy, where="post", color="tab:red", lw=1.3, alpha=0.8, label="Pareto front")
        ax.scatter(fx, fy, s=170, facecolors="none", edgecolors="tab:red", linewidths=1.4, zorder=3)
    if reference is not None and math.isfinite(reference[1]):
        ax.axhline(reference[1], color="black", lw=0.9, ls=":", label=reference[0])
    if logx and pts and min(p.x for p in pts) > 0:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    if not pts:
        ax.text(0.5, 0.5, "no measurements", transform=ax.transAxes, ha="center", va="center")
    return _save(fig, path)


def plot_curves(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float | None]]],
    path: str | os.PathLike,
    *,
    xlabel: str = "epoch",
    ylabel: str = "validation top-1 (%)",
    title: str = "",
    references: Mapping[str, float] | None = None,
) -> Path:
    """Lines per run (e.g. QAT accuracy per epoch) with horizontal reference lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, (xs, ys) in curves.items():
        pairs = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if pairs:
            ax.plot([x for x, _ in pairs], [y for _, y in pairs], "-o", ms=4, label=label)
    styles = iter(["--", ":", "-."])
    for label, y in (references or {}).items():
        if y is not None and math.isfinite(y):
            ax.axhline(y, color="black", lw=0.9, ls=next(styles, ":"), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.margins(y=0.15)
    ax.legend(loc="best", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def plot_layer_scores(
    layers: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    path: str | os.PathLike,
    *,
    xlabel: str,
    title: str = "",
    max_layers: int = 40,
) -> Path:
    """Horizontal grouped bars per layer; the first layer in ``layers`` is drawn on top.

    Args:
      layers: Layer names, most sensitive first.
      series: ``{variant: value per layer}`` (None: not measured).
      path: Output PNG.
      xlabel: Value axis label with unit.
      title: Figure title.
      max_layers: Show at most this many layers (the most sensitive).
    """
    plt = _pyplot()
    names = list(layers)[:max_layers]
    n = len(names)
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.32 * n * max(1, len(series)) ** 0.5 + 1.5)))
    height = 0.8 / max(1, len(series))
    for k, (label, values) in enumerate(series.items()):
        vals = [float("nan") if v is None or not math.isfinite(v) else float(v) for v in list(values)[:n]]
        offsets = [i + (k - (len(series) - 1) / 2) * height for i in range(n)]
        ax.barh(offsets, vals, height=height, label=label)
    ax.set_yticks(range(n))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("layer (most sensitive on top)")
    if title:
        ax.set_title(title)
    ax.grid(True, axis="x", alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_grouped_bars(
    groups: Mapping[str, Mapping[str, float | None]],
    path: str | os.PathLike,
    *,
    ylabel: str,
    title: str = "",
    second: Mapping[str, Mapping[str, float | None]] | None = None,
    second_ylabel: str = "",
) -> Path:
    """Bars per group (e.g. mode) and member (e.g. calibration method); optional second panel.

    Args:
      groups: ``{group: {member: value}}``.
      path: Output PNG.
      ylabel: Axis label of the first panel, with unit.
      title: Figure title.
      second: Same layout for a second panel (e.g. SQNR).
      second_ylabel: Its axis label.
    """
    plt = _pyplot()
    panels = [(groups, ylabel)] + ([(second, second_ylabel)] if second else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    members = sorted({m for g in groups.values() for m in g} | {m for g in (second or {}).values() for m in g})
    for ax, (data, label) in zip(axes[0], panels):
        width = 0.8 / max(1, len(members))
        for k, m in enumerate(members):
            xs = [i + (k - (len(members) - 1) / 2) * width for i in range(len(data))]
            vals = [data[g].get(m) for g in data]
            vals = [float("nan") if v is None or not math.isfinite(v) else float(v) for v in vals]
            bars = ax.bar(xs, vals, width=width, label=m)
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        ax.set_xticks(range(len(data)))
        ax.set_xticklabels(list(data), fontsize=9)
        ax.set_xlabel("mode")
        ax.set_ylabel(label)
        finite = [v for g in data.values() for v in g.values() if v is not None and math.isfinite(v)]
        if finite and label.endswith("(%)"):
            # Accuracies differ by fractions of a point: zoom in, and say so on the axis.
            lo, hi = min(finite), max(finite)
            pad = max(0.5, (hi - lo) * 0.6)
            ax.set_ylim(max(0.0, lo - pad), hi + pad)
            ax.set_ylabel(label[:-1] + ", axis zoomed)")
        elif finite:
            ax.set_ylim(min(0.0, min(finite) * 1.1), max(finite) * 1.12)
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, title="calibration method", loc="lower center", ncol=max(1, len(members)),
               bbox_to_anchor=(0.5, -0.08), fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
