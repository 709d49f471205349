"""QAT run outputs: accuracy-per-epoch CSV, curves plot and the results table.

The table is rendered with the PTQ table's columns
(:func:`tfq.evaluate.results_columns`, shared with ``pipelines.ptq``), so QAT
rows read side by side with PTQ rows: variant, mode, calibration, weights,
I/O, top-1, delta top-1 to FP32, top-5, agreement and SQNR against FP32, size
and ratio, 1-thread/all-thread latency, float ops left.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = [
    "CSV_COLUMNS",
    "epoch_rows",
    "markdown",
    "plot_curves",
    "write_epoch_csv",
]

CSV_COLUMNS = (
    "epoch", "qat_val_top1", "qat_train_top1", "qat_val_loss", "qat_train_loss", "lr",
    "bn_frozen", "ranges_frozen", "fp32_val_top1", "ptq_val_top1",
)


def epoch_rows(
    records: Sequence[Mapping[str, Any]],
    *,
    fp32_val_top1: float | None,
    ptq_val_top1: float | None,
    initial_val_top1: float | None = None,
) -> list[dict[str, Any]]:
    """One row per epoch (epoch 0 = after range initialization, before fine-tuning)."""
    rows = []
    if initial_val_top1 is not None:
        rows.append({"epoch": 0, "qat_val_top1": initial_val_top1, "fp32_val_top1": fp32_val_top1,
                     "ptq_val_top1": ptq_val_top1})
    for r in records:
        rows.append({
            "epoch": int(r["epoch"]),
            "qat_val_top1": r.get("val_top1"),
            "qat_train_top1": r.get("top1"),
            "qat_val_loss": r.get("val_loss"),
            "qat_train_loss": r.get("loss"),
            "lr": r.get("lr"),
            "bn_frozen": r.get("bn_frozen"),
            "ranges_frozen": r.get("ranges_frozen"),
            "fp32_val_top1": fp32_val_top1,
            "ptq_val_top1": ptq_val_top1,
        })
    return rows


def write_epoch_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The CSV text of :func:`epoch_rows` (empty cells for missing values)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS})
    return buf.getvalue()


def plot_curves(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str,
    fp32_label: str = "FP32 (Keras)",
    ptq_label: str = "PTQ INT8",
) -> None:
    """Plots validation top-1 per epoch: QAT curve, FP32 and PTQ references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.ticker
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows if r.get("qat_val_top1") is not None]
    qat = [100 * r["qat_val_top1"] for r in rows if r.get("qat_val_top1") is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if epochs:
        ax.plot(epochs, qat, marker="o", label="QAT (fake-quant Keras)")
    span = [min(epochs, default=0), max(epochs, default=1)]
    for key, label, style in (("fp32_val_top1", fp32_label, "--"), ("ptq_val_top1", ptq_label, ":")):
        values = [r.get(key) for r in rows if r.get(key) is not None]
        if values and math.isfinite(values[-1]):
            ax.plot(span, [100 * values[-1]] * 2, style, label=label)
    frozen = [r["epoch"] for r in rows if r.get("bn_frozen")]
    if frozen:
        ax.axvline(min(frozen) - 0.5, color="grey", lw=0.8)
        ax.text(min(frozen) - 0.45, ax.get_ylim()[0], " BN frozen", color="grey", fontsize=8, va="bottom")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = ranges initialized, before fine-tuning)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The results table as Markdown, with the PTQ table's columns (:func:`tfq.evaluate.results_columns`)."""
    from tfq.evaluate import results_markdown

    return results_markdown(list(rows))
