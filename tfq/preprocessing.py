"""The exact input transform from raw pixels to what a model sees.

A :class:`Preprocessing` is saved as ``preprocessing.json`` beside every
trained model, so that evaluation, calibration and the edge runner feed the
model exactly what it was trained on::

    x_model = (x_uint8.astype(float32) * scale - mean) / std     # per channel

``mean`` and ``std`` live in the scaled space (0..1 for ``scale = 1/255``).
Images are ``uint8`` NHWC arrays whose height, width and channel count match
``image_size`` and ``channels``; resizing is the data stage's job, never done
silently here.

This module imports only numpy and the standard library (no TensorFlow), so a
device with numpy and a LiteRT interpreter can use it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from tfq.configs import ConfigBase

FILENAME = "preprocessing.json"


def _resolve_path(path: str | os.PathLike) -> Path:
    """A directory means ``<dir>/preprocessing.json``; anything else is the file."""
    p = Path(path)
    return p / FILENAME if p.is_dir() else p


@dataclasses.dataclass(frozen=True)
class Preprocessing(ConfigBase):
    """Per-channel scale-and-normalize transform of uint8 NHWC images.

    Attributes:
      image_size: (height, width) the model sees.
      channels: Number of channels (1 grayscale, 3 RGB).
      mean: Per-channel mean in the scaled space (after ``* scale``).
      std: Per-channel standard deviation in the scaled space; all > 0.
      scale: Factor applied to raw pixel values first (``1/255`` maps 0..255 to 0..1).
    """

    image_size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0 / 255.0

    def __post_init__(self) -> None:
        size = tuple(self.image_size) if isinstance(self.image_size, (list, tuple)) else None
        if (
            size is None
            or len(size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise ValueError(f"image_size must be two positive integers (height, width), got {self.image_size!r}")
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        if isinstance(self.channels, bool) or not isinstance(self.channels, (int, np.integer)) or self.channels < 1:
            raise ValueError(f"channels must be a positive integer, got {self.channels!r}")
        object.__setattr__(self, "channels", int(self.channels))
        for field in ("mean", "std"):
            value = getattr(self, field)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
                raise ValueError(f"{field} must be a sequence of {self.channels} numbers, got {value!r}")
            try:
                floats = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"{field} must hold numbers, got {value!r}") from None
            if len(floats) != self.channels:
                raise ValueError(
                    f"{field} has {len(floats)} values but channels={self.channels}; "
                    f"give one value per channel, got {value!r}"
                )
            if not all(math.isfinite(v) for v in floats):
                raise ValueError(f"{field} must be finite, got {value!r}")
            object.__setattr__(self, field, floats)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0 for every channel, got {self.std!r}")
        try:
            scale = float(self.scale)
        except (TypeError, ValueError):
            raise ValueError(f"scale must be a number, got {self.scale!r}") from None
        if not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a finite number > 0, got {self.scale!r}")
        object.__setattr__(self, "scale", scale)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image as the model sees it."""
        return (self.image_size[0], self.image_size[1], self.channels)

    def check_images(self, images: np.ndarray, what: str = "images") -> None:
        """Raises ValueError unless ``images`` is a uint8 NHWC batch of this shape.

        Args:
          images: The array to check.
          what: How to name the array in the error message.
        """
        if not isinstance(images, np.ndarray):
            raise ValueError(f"{what} must be a numpy array, got {type(images).__name__}")
        if images.ndim != 4:
            hint = " (add a batch axis: images[None])" if images.ndim == 3 else ""
            raise ValueError(
                f"{what} must be a uint8 batch of shape (N, H, W, C) = (N, {', '.join(map(str, self.input_shape))}), "
                f"got shape {images.shape}{hint}"
            )
        if images.shape[1:] != self.input_shape:
            raise ValueError(
                f"{what} have shape (H, W, C) = {tuple(images.shape[1:])} but this preprocessing "
                f"expects {self.input_shape}; resize/convert them first (see tfq.data)"
            )
        if images.dtype != np.uint8:
            raise ValueError(
                f"{what} must be raw uint8 pixels, got dtype {images.dtype}; "
                "Preprocessing.apply scales and normalizes them itself"
            )

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Scales and normalizes a batch of raw images.

        Args:
          images: uint8 array of shape (N, H, W, C) matching ``input_shape``.

        Returns:
          float32 array of the same shape: ``(x * scale - mean) / std``.

        Raises:
          ValueError: The array is not uint8 or its H, W, C do not match.
        """
        self.check_images(images)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        x = images.astype(np.float32) * np.float32(self.scale)
        x -= mean
        x /= std
        return x

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Writes this transform as JSON (atomically).

        Args:
          path: A file path, or an existing directory (then ``<dir>/preprocessing.json``).
          overwrite: Replace an existing file instead of raising.

        Returns:
          The path written.

        Raises:
          FileExistsError: The file exists and ``overwrite`` is False.
        """
        from tfq.rundir import atomic_write_text  # standard library only

        target = _resolve_path(path)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
        atomic_write_text(target, self.to_json() + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Preprocessing":
        """Reads a transform written by :meth:`save`.

        Args:
          path: The JSON file, or a directory holding ``preprocessing.json``.

        Raises:
          FileNotFoundError: No such file.
          tfq.configs.ConfigError: The file is malformed or holds invalid values.
        """
        return super().load(_resolve_path(path))
