"""Shared pieces of the edge CLIs: errors, atomic JSON output, logging, formatting."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


class EdgeError(Exception):
    """A user-facing failure: the CLI prints its message (no traceback) and exits non-zero."""


class OutputExistsError(EdgeError):
    """The output file exists and ``--overwrite`` was not given."""


def setup_logging(verbosity: int = 0) -> None:
    """Configures the root logger for a CLI: warnings by default, ``-v`` info, ``-vv`` debug."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def check_writable(path: str | os.PathLike | None, overwrite: bool) -> None:
    """Fails early when ``path`` exists and may not be replaced.

    Raises:
        OutputExistsError: If the file exists and ``overwrite`` is False.
    """
    if path is not None and os.path.exists(path) and not overwrite:
        raise OutputExistsError(f"{os.fspath(path)} exists; pass --overwrite to replace it")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _clean(obj: Any) -> Any:
    """Replaces NaN/inf floats by None so the JSON stays standard."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any, overwrite: bool = False) -> None:
    """Writes JSON through a temporary file and ``os.replace``.

    Args:
        path: Destination file.
        obj: JSON-serializable object (numpy scalars/arrays allowed; NaN becomes null).
        overwrite: Replace an existing file.

    Raises:
        OutputExistsError: If ``path`` exists and ``overwrite`` is False.
    """
    check_writable(path, overwrite)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_clean(json.loads(json.dumps(obj, default=_json_default))), indent=2)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = False) -> None:
    """Writes text atomically; same overwrite rule as :func:`write_json_atomic`."""
    check_writable(path, overwrite)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fmt(value: Any) -> str:
    """Formats a value for a Markdown table: ``-`` when missing, floats by magnitude.

    ``12345.6 -> "12346"``, ``3.14159 -> "3.14"``, ``0.0123 -> "0.0123"``.
    """
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:.0f}"
        if magnitude >= 1 or magnitude == 0:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """Renders a GitHub-flavoured Markdown table."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda items: "| " + " | ".join(s.ljust(w) for s, w in zip(items, widths)) + " |"  # noqa: E731
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in cells)
    return "\n".join(out) + "\n"
