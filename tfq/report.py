"""Markdown tables and number formatting shared by every stage's report.

Rows are plain mappings (the dicts stages write to ``results.json``); a
:class:`Column` says which value to show (a key, a dotted path into nested
dicts, or a function of the row), under which header and how to format it::

    print(markdown_table(rows, [
        Column("name", "model", align="left"),
        Column("top1", "top-1", fmt_pct),
        Column("latency_ms.1.p50", "ms (1 thr)", fmt_ms),
    ]))

Missing values render as an em dash, never as ``None`` or ``nan``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

__all__ = [
    "Column",
    "MISSING",
    "fmt_auto",
    "fmt_bytes",
    "fmt_db",
    "fmt_delta_pp",
    "fmt_float",
    "fmt_int",
    "fmt_list",
    "fmt_ms",
    "fmt_pct",
    "fmt_ratio",
    "get_path",
    "markdown_table",
]

MISSING = "—"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def get_path(row: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """Looks up ``"a.b.c"`` in nested mappings (a key containing dots is tried whole first)."""
    if path in row:
        return row[path]
    node: Any = row
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return default
    return node


def fmt_auto(value: Any) -> str:
    """Numbers with up to 4 significant digits, everything else as ``str``."""
    if _missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return fmt_list(value)
    return str(value)


def fmt_float(digits: int = 2) -> Callable[[Any], str]:
    """A formatter with a fixed number of decimals."""

    def fmt(value: Any) -> str:
        if _missing(value):
            return MISSING
        if isinstance(value, float) and math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{float(value):.{digits}f}"

    return fmt


def fmt_int(value: Any) -> str:
    """An integer with thousands separators."""
    return MISSING if _missing(value) else f"{int(value):,}"


def fmt_pct(value: Any, digits: int = 2) -> str:
    """A fraction in [0, 1] as a percentage: ``0.9341 -> "93.41%"``."""
    return MISSING if _missing(value) else f"{100.0 * float(value):.{digits}f}%"


def fmt_delta_pp(value: Any, digits: int = 2) -> str:
    """A difference of fractions in percentage points, signed: ``-0.0012 -> "-0.12"``."""
    if _missing(value):
        return MISSING
    v = 100.0 * float(value)
    if abs(v) < 0.5 * 10**-digits:
        v = 0.0
    return f"{v:+.{digits}f}"


def fmt_db(value: Any, digits: int = 1) -> str:
    """Decibels: ``31.24 -> "31.2"``, infinity for identical outputs."""
    if _missing(value):
        return MISSING
    if math.isinf(float(value)):
        return "∞" if value > 0 else "-∞"
    return f"{float(value):.{digits}f}"


def fmt_ms(value: Any) -> str:
    """Milliseconds, about 3 significant digits: ``0.1234 -> "0.123"``, ``1.5 -> "1.50"``."""
    if _missing(value):
        return MISSING
    v = float(value)
    decimals = 3 if v < 1 else 2 if v < 10 else 1 if v < 100 else 0
    return f"{v:.{decimals}f}"


def fmt_bytes(value: Any) -> str:
    """A size in bytes, binary units: ``1536 -> "1.5 KiB"``."""
    if _missing(value):
        return MISSING
    v = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{int(v)} B" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} GiB"  # pragma: no cover


def fmt_ratio(value: Any, digits: int = 2) -> str:
    """A ratio: ``0.2543 -> "0.25x"``."""
    return MISSING if _missing(value) else f"{float(value):.{digits}f}x"


def fmt_list(value: Any, limit: int = 4) -> str:
    """A list as ``a, b, c (+2 more)``; an empty list as ``none``."""
    if _missing(value):
        return MISSING
    items = [str(v) for v in value]
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} (+{len(items) - limit} more)"


@dataclasses.dataclass(frozen=True)
class Column:
    """One table column.

    Attributes:
      key: A key or dotted path into the row, or a function of the row.
      header: Column header (defaults to the key).
      fmt: Formats the value (``fmt_auto`` by default).
      align: ``"left"``, ``"right"`` or ``"center"``.
    """

    key: Union[str, Callable[[Mapping[str, Any]], Any]]
    header: str | None = None
    fmt: Callable[[Any], str] = fmt_auto
    align: str = "right"

    def __post_init__(self) -> None:
        if self.align not in ("left", "right", "center"):
            raise ValueError(f"align must be left, right or center, got {self.align!r}")

    @property
    def title(self) -> str:
        if self.header is not None:
            return self.header
        return self.key if isinstance(self.key, str) else getattr(self.key, "__name__", "?")

    def value(self, row: Mapping[str, Any]) -> Any:
        return self.key(row) if callable(self.key) else get_path(row, self.key)

    def cell(self, row: Mapping[str, Any]) -> str:
        return self.fmt(self.value(row))


def _as_column(c: Union[Column, str, tuple]) -> Column:
    if isinstance(c, Column):
        return c
    if isinstance(c, str):
        return Column(c)
    if isinstance(c, tuple):
        return Column(*c)
    raise TypeError(f"a column is a Column, a key or a tuple, got {c!r}")


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Union[Column, str, tuple]]) -> str:
    """Renders rows as a GitHub-flavoured Markdown table.

    Args:
      rows: One mapping per row.
      columns: :class:`Column` objects, keys, or ``(key, header, fmt[, align])`` tuples.

    Returns:
      The table, one line per row, ending with a newline; cells are padded so
      the plain text lines up.
    """
    cols = [_as_column(c) for c in columns]
    if not cols:
        raise ValueError("markdown_table needs at least one column")
    header = [_escape(c.title) for c in cols]
    body = [[_escape(c.cell(r)) for c in cols] for r in rows]
    widths = [max(3, len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for c, cell, w in zip(cols, cells, widths):
            out.append(cell.ljust(w) if c.align == "left" else cell.center(w) if c.align == "center" else cell.rjust(w))
        return "| " + " | ".join(out) + " |"

    rules = []
    for c, w in zip(cols, widths):
        if c.align == "left":
            rules.append(":" + "-" * (w - 1))
        elif c.align == "center":
            rules.append(":" + "-" * (w - 2) + ":")
        else:
            rules.append("-" * (w - 1) + ":")
    lines = [line(header), "| " + " | ".join(rules) + " |", *(line(b) for b in body)]
    return "\n".join(lines) + "\n"
