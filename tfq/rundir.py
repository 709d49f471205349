"""Run directories: the artifact contract between stages.

One run writes into one directory that is never silently overwritten::

    runs/<model>-<dataset>-<YYYYmmdd-HHMMSS>/
      run.json            # manifest: kind, model, dataset, status, created, command
      config.json         # the resolved configuration of this stage
      preprocessing.json  # the exact input transform (train runs)
      metrics.jsonl       # one JSON object per line (per epoch / step)
      results.json        # final numbers
      ...                 # model files, plots, logs

``run.json`` holds ``status``: ``running`` while the stage works and
``complete`` when it finished; later stages only pick complete runs. Every
file is written atomically (temporary file + rename), so an interrupted
process never leaves a half-written JSON behind.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

DEFAULT_ROOT = "runs"
MANIFEST = "run.json"


class RunDirError(RuntimeError):
    """A run directory cannot be created, found or used."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes text atomically (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


class RunDir:
    """A run directory with atomic writers and a manifest.

    Use :meth:`create` to start a new run (or explicitly resume one) and
    :meth:`open` to read a finished one.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # Creation -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        *,
        kind: str,
        name: str | None = None,
        out: str | os.PathLike | None = None,
        root: str | os.PathLike = DEFAULT_ROOT,
        overwrite: bool = False,
        resume: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> "RunDir":
        """Creates (or resumes) a run directory.

        Args:
          kind: The stage writing it (``train``, ``ptq``, ``qat``...).
          name: Base name used under ``root`` when ``out`` is not given; a
            timestamp is appended (``<name>-<YYYYmmdd-HHMMSS>``).
          out: An explicit directory.
          root: Parent of derived run directories.
          overwrite: Delete an existing ``out`` first.
          resume: Reuse an existing ``out`` of the same ``kind`` as it is.
          meta: Extra manifest fields (model, dataset...).

        Raises:
          RunDirError: ``out`` exists and neither ``overwrite`` nor ``resume`` was
            given, or it belongs to another kind of stage.
        """
        if out is None:
            if not name:
                raise RunDirError("either out or name is required")
            base = Path(root) / f"{name}-{timestamp()}"
            path, i = base, 1
            while path.exists():  # two runs started in the same second
                i += 1
                path = Path(f"{base}-{i}")
        else:
            path = Path(out)
        run = cls(path)
        if path.exists() and any(path.iterdir()):
            if resume and not overwrite:
                manifest = run.manifest()
                if manifest.get("kind") not in (None, kind):
                    raise RunDirError(
                        f"{path} is a {manifest.get('kind')!r} run, not {kind!r}; choose another --out"
                    )
                log.info("resuming run directory %s", path)
                run.update_manifest(status="running", resumed=_dt.datetime.now().isoformat(timespec="seconds"))
                return run
            if not overwrite:
                raise RunDirError(
                    f"run directory {path} already exists and is not empty; "
                    "pass --overwrite to replace it (or --resume to continue it)"
                )
            log.warning("overwriting run directory %s", path)
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "kind": kind,
            "status": "running",
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
            "command": [os.path.basename(sys.executable), *sys.argv],
            "tfq_version": _tfq_version(),
        }
        manifest.update(meta or {})
        write_json(path / MANIFEST, manifest)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """Opens an existing run directory (raises if it has no manifest)."""
        run = cls(path)
        if not (run.path / MANIFEST).is_file():
            raise RunDirError(f"{path} is not a tfq run directory (no {MANIFEST})")
        return run

    # Files --------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return (self.path / name).exists()

    def write_json(self, name: str, obj: Any) -> Path:
        write_json(self.path / name, obj)
        return self.path / name

    def read_json(self, name: str) -> Any:
        return read_json(self.path / name)

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.path / name, text)
        return self.path / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        atomic_write_bytes(self.path / name, data)
        return self.path / name

    def append_jsonl(self, name: str, record: dict[str, Any]) -> None:
        """Appends one JSON line (flushed and fsynced)."""
        with open(self.path / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True, default=_json_default) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """Reads a JSON-lines file, skipping a torn last line."""
        path = self.path / name
        if not path.exists():
            return []
        out = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("skipping a torn line in %s", path)
        return out

    # Manifest -----------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        path = self.path / MANIFEST
        return read_json(path) if path.is_file() else {}

    def update_manifest(self, **fields: Any) -> None:
        data = self.manifest()
        data.update(fields)
        write_json(self.path / MANIFEST, data)

    def mark_complete(self, **fields: Any) -> None:
        self.update_manifest(
            status="complete", finished=_dt.datetime.now().isoformat(timespec="seconds"), **fields
        )

    @property
    def is_complete(self) -> bool:
        return self.manifest().get("status") == "complete"


def _tfq_version() -> str:
    try:
        import tfq

        return tfq.__version__
    except Exception:  # pragma: no cover
        return "unknown"


def find_runs(
    root: str | os.PathLike = DEFAULT_ROOT,
    *,
    kind: str | None = None,
    complete_only: bool = True,
    **match: Any,
) -> list[RunDir]:
    """Lists run directories under ``root``, newest first.

    Args:
      root: Directory holding run directories.
      kind: Only runs of this stage.
      complete_only: Skip runs that did not finish.
      **match: Manifest fields that must be equal (``model="resnet18"``);
        ``None`` values are ignored.

    Returns:
      Matching runs, newest (by manifest ``created``, then name) first.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found: list[tuple[str, str, RunDir]] = []
    for child in root.iterdir():
        manifest_path = child / MANIFEST
        if not manifest_path.is_file():
            continue
        try:
            manifest = read_json(manifest_path)
        except (OSError, json.JSONDecodeError):
            continue
        if kind is not None and manifest.get("kind") != kind:
            continue
        if complete_only and manifest.get("status") != "complete":
            continue
        if any(v is not None and manifest.get(k) != v for k, v in match.items()):
            continue
        found.append((manifest.get("created", ""), child.name, RunDir(child)))
    found.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [r for _, _, r in found]


def latest_run(root: str | os.PathLike = DEFAULT_ROOT, **kwargs: Any) -> RunDir | None:
    """The newest run matching :func:`find_runs` filters, or ``None``."""
    runs = find_runs(root, **kwargs)
    return runs[0] if runs else None


def iter_files(run: RunDir, suffix: str) -> Iterable[Path]:
    return sorted(run.path.glob(f"*{suffix}"))
