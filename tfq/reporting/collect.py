"""Reading run directories into one comparable set of rows.

:func:`collect` accepts experiment directories and individual stage run
directories and dispatches on ``run.json``'s ``kind``. Each stage has one small
reader (:data:`READERS`) that turns that stage's JSON files into
:class:`Row` objects (one per model variant) or into the extra material the
plots need (training curves, per-layer sensitivity). The readers accept the
key spellings the stages use (``top1``/``test_top1``, ``sqnr_db``/``sqnr``,
latency per thread count or a single median); a run whose files cannot be
read is listed in :attr:`Collection.notes` rather than failing the report.

Latency: ``edge.bench`` measurements (the ``bench`` stage) are preferred; a
row without them shows the latency its own stage measured, marked
``(stage)``. With repeats, every number is shown as mean ± standard deviation
over the repeats (training seeds for accuracy, benchmark repeats for latency
and peak memory).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tfq.rundir import MANIFEST, read_json

log = logging.getLogger(__name__)

__all__ = [
    "Collection",
    "LatencyKey",
    "READERS",
    "Row",
    "Stat",
    "collect",
    "summarize_bench",
]

FAMILIES = ("FP32", "PTQ", "QAT", "mixed")


# --------------------------------------------------------------------------- values


@dataclasses.dataclass(frozen=True)
class Stat:
    """A mean with its population standard deviation over ``n`` repeats."""

    mean: float
    std: float = 0.0
    n: int = 1

    @classmethod
    def of(cls, values: Iterable[Any]) -> "Stat | None":
        """The statistic of the finite values; None when there are none."""
        xs = [float(v) for v in values if _finite(v)]
        if not xs:
            return None
        mean = sum(xs) / len(xs)
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs)) if len(xs) > 1 else 0.0
        return cls(mean, std, len(xs))

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


#: ``(target, threads, origin)``: origin ``bench`` (edge.bench) or ``stage``.
LatencyKey = tuple[str, int | None, str]


@dataclasses.dataclass
class Row:
    """One model variant in the comparison table.

    Attributes:
      label: Short name (``int8 minmax``, ``QAT int8``, ``mixed``).
      family: ``FP32``, ``PTQ``, ``QAT`` or ``mixed``.
      source: Run directory it came from.
      mode: PTQ mode (``int8``...), when known.
      calibration: Calibration method, when it applies.
      file: The ``.tflite`` (absolute path), when there is one.
      top1, top5, agreement: Fractions in [0, 1].
      sqnr_db: Logit SQNR against FP32.
      size_bytes, size_ratio: File size and its ratio to the FP32 ``.tflite``.
      latency: ``{LatencyKey: {"p50": Stat, "p90": Stat}}`` in milliseconds.
      peak_rss_mb: ``{target: Stat}`` from edge.bench.
      note: Anything the reader wants the table to say.
    """

    label: str
    family: str
    source: str
    mode: str | None = None
    calibration: str | None = None
    file: str | None = None
    top1: Stat | None = None
    top5: Stat | None = None
    agreement: Stat | None = None
    sqnr_db: Stat | None = None
    size_bytes: float | None = None
    size_ratio: float | None = None
    latency: dict[LatencyKey, dict[str, Stat]] = dataclasses.field(default_factory=dict)
    peak_rss_mb: dict[str, Stat] = dataclasses.field(default_factory=dict)
    note: str = ""


@dataclasses.dataclass
class Curve:
    """Per-epoch values of one training run (``values`` keyed by metric name)."""

    label: str
    epochs: list[int]
    values: dict[str, list[float | None]]


@dataclasses.dataclass
class Collection:
    """Everything the report shows, read from the run directories."""

    rows: list[Row] = dataclasses.field(default_factory=list)
    qat_curves: list[Curve] = dataclasses.field(default_factory=list)
    train_curves: list[Curve] = dataclasses.field(default_factory=list)
    sensitivity: dict[str, Any] | None = None
    fp32_val_top1: float | None = None
    qat_references: dict[str, float] = dataclasses.field(default_factory=dict)
    bench: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    bench_setup: dict[str, Any] = dataclasses.field(default_factory=dict)
    environment: dict[str, Any] | None = None
    environment_source: str | None = None
    commands: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    sources: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def latency_keys(self) -> list[LatencyKey]:
        """Every latency column, bench ones first, in a stable order."""
        keys = {k for r in self.rows for k in r.latency}
        return sorted(keys, key=lambda k: (k[2] != "bench", k[0], k[1] or 0))

    def rss_targets(self) -> list[str]:
        return sorted({t for r in self.rows for t in r.peak_rss_mb})


# --------------------------------------------------------------------------- helpers


def _read(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, ValueError) as e:
        log.warning("cannot read %s: %s", path, e)
        return None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    out = []
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if isinstance(d, Mapping) and d.get(k) is not None:
            return d[k]
    return None


def _metrics_dict(d: Mapping[str, Any]) -> Mapping[str, Any]:
    """The mapping holding top-1 etc.: ``d`` itself or a nested ``metrics``/``test``/``tflite``."""
    if _first(d, "top1", "test_top1") is not None:
        return d
    for key in ("metrics", "test", "tflite", "result", "evaluation"):
        inner = d.get(key) if isinstance(d, Mapping) else None
        if isinstance(inner, Mapping) and _first(inner, "top1", "test_top1") is not None:
            return inner
    return d


def _stage_latency(m: Mapping[str, Any]) -> dict[LatencyKey, dict[str, Stat]]:
    """``latency_ms`` as a stage wrote it: ``{"1": stats, "2": stats}``, one stats dict, or a number."""
    out: dict[LatencyKey, dict[str, Stat]] = {}
    lat = m.get("latency_stats") if isinstance(m.get("latency_stats"), Mapping) else m.get("latency_ms")
    setup = m.get("latency_setup") or {}
    if isinstance(lat, Mapping) and lat and all(isinstance(v, Mapping) for v in lat.values()):
        for threads, stats in lat.items():
            try:
                t = int(threads)
            except (TypeError, ValueError):
                t = None
            cell = {q: Stat(float(stats[q])) for q in ("p50", "p90") if _finite(stats.get(q))}
            if cell:
                out[("cpu", t, "stage")] = cell
    elif isinstance(lat, Mapping) and _finite(lat.get("p50")):
        threads = (setup.get("threads") or [None])[0]
        out[("cpu", threads, "stage")] = {q: Stat(float(lat[q])) for q in ("p50", "p90") if _finite(lat.get(q))}
    elif _finite(lat):
        out[("cpu", m.get("num_threads"), "stage")] = {"p50": Stat(float(lat))}
    return out


def _fill_metrics(row: Row, d: Mapping[str, Any]) -> Row:
    m = _metrics_dict(d)
    for attr, keys in (
        ("top1", ("top1", "test_top1")),
        ("top5", ("top5", "test_top5")),
        ("agreement", ("agreement",)),
        ("sqnr_db", ("sqnr_db", "sqnr")),
    ):
        v = _first(m, *keys)
        if _finite(v):
            setattr(row, attr, Stat(float(v)))
    size = _first(m, "size_bytes", "model_size_bytes")
    if _finite(size):
        row.size_bytes = float(size)
    ratio = _first(m, "size_ratio", "ratio")
    if _finite(ratio):
        row.size_ratio = float(ratio)
    row.latency.update(_stage_latency(m))
    return row


def _resolve_file(run: Path, *names: Any) -> str | None:
    for name in names:
        if not isinstance(name, str) or not name:
            continue
        p = Path(name)
        for cand in ((p,) if p.is_absolute() else (run / p, run / f"{p}.tflite", run / "models" / f"{p}.tflite")):
            if cand.is_file() and cand.suffix == ".tflite":
                return str(cand.resolve())
    return None


def _display(path: Path) -> str:
    """A path relative to the working directory when it is inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- one reader per stage


