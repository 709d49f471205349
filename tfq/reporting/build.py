"""Assembling the report: the comparison table, the plots, the environment and the commands.

:func:`build_report` reads run directories (:func:`tfq.reporting.collect.collect`),
draws the plots (:mod:`tfq.plots`) and writes, into one output directory::

    report.md               the report (GitHub Markdown, images by relative path)
    report.html             the same, self-contained (images embedded)
    report.json             the rows as data (for scripts)
    acc_vs_size.png         top-1 vs .tflite size, Pareto front marked
    acc_vs_latency.png      top-1 vs median latency (first target/threads), Pareto front marked
    acc_vs_latency_<target>-t<threads>.png   one more per further target/thread count
    qat_curve.png           QAT validation top-1 per epoch (when QAT ran)
    sensitivity.png         per-layer sensitivity (when a sensitivity run is included)
    calibration_methods.png PTQ calibration methods compared (when several were run)
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tfq import plots
from tfq.reporting import document as doc
from tfq.reporting.collect import Collection, LatencyKey, Row, Stat, collect
from tfq.reporting.environment import DISTRIBUTIONS, capture_environment
from tfq.rundir import RunDirError, atomic_write_text, write_json

log = logging.getLogger(__name__)

__all__ = ["REPORT_FILES", "build_report", "report_blocks"]

REPORT_FILES = ("report.md", "report.html", "report.json")
MODE_ORDER = {"fp32": 0, "fp16": 1, "dynamic": 2, "int16x8": 3, "int8": 4}
FAMILY_ORDER = {"FP32": 0, "PTQ": 1, "QAT": 2, "mixed": 3}
MISSING = "—"


# --------------------------------------------------------------------------- formatting


def _fmt(s: Stat | None, scale: float = 1.0, digits: int = 2) -> str:
    if s is None or not math.isfinite(s.mean):
        return MISSING
    text = f"{s.mean * scale:.{digits}f}"
    return f"{text} ± {s.std * scale:.{digits}f}" if s.n > 1 else text


def _fmt_ms(s: Stat | None) -> str:
    """Three significant digits of the mean (at most 4 decimals); the std with the same decimals."""
    if s is None or not math.isfinite(s.mean):
        return MISSING
    digits = 0 if s.mean <= 0 else min(4, max(0, 2 - math.floor(math.log10(s.mean))))
    return _fmt(s, digits=digits)


def _fmt_size(b: float | None) -> str:
    if b is None:
        return MISSING
    for unit, div in (("MB", 1e6), ("kB", 1e3)):
        if b >= div:
            return f"{b / div:.2f} {unit}"
    return f"{int(b)} B"


def _lat_name(k: LatencyKey) -> str:
    target, threads, origin = k
    t = f"{threads} thr" if threads else "default thr"
    return f"{target} {t}" + (" (stage)" if origin == "stage" else "")


def _sort_key(r: Row) -> tuple:
    return (
        FAMILY_ORDER.get(r.family, 9),
        0 if r.file is None else 1,
        MODE_ORDER.get(r.mode or "", 8),
        r.calibration or "",
        r.label,
    )


# --------------------------------------------------------------------------- tables


def results_table(c: Collection) -> doc.Table:
    """The comparison table: one row per variant, latency columns per target and threads."""
    lat_keys = c.latency_keys()
    rss = c.rss_targets()
    headers = ["variant", "family", "top-1 (%)", "top-5 (%)", "agreement (%)", "SQNR (dB)", "size", "ratio"]
    for k in lat_keys:
        headers += [f"{_lat_name(k)} p50 (ms)", f"{_lat_name(k)} p90 (ms)"]
    headers += [f"peak RSS {t} (MB)" for t in rss] + ["notes"]
    rows = []
    for r in sorted(c.rows, key=_sort_key):
        label = r.label + (f" [{r.calibration}]" if r.calibration and r.calibration not in r.label else "")
        cells = [
            label, r.family, _fmt(r.top1, 100), _fmt(r.top5, 100), _fmt(r.agreement, 100), _fmt(r.sqnr_db, digits=1),
            _fmt_size(r.size_bytes), f"{r.size_ratio:.3f}x" if r.size_ratio else MISSING,
        ]
        for k in lat_keys:
            cell = r.latency.get(k, {})
            cells += [_fmt_ms(cell.get("p50")), _fmt_ms(cell.get("p90"))]
        cells += [_fmt(r.peak_rss_mb.get(t), digits=1) for t in rss]
        cells.append(r.note or "")
        rows.append(tuple(cells))
    align = ("left", "left") + ("right",) * (len(headers) - 3) + ("left",)
    return doc.Table(tuple(headers), tuple(rows), align)


def _features_cell(env: dict) -> str:
    if "cpu_features" not in env:
        return MISSING  # recorded before tfq captured CPU features
    features = env.get("cpu_features") or []
    dot = env.get("int8_dot_product")
    return (", ".join(features) or "unknown") + (
        f"; int8 dot product: {dot}" if dot else "; no int8 dot-product instruction (INT8 gains little over FP32)")


def environment_table(c: Collection) -> tuple[doc.Table, str]:
    """Versions, CPU and threads; and where they were recorded."""
    if c.environment:
        env, where = c.environment, f"recorded by the experiment in {c.environment_source}"
    else:
        env, where = capture_environment(), "the machine that wrote this report (no experiment environment found)"
    versions = env.get("versions", {})
    order = [k for k in DISTRIBUTIONS if k in versions] + sorted(k for k in versions if k not in DISTRIBUTIONS)
    rows = [(k, versions[k] or "not installed") for k in order]
    threads = sorted({k[1] for r in c.rows for k in r.latency if k[1]})
    rows += [
        ("Python", env.get("python", MISSING)),
        ("system", f"{env.get('system', MISSING)} ({env.get('machine', MISSING)})"),
        ("CPU model", env.get("cpu_model", MISSING)),
        ("CPU SIMD features", _features_cell(env)),
        ("cores (logical / usable)", f"{env.get('logical_cores', MISSING)} / {env.get('usable_cores', MISSING)}"),
        ("interpreter threads measured", ", ".join(map(str, threads)) or MISSING),
    ]
    setup = c.bench_setup
    if setup:
        rows.append(("edge.bench setup", f"runs {setup.get('runs')}, warm-up {setup.get('warmup')}, "
                                         f"repeats {setup.get('repeats')}, XNNPACK on (cpu)"))
        interp = setup.get("interpreter")
        if isinstance(interp, dict):
            interp = " ".join(str(interp[k]) for k in ("name", "version") if interp.get(k))
        if interp:
            rows.append(("interpreter", str(interp)))
    return doc.Table(("item", "value"), tuple((str(a), str(b)) for a, b in rows), ("left", "left")), where


# --------------------------------------------------------------------------- plots


def _tradeoff_points(rows: Iterable[Row], x_of) -> list[plots.Point]:
    pts = []
    for r in rows:
        if r.top1 is None or r.file is None:
            continue
        x = x_of(r)
        if x is None:
            continue
        xv, xerr = x
        label = r.label if not r.calibration or r.calibration in r.label else f"{r.label} [{r.calibration}]"
        pts.append(plots.Point(label, r.family, xv, 100 * r.top1.mean, xerr, 100 * r.top1.std))
    return pts


def _fp32_reference(c: Collection) -> tuple[str, float] | None:
    keras = next((r for r in c.rows if r.family == "FP32" and r.file is None and r.top1), None)
    return ("FP32 Keras (test)", 100 * keras.top1.mean) if keras else None


def draw_plots(c: Collection, out: Path, title: str) -> list[doc.Block]:
    """Draws every plot the collection supports; returns the blocks showing them."""
    blocks: list[doc.Block] = []
    ref = _fp32_reference(c)

    pts = _tradeoff_points(c.rows, lambda r: (r.size_bytes / 1e6, 0.0) if r.size_bytes else None)
    if pts:
        xs = [p.x for p in pts]
        plots.plot_tradeoff(pts, out / "acc_vs_size.png", xlabel=".tflite size (MB, log scale)"
                            if max(xs) > 8 * min(xs) else ".tflite size (MB)",
                            title=f"{title}: accuracy vs model size", reference=ref, logx=max(xs) > 8 * min(xs))
        blocks.append(doc.Image("acc_vs_size.png", "top-1 vs size",
                                "Test top-1 against .tflite size; red: Pareto front (no other model is both "
                                "smaller and more accurate)."))
    for i, key in enumerate(k for k in c.latency_keys()):
        def lat(r: Row, key=key):
            s = r.latency.get(key, {}).get("p50")
            return (s.mean, s.std) if s else None

        pts = _tradeoff_points(c.rows, lat)
        if not pts:
            continue
        name = "acc_vs_latency.png" if i == 0 else f"acc_vs_latency_{key[0]}-t{key[1] or 'default'}" + (
            "-stage" if key[2] == "stage" else "") + ".png"
        plots.plot_tradeoff(pts, out / name, xlabel=f"median latency, batch 1, {_lat_name(key)} (ms)",
                            title=f"{title}: accuracy vs latency ({_lat_name(key)})", reference=ref)
        blocks.append(doc.Image(name, f"top-1 vs latency {_lat_name(key)}",
                                f"Test top-1 against median batch-1 latency on {_lat_name(key)}; error bars: "
                                "std over repeats; red: Pareto front."))

    curves = {cv.label: (cv.epochs, [None if v is None else 100 * v for v in cv.values.get("val_top1", [])])
              for cv in c.qat_curves if cv.values.get("val_top1")}
    if curves:
        refs = {k: 100 * v for k, v in c.qat_references.items()}
        if not refs and c.fp32_val_top1 is not None:
            refs["FP32 (val)"] = 100 * c.fp32_val_top1
        plots.plot_curves(curves, out / "qat_curve.png", ylabel="validation top-1 (%)",
                          title=f"{title}: QAT accuracy per epoch", references=refs)
        blocks.append(doc.Image("qat_curve.png", "QAT accuracy per epoch",
                                "Validation top-1 of the fake-quantized model after each QAT epoch (epoch 0: "
                                "right after the range initialization), with the FP32 and PTQ references on the "
                                "same split."))

    sens = c.sensitivity
    if sens:
        layers = sorted(sens["layers"], key=lambda l: (l.get("rank") or 1e9))
        variants = [v for v in (sens.get("config", {}).get("variants") or []) if v != "all_but_int8"] or [
            "only_int8"]
        series = {}
        for v in variants:
            vals = []
            for l in layers:
                s = (l.get("scores") or {}).get(v)
                x = s.get("sqnr_db") if isinstance(s, dict) else None
                vals.append(x if isinstance(x, (int, float)) and math.isfinite(x) else None)
            if any(x is not None for x in vals):
                series[v] = vals
        if series:
            plots.plot_layer_scores([l["name"] for l in layers], series, out / "sensitivity.png",
                                    xlabel="logit SQNR vs FP32 (dB; lower = more sensitive)",
                                    title=f"{title}: quantization sensitivity per layer")
            blocks.append(doc.Image("sensitivity.png", "per-layer sensitivity",
                                    f"Per-layer logit SQNR when only that layer is quantized (variants: "
                                    f"{', '.join(series)}); from {sens.get('source')}."))

    calib = [r for r in c.rows if r.family == "PTQ" and r.calibration and r.mode]
    methods = {r.calibration for r in calib}
    if len(methods) > 1:
        acc: dict[str, dict[str, float | None]] = {}
        sq: dict[str, dict[str, float | None]] = {}
        for r in sorted(calib, key=_sort_key):
            acc.setdefault(r.mode, {})[r.calibration] = 100 * r.top1.mean if r.top1 else None
            sq.setdefault(r.mode, {})[r.calibration] = r.sqnr_db.mean if r.sqnr_db else None
        plots.plot_grouped_bars(acc, out / "calibration_methods.png", ylabel="test top-1 (%)",
                                title=f"{title}: calibration methods compared",
                                second=sq if any(v is not None for g in sq.values() for v in g.values()) else None,
                                second_ylabel="logit SQNR vs FP32 (dB)")
        blocks.append(doc.Image("calibration_methods.png", "calibration methods",
                                "Test top-1 and logit SQNR of each calibrated mode per calibration method."))
    return blocks


# --------------------------------------------------------------------------- the report


def report_blocks(c: Collection, out: Path, title: str) -> list[doc.Block]:
    """The whole document (draws the plots into ``out`` on the way)."""
    blocks: list[doc.Block] = [doc.Heading(title, 1)]
    models = sorted({f"{s['model']} on {s['dataset']}" for s in c.sources if s.get("model")})
    blocks.append(doc.Paragraph(
        f"Generated {_dt.datetime.now().isoformat(timespec='seconds')} from "
        + ", ".join(f"`{s['path']}` ({s['kind']})" for s in c.sources)
        + (f"; {', '.join(models)}." if models else ".")
    ))
    blocks.append(doc.Heading("Results"))
    blocks.append(doc.Paragraph(
        "Top-1/top-5: accuracy on the test split. Agreement: share of test images whose top-1 class equals the "
        "FP32 model's. SQNR: signal-to-quantization-noise ratio of the logits against FP32 (higher is closer). "
        "Ratio: size against the FP32 `.tflite`. Latency: batch-1 `invoke()` time, median (p50) and 90th "
        "percentile, per target and thread count, from `edge.bench` (columns marked (stage) are the stage's "
        "own measurement). Peak RSS: peak resident memory of the `edge.bench` worker process that ran the "
        "model (Python and the interpreter runtime included, so compare differences between rows). "
        "`a ± b`: mean and standard "
        "deviation over repeats (training seeds for accuracy, benchmark repeats for latency and memory)."
    ))
    blocks.append(results_table(c))
    front = _size_front(c)
    if front:
        blocks.append(doc.Paragraph("Pareto-optimal by size (smallest first): " + ", ".join(front) + "."))
    plot_blocks = draw_plots(c, out, title)
    if plot_blocks:
        blocks.append(doc.Heading("Plots"))
        blocks.extend(plot_blocks)
    blocks.append(doc.Heading("Environment"))
    table, where = environment_table(c)
    blocks.append(doc.Paragraph(f"Environment {where}."))
    blocks.append(table)
    blocks.append(doc.Heading("Commands"))
    if c.commands:
        blocks.append(doc.Paragraph("The exact commands that produced these runs (stage commands are what the "
                                    "experiment ran in-process; each reproduces its stage on its own)."))
        blocks.append(doc.Code("\n".join(f"# {name}\n{cmd}" for name, cmd in c.commands), "bash"))
    else:
        blocks.append(doc.Paragraph("No command was recorded in the run directories."))
    if c.notes:
        blocks.append(doc.Heading("Notes"))
        blocks.append(doc.Bullets(tuple(c.notes)))
    return blocks


def _size_front(c: Collection) -> list[str]:
    rows = [r for r in c.rows if r.top1 and r.size_bytes and r.file]
    idx = plots.pareto_indices([r.size_bytes for r in rows], [r.top1.mean for r in rows])
    return [f"{rows[i].label} ({_fmt_size(rows[i].size_bytes)}, {100 * rows[i].top1.mean:.2f}%)" for i in idx]


def _rows_json(c: Collection) -> list[dict[str, Any]]:
    def stat(s):
        return s.to_dict() if s else None

    return [
        {
            "label": r.label, "family": r.family, "source": r.source, "mode": r.mode, "calibration": r.calibration,
            "file": r.file, "top1": stat(r.top1), "top5": stat(r.top5), "agreement": stat(r.agreement),
            "sqnr_db": stat(r.sqnr_db), "size_bytes": r.size_bytes, "size_ratio": r.size_ratio,
            "latency_ms": {_lat_name(k): {q: stat(s) for q, s in v.items()} for k, v in r.latency.items()},
            "peak_rss_mb": {t: stat(s) for t, s in r.peak_rss_mb.items()}, "note": r.note,
        }
        for r in sorted(c.rows, key=_sort_key)
    ]


def _short(name: str) -> str:
    """``npz:/long/path/cifar10_shared.npz`` -> ``npz:cifar10_shared``; names stay as they are."""
    prefix, sep, rest = str(name).partition(":")
    if sep and rest:
        return f"{prefix}:{Path(rest.rstrip('/')).stem}"
    return Path(name).stem if str(name).endswith((".keras", ".h5")) else str(name)


def build_report(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    title: str | None = None,
) -> dict[str, Path]:
    """Writes ``report.md``, ``report.html``, ``report.json`` and the PNGs into ``out_dir``.

    Args:
      paths: Experiment directories and/or stage run directories.
      out_dir: Output directory (created).
      overwrite: Replace an existing report there.
      title: Report title (default: from the models and datasets).

    Returns:
      ``{"markdown", "html", "json", "plots": [...]}`` paths.

    Raises:
      RunDirError: ``out_dir`` holds a report and ``overwrite`` is False.
      FileNotFoundError / ValueError: A path is not a readable run directory.
    """
    out = Path(out_dir)
    if out.is_dir() and any((out / f).exists() for f in REPORT_FILES) and not overwrite:
        raise RunDirError(f"{out} already holds a report; pass --overwrite to replace it")
    c = collect(paths)
    if not c.rows and not c.sensitivity:
        raise ValueError("no results found in " + ", ".join(map(str, paths)) + " (unfinished runs?)")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        if overwrite:
            old.unlink()
    if title is None:
        names = sorted({f"{_short(s['model'])} / {_short(s.get('dataset') or '?')}" for s in c.sources
                        if s.get("model")})
        title = "Quantization report" + (f": {', '.join(names)}" if names else "")
    short = title.split(": ", 1)[-1]
    blocks = report_blocks(c, out, short if short != title else "tfq")
    blocks[0] = doc.Heading(title, 1)
    atomic_write_text(out / "report.md", doc.to_markdown(blocks))
    atomic_write_text(out / "report.html", doc.to_html(blocks, out, title))
    write_json(out / "report.json", {"rows": _rows_json(c), "sources": c.sources, "notes": c.notes,
                                     "commands": [{"name": n, "command": cmd} for n, cmd in c.commands]})
    pngs = sorted(out.glob("*.png"))
    log.info("wrote %s, report.html and %d plot(s)", out / "report.md", len(pngs))
    return {"markdown": out / "report.md", "html": out / "report.html", "json": out / "report.json",
            "plots": pngs}
