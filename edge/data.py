"""Labeled evaluation data for on-target accuracy: a ``.npz`` plus optional preprocessing.

The ``.npz`` holds ``images`` (uint8 NHWC, or float already preprocessed) and
``labels`` (integer class indices, or one-hot). uint8 images are turned into
what the model saw in training with a ``preprocessing.json`` (the file tfq's
training stage writes into its run directory)::

    x = (images * scale - mean) / std        # per channel, mean/std in the scaled space

Without a preprocessing file uint8 images are scaled by 1/255. Float images are
used as they are.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from edge._common import EdgeError

DEFAULT_SCALE = 1.0 / 255.0


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """``(x * scale - mean) / std`` for uint8 images; mean/std per channel or scalar."""

    scale: float = DEFAULT_SCALE
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    image_size: tuple[int, int] | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise EdgeError(f"preprocessing scale must be > 0, got {self.scale}")
        if any(not s > 0 for s in self.std):
            raise EdgeError(f"preprocessing std must be > 0, got {list(self.std)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        """Reads ``scale``/``mean``/``std`` (and ``image_size``/``channels`` when present).

        Other keys of tfq's ``preprocessing.json`` are ignored.
        """
        def floats(v: Any, default: tuple[float, ...]) -> tuple[float, ...]:
            if v is None:
                return default
            return tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else [v]))

        size = d.get("image_size")
        return cls(
            scale=float(d.get("scale", DEFAULT_SCALE)),
            mean=floats(d.get("mean"), (0.0,)),
            std=floats(d.get("std"), (1.0,)),
            image_size=tuple(int(s) for s in size) if size else None,  # type: ignore[arg-type]
            channels=int(d["channels"]) if d.get("channels") is not None else None,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Preprocessing:
        """Loads a JSON file, or ``<dir>/preprocessing.json`` for a directory.

        Raises:
            EdgeError: If the file is missing or not valid JSON.
        """
        p = os.fspath(path)
        if os.path.isdir(p):
            p = os.path.join(p, "preprocessing.json")
        try:
            with open(p, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError as e:
            raise EdgeError(f"preprocessing file not found: {p}") from e
        except (OSError, json.JSONDecodeError) as e:
            raise EdgeError(f"cannot read preprocessing file {p}: {e}") from e
        if not isinstance(data, dict):
            raise EdgeError(f"preprocessing file {p} must hold a JSON object")
        return cls.from_dict(data)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Applies the transform to uint8 NHWC images; returns float32."""
        x = images.astype(np.float32) * np.float32(self.scale)
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        if mean.size not in (1, x.shape[-1]) or std.size not in (1, x.shape[-1]):
            raise EdgeError(
                f"preprocessing has {mean.size} mean / {std.size} std values but the images have "
                f"{x.shape[-1]} channels"
            )
        return (x - mean) / std


@dataclasses.dataclass(frozen=True)
class EvalData:
    """Preprocessed float images and integer labels."""

    x: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_eval(path: str | os.PathLike, preprocessing: Preprocessing | None = None,
              limit: int | None = None) -> EvalData:
    """Loads and preprocesses a labeled ``.npz``.

    Args:
        path: ``.npz`` with ``images`` and ``labels``.
        preprocessing: Transform for uint8 images; None means ``x / 255``.
        limit: Keep only the first ``limit`` samples.

    Returns:
        The :class:`EvalData`.

    Raises:
        EdgeError: If the file is missing, lacks a key, or images and labels disagree.
    """
    p = os.fspath(path)
    try:
        with np.load(p, allow_pickle=False) as npz:
            missing = [k for k in ("images", "labels") if k not in npz.files]
            if missing:
                raise EdgeError(f"{p} lacks key(s) {missing}; it has {npz.files}")
            images, labels = npz["images"], npz["labels"]
    except FileNotFoundError as e:
        raise EdgeError(f"evaluation data not found: {p}") from e
    except (OSError, ValueError) as e:
        raise EdgeError(f"cannot read evaluation data {p}: {e}") from e
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1)
    if images.shape[0] != labels.shape[0]:
        raise EdgeError(f"{p}: {images.shape[0]} images but {labels.shape[0]} labels")
    if not np.issubdtype(labels.dtype, np.integer):
        raise EdgeError(f"{p}: labels must be integers, got {labels.dtype}")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if images.dtype == np.uint8:
        pre = preprocessing or Preprocessing()
        if pre.image_size is not None and images.ndim == 4 and tuple(images.shape[1:3]) != pre.image_size:
            raise EdgeError(
                f"{p}: images are {images.shape[1]}x{images.shape[2]} but the preprocessing "
                f"expects {pre.image_size[0]}x{pre.image_size[1]}"
            )
        x = pre.apply(images)
    elif np.issubdtype(images.dtype, np.floating):
        x = images.astype(np.float32, copy=False)
    else:
        raise EdgeError(f"{p}: images must be uint8 or float, got {images.dtype}")
    return EvalData(x=x, labels=labels.astype(np.int64), source=p)


def npz_array_info(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """Reads the shape and dtype of every array in a ``.npz`` without loading the data.

    Raises:
        EdgeError: If the file is missing or is not a readable ``.npz``.
    """
    import zipfile

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise EdgeError(f"evaluation data not found: {p}")
    info = {}
    try:
        with zipfile.ZipFile(p) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    continue
                with zf.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                info[name[: -len(".npy")]] = (tuple(int(s) for s in shape), np.dtype(dtype).name)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise EdgeError(f"cannot read evaluation data {p}: {e}") from e
    for key in ("images", "labels"):
        if key not in info:
            raise EdgeError(f"{p} lacks key {key!r}; it has {sorted(info)}")
    return info


def check_npz_against_signature(path: str | os.PathLike, signature: tuple[int, ...], model: str) -> None:
    """Checks, from the ``.npz`` headers only, that its images can feed ``model``.

    Raises:
        EdgeError: With both shapes in the message when they do not match.
    """
    info = npz_array_info(path)
    shape, _ = info["images"]
    n_labels = info["labels"][0][0] if info["labels"][0] else 0
    if shape and shape[0] != n_labels:
        raise EdgeError(f"{os.fspath(path)}: {shape[0]} images but {n_labels} labels")
    if len(shape) != len(signature) or any(
        want >= 0 and got != want for got, want in zip(shape[1:], signature[1:])
    ):
        raise EdgeError(
            f"{os.fspath(path)}: images have shape {shape} but {model} expects input "
            f"{tuple(signature)} (-1 = any, first axis = batch)"
        )