def read_train(runs: Sequence[Path], out: Collection) -> None:
    """FP32 Keras accuracy (mean ± std over seeds) and training curves."""
    results = [r for r in (_read(p / "results.json") for p in runs) if isinstance(r, Mapping)]
    if not results:
        out.notes.append(f"{_display(runs[0])}: training run without results.json (unfinished?)")
        return
    row = Row(
        label="FP32 (Keras)", family="FP32", source=_display(runs[0]),
        top1=Stat.of(r.get("test_top1") for r in results),
        top5=Stat.of(r.get("test_top5") for r in results),
        note=(f"{len(results)} seeds; " if len(results) > 1 else "") + "Keras model, not a .tflite",
    )
    out.rows.append(row)
    vals = [r.get("val_top1") for r in results if _finite(r.get("val_top1"))]
    if vals:
        out.fp32_val_top1 = float(vals[0])
    for p in runs:
        recs = _jsonl(p / "metrics.jsonl")
        if recs:
            out.train_curves.append(_curve(p.name, recs))


def _curve(label: str, records: Sequence[Mapping[str, Any]]) -> Curve:
    """Per-epoch values; metric names normalized to ``val_top1``, ``top1``, ``loss``, ``val_loss``."""
    aliases = {
        "val_top1": ("val_top1", "val_accuracy", "val_acc", "val_categorical_accuracy"),
        "top1": ("top1", "accuracy", "acc", "categorical_accuracy"),
        "loss": ("loss",),
        "val_loss": ("val_loss",),
    }
    epochs = [int(r.get("epoch", i + 1)) for i, r in enumerate(records)]
    values = {k: [_first(r, *names) for r in records] for k, names in aliases.items()}
    return Curve(label, epochs, {k: v for k, v in values.items() if any(x is not None for x in v)})


def _variant_rows(data: Any) -> list[Mapping[str, Any]]:
    """The per-model entries of a PTQ-like results.json (list, or under rows/results/models/variants)."""
    if isinstance(data, list):
        return [d for d in data if isinstance(d, Mapping)]
    if not isinstance(data, Mapping):
        return []
    for key in ("rows", "results", "models", "variants", "artifacts"):
        inner = data.get(key)
        if isinstance(inner, list):
            return [d for d in inner if isinstance(d, Mapping)]
        if isinstance(inner, Mapping) and all(isinstance(v, Mapping) for v in inner.values()):
            return [{"name": k, **v} for k, v in inner.items()]
    return []


def _subset_note(entry: Mapping[str, Any], data: Any) -> str:
    """"first N of M test images" for a row evaluated on fewer test images than the others."""
    n = entry.get("test_images")
    total = data.get("test_samples") if isinstance(data, Mapping) else None
    if isinstance(n, int) and isinstance(total, int) and n < total:
        return f"first {n} of {total} test images"
    return ""


def read_ptq(runs: Sequence[Path], out: Collection) -> None:
    """One row per PTQ artifact (mode x calibration method)."""
    for run in runs:
        data = _read(run / "results.json")
        entries = _variant_rows(data)
        if not entries:
            out.notes.append(f"{_display(run)}: PTQ results.json has no per-model rows in a known layout")
            for f in sorted(run.glob("*.tflite")):
                out.rows.append(Row(label=f.stem, family="PTQ", source=_display(run), file=str(f.resolve()),
                                    size_bytes=float(f.stat().st_size), note="metrics not found"))
            continue
        for e in entries:
            cfg = e.get("config") if isinstance(e.get("config"), Mapping) else {}
            name = str(_first(e, "name", "artifact", "label", "model") or "?")
            mode = _first(e, "mode") or cfg.get("mode")
            calib = _first(e, "calibration_method", "method")
            if calib is None:
                c = e.get("calibration", cfg.get("calibration"))
                calib = c.get("method") if isinstance(c, Mapping) else c
            row = Row(label=name, family="FP32" if mode == "fp32" else "PTQ", source=_display(run),
                      mode=str(mode) if mode else None, calibration=str(calib) if calib else None)
            row.file = _resolve_file(run, _first(e, "file", "path", "model_file", "tflite"), name)
            _fill_metrics(row, e)
            if row.size_bytes is None and row.file:
                row.size_bytes = float(os.path.getsize(row.file))
            row.note = _subset_note(e, data)
            out.rows.append(row)


def read_qat(runs: Sequence[Path], out: Collection) -> None:
    """QAT's converted model (mean ± std over seeds) and its per-epoch curve."""
    rows: list[Row] = []
    for run in runs:
        data = _read(run / "results.json") or {}
        # pipelines.qat writes PTQ-style rows (fp32 and PTQ references, then the QAT model).
        entries = _variant_rows(data)
        qat = [e for e in entries if str(e.get("name", "")).startswith("qat")] or entries[-1:]
        entry = qat[0] if qat else data
        mode = str(entry.get("mode") or "int8") if isinstance(entry, Mapping) else "int8"
        row = Row(label=f"QAT {mode}", family="QAT", source=_display(run), mode=mode)
        if isinstance(entry, Mapping):
            _fill_metrics(row, entry)
            row.file = _resolve_file(run, _first(entry, "model_file", "tflite_file", "file", "path"))
        if row.file is None:
            tfl = sorted(run.glob("*.tflite"))
            row.file = str(tfl[0].resolve()) if tfl else None
        if row.size_bytes is None and row.file:
            row.size_bytes = float(os.path.getsize(row.file))
        if row.top1 is None:
            out.notes.append(f"{_display(run)}: QAT results.json has no top-1 in a known layout")
        rows.append(row)
        recs = _jsonl(run / "metrics.jsonl")
        ref = _read(run / "reference.json") if (run / "reference.json").is_file() else None
        if recs:
            initial = ref.get("qat_initial_val_top1") if isinstance(ref, Mapping) else None
            if _finite(initial):  # the accuracy right after range initialization, as epoch 0
                recs = [{"epoch": 0, "val_top1": initial}, *recs]
            out.qat_curves.append(_curve(run.name, recs))
        if isinstance(ref, Mapping):
            for key, label in (("fp32", "FP32 (val)"), ("ptq", "PTQ {name} (val)")):
                r = ref.get(key)
                if isinstance(r, Mapping) and _finite(r.get("val_top1")):
                    out.qat_references[label.format(name=r.get("name", "int8"))] = float(r["val_top1"])
    if not rows:
        return
    first = rows[0]
    if len(rows) > 1:
        for attr in ("top1", "top5", "agreement", "sqnr_db"):
            setattr(first, attr, Stat.of(getattr(r, attr).mean for r in rows if getattr(r, attr) is not None))
        first.note = f"{len(rows)} seeds"
    out.rows.append(first)


def read_mixed(runs: Sequence[Path], out: Collection) -> None:
    """The chosen mixed-precision plan, measured on test."""
    for run in runs:
        data = _read(run / "results.json")
        if not isinstance(data, Mapping):
            out.notes.append(f"{_display(run)}: mixed run without results.json")
            continue
        chosen = data.get("chosen") if isinstance(data.get("chosen"), Mapping) else data
        plan = data.get("plan") if isinstance(data.get("plan"), Mapping) else {}
        status = (_read(run / MANIFEST) or {}).get("status")
        name = plan.get("name") or "plan"
        row = Row(label="mixed" if name == "mixed" else f"mixed: {name}", family="mixed", source=_display(run))
        _fill_metrics(row, chosen.get("test") if isinstance(chosen.get("test"), Mapping) else chosen)
        row.file = _resolve_file(run, data.get("model_file"))
        if row.size_bytes is None and row.file:
            row.size_bytes = float(os.path.getsize(row.file))
        counts = chosen.get("layers_by_precision")
        notes = []
        if isinstance(counts, Mapping):
            notes.append(", ".join(f"{k} x{v}" for k, v in counts.items()))
        if data.get("budget"):
            budget = ", ".join(f"{k} {v:g}" for k, v in data["budget"].items() if _finite(v))
            notes.append(f"budget {budget}" + ("" if data.get("met", True) else " NOT met"))
        if status not in (None, "complete"):
            notes.append(f"status {status}")
        row.note = "; ".join(notes)
        out.rows.append(row)


def read_sensitivity(runs: Sequence[Path], out: Collection) -> None:
    """Per-layer scores from ``sensitivity.json``."""
    data = _read(runs[0] / "sensitivity.json")
    if not isinstance(data, Mapping) or not isinstance(data.get("layers"), list):
        out.notes.append(f"{_display(runs[0])}: no sensitivity.json with layers")
        return
    out.sensitivity = {"source": _display(runs[0]), **data}


def read_bench(runs: Sequence[Path], out: Collection) -> None:
    """edge.bench measurements of the bench stage (``results.json`` written by pipelines.experiment)."""
    for run in runs:
        data = _read(run / "results.json")
        if not isinstance(data, Mapping) or not isinstance(data.get("measurements"), list):
            out.notes.append(f"{_display(run)}: bench run without measurements")
            continue
        base = run.parent
        for m in data["measurements"]:
            m = dict(m)
            rel = m.get("file")
            m["abs_file"] = str((base / rel).resolve()) if rel else m.get("path")
            out.bench.append(m)
        out.bench_setup = dict(data.get("setup", {}))


def read_experiment(path: Path, out: Collection) -> None:
    """Every unit of an experiment, grouped by stage (replicas together), plus its environment."""
    stages = _read(path / "stages.json") or {}
    units = stages.get("units", {}) if isinstance(stages, Mapping) else {}
    manifest = _read(path / MANIFEST) or {}
    if manifest.get("command"):
        out.commands.append(("experiment", _join(manifest["command"])))
    env = _read(path / "environment.json")
    if env and out.environment is None:
        out.environment, out.environment_source = env, _display(path)
    grouped: dict[str, list[tuple[int, Path]]] = {}
    for name, rec in sorted(units.items(), key=lambda kv: str(kv[1].get("started", ""))):
        if rec.get("status") not in ("complete", "reused"):
            if rec.get("status") != "dropped":
                out.notes.append(f"{_display(path)}: unit {name} is {rec.get('status')!r}; not in the report")
            continue
        grouped.setdefault(rec["stage"], []).append((int(rec.get("replica", 0)), path / rec["dir"]))
        for cmd in rec.get("commands") or ([rec["command"]] if rec.get("command") else []):
            out.commands.append((name, _join(cmd)))
    for stage in ("train", "ptq", "qat", "mixed", "sensitivity", "bench"):
        if stage in grouped:
            dirs = [p for _, p in sorted(grouped[stage])]
            READERS[stage](dirs, out)


def _join(cmd: Any) -> str:
    import shlex

    return " ".join(shlex.quote(str(c)) for c in cmd) if isinstance(cmd, (list, tuple)) else str(cmd)


READERS: dict[str, Callable[[Sequence[Path], Collection], None]] = {
    "train": read_train,
    "ptq": read_ptq,
    "qat": read_qat,
    "mixed": read_mixed,
    "sensitivity": read_sensitivity,
    "bench": read_bench,
}


# --------------------------------------------------------------------------- bench aggregation


def summarize_bench(measurements: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over repeats of p50/p90 latency and peak RSS, per (file, target, threads).

    Args:
      measurements: One entry per edge.bench result and repeat, with ``file``,
        ``target``, ``threads``, ``status``, ``latency_ms`` and ``peak_rss_mb``.

    Returns:
      One dict per (file, target, threads) with ``p50``, ``p90``, ``peak_rss_mb``
      as ``{"mean", "std", "n"}`` (None when nothing was measured) and the errors.
    """
    groups: dict[tuple[str, str, Any], list[Mapping[str, Any]]] = {}
    for m in measurements:
        groups.setdefault((m.get("file") or m.get("abs_file"), m.get("target"), m.get("threads")), []).append(m)
    out = []
    for (file, target, threads), ms in groups.items():
        ok = [m for m in ms if m.get("status") == "ok"]
        cell: dict[str, Any] = {"file": file, "target": target, "threads": threads, "repeats": len(ms)}
        for q in ("p50", "p90"):
            s = Stat.of((m.get("latency_ms") or {}).get(q) for m in ok)
            cell[q] = s.to_dict() if s else None
        s = Stat.of(m.get("peak_rss_mb") for m in ok)
        cell["peak_rss_mb"] = s.to_dict() if s else None
        cell["errors"] = sorted({str(m.get("error")) for m in ms if m.get("status") != "ok"})
        cell["fallback"] = sorted({str(m["fallback"]) for m in ok if m.get("fallback")})
        out.append(cell)
    return out


def _attach_bench(out: Collection) -> None:
    """Joins bench measurements to rows by ``.tflite`` path."""
    if not out.bench:
        return
    by_file: dict[str, list[Mapping[str, Any]]] = {}
    for m in out.bench:
        by_file.setdefault(os.path.realpath(m["abs_file"]) if m.get("abs_file") else "", []).append(m)
    matched = set()
    for row in out.rows:
        if not row.file:
            continue
        key = os.path.realpath(row.file)
        ms = by_file.get(key)
        if not ms:
            continue
        matched.add(key)
        for cell in summarize_bench(ms):
            lk: LatencyKey = (str(cell["target"]), cell["threads"], "bench")
            row.latency[lk] = {q: Stat(**cell[q]) for q in ("p50", "p90") if cell.get(q)}
            if cell.get("peak_rss_mb"):
                row.peak_rss_mb[str(cell["target"])] = Stat(**cell["peak_rss_mb"])
            if cell["errors"]:
                row.note = "; ".join(filter(None, [row.note, f"bench {cell['target']}: {cell['errors'][0]}"]))
            if cell["fallback"]:
                row.note = "; ".join(filter(None, [row.note, f"fallback: {cell['fallback'][0]}"]))
        # Bench numbers replace the stage's own CPU timings in the table.
        for k in [k for k in row.latency if k[2] == "stage"]:
            del row.latency[k]
    for key, ms in by_file.items():
        if key and key not in matched:
            out.notes.append(f"benchmarked {ms[0].get('file') or key} matches no row")


def _fill_ratios(out: Collection) -> None:
    """Size ratios against the FP32 ``.tflite`` where a stage did not give one."""
    ref = next((r.size_bytes for r in out.rows if r.mode == "fp32" and r.file and r.size_bytes), None)
    if not ref:
        return
    for r in out.rows:
        if r.size_ratio is None and r.size_bytes and r.file:
            r.size_ratio = r.size_bytes / ref


# --------------------------------------------------------------------------- entry point


def collect(paths: Iterable[str | os.PathLike]) -> Collection:
    """Reads experiment directories and stage run directories into one :class:`Collection`.

    Raises:
      FileNotFoundError: A path does not exist.
      ValueError: A path is not a tfq run directory or has an unknown kind.
    """
    out = Collection()
    for p in paths:
        path = Path(p)
        if not path.is_dir():
            raise FileNotFoundError(f"run directory not found: {path}")
        manifest = _read(path / MANIFEST)
        if not isinstance(manifest, Mapping):
            raise ValueError(f"{path} is not a tfq run directory (no {MANIFEST})")
        kind = manifest.get("kind")
        out.sources.append({"path": _display(path), "kind": kind, "status": manifest.get("status"),
                            "model": manifest.get("model"), "dataset": manifest.get("dataset")})
        if kind == "experiment":
            read_experiment(path, out)
        elif kind in READERS:
            if manifest.get("status") != "complete":
                out.notes.append(f"{_display(path)}: status {manifest.get('status')!r} (not complete)")
            for cmd in manifest.get("commands") or ([manifest["command"]] if manifest.get("command") else []):
                out.commands.append((kind, _join(cmd)))
            READERS[kind]([path], out)
        else:
            valid = ", ".join(["experiment", *READERS])
            raise ValueError(f"{path}: unknown run kind {kind!r}; the report reads: {valid}")
    _attach_bench(out)
    _fill_ratios(out)
    return out
