"""Datasets as uint8 NHWC arrays, a fixed split rule, and tf.data input pipelines.

Sources (``DataConfig.name``)
-----------------------------
``digits``
    scikit-learn's bundled ``load_digits``: 1,797 real 8x8 grayscale digits,
    10 classes. Works offline; the embedded default for smoke tests. Pixel
    values 0..16 become uint8 ``round(v * 255 / 16)``.
``cifar10``, ``cifar100``
    Through TensorFlow Datasets. With ``data_dir`` the prepared copy in that
    folder is used and nothing is downloaded; without it the default TFDS
    location is used and TFDS may download. A missing copy or a failed download
    raises :class:`DatasetUnavailableError`, whose message says how to prepare
    an offline copy (``tfds build cifar10 --data_dir DIR`` on a machine with
    internet, copy DIR, pass ``--data-dir DIR``).
``imagefolder:PATH``
    One sub-folder per class (class names = sorted folder names). If ``PATH``
    holds ``train/`` and ``test/`` they are the official splits. Images are
    converted to RGB, or to L when every image is grayscale (alpha dropped),
    and resized (bilinear, aspect ratio not kept) to ``image_size`` x
    ``image_size``; ``image_size`` is required unless all images share one size.
    Without official splits the source order interleaves the classes
    round-robin (1st file of each class, then 2nd, ...; files sorted by name),
    so the test tail below holds the last files of every class.
``npz:PATH``
    A ``.npz`` file with ``images`` and ``labels``, or ``x_train``/``y_train``
    and optionally ``x_test``/``y_test``; images uint8 (N, H, W[, C]) with C in
    {1, 3}, labels integer class ids; optional ``class_names``. Write one with
    :func:`save_npz`.

Split rule
----------
Every dataset has four splits, ``train``, ``val``, ``calib`` and ``test``:

1. ``test`` is the source's official test split when it has one. Otherwise it
   is the LAST ``round(test_fraction * N)`` examples (at least 1) of the
   source in source order; they are never shuffled into training.
2. The remaining pool of ``n`` examples is permuted with
   ``np.random.default_rng(seed)``; ``val`` is the first
   ``round(val_fraction * n)`` (at least 1) of the permutation, ``train`` the
   rest (in permuted order).
3. ``calib`` is ``min(calib_size, len(train))`` examples drawn without
   replacement from ``train`` by a second permutation from the same
   generator. Calibration data is training data, as is standard for
   post-training quantization, so it is disjoint from ``val`` and ``test`` by
   construction.

``limit`` (smoke tests) keeps the first ``limit`` examples of each source split
before the rule is applied. ``Dataset.indices`` holds each split's positions in
the source order, where the source's train examples come first
(``0 .. n_train-1``) followed by its test examples.

Normalization statistics are the published constants for CIFAR-10/100 and
otherwise the per-channel mean/std of the ``train`` split (computed exactly,
rounded to 6 decimals), so they never see ``val`` or ``test``.

This module imports TensorFlow, TFDS, scikit-learn and PIL only inside the
functions that need them, so ``import tfq.data`` is cheap.

Check that a dataset loads and print its summary::

    python -m tfq.data --name cifar10 --data-dir ~/tfds_data
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from tfq.configs import ConfigBase, ConfigError, load_mapping, parse_set_args
from tfq.preprocessing import Preprocessing

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "calib", "test")

SPLIT_RULE = (
    "test = the source's official test split if it has one, else the last round(test_fraction*N) (at least 1) "
    "examples in source order; of the remaining pool, a permutation from np.random.default_rng(seed) "
    "gives val = the first round(val_fraction*n) (at least 1) and train = the rest; calib = min(calib_size, len(train)) "
    "examples drawn from train by a second permutation of the same generator"
)

INDEX_SPACE = "positions in source order: the source's train examples (0..n_train-1), then its test examples"

# Pad/crop augmentation pads this fraction of the image height (at least 1 pixel).
_PAD_DIVISOR = 8


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be loaded here (not prepared offline, download failed)."""


# ----------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class _BuiltinSpec:
    """One row of the built-in dataset table."""

    loader: str  # "sklearn_digits" or "tfds"
    description: str
    flip: bool
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


# Built-in datasets. ``mean``/``std`` are the published training-set statistics
# (0..1 scale); None means "compute them from the train split".
BUILTIN_DATASETS: dict[str, _BuiltinSpec] = {
    "digits": _BuiltinSpec("sklearn_digits", "scikit-learn load_digits, 8x8 grayscale, offline", flip=False),
    "cifar10": _BuiltinSpec(
        "tfds", "CIFAR-10 via TFDS", flip=True, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)
    ),
    "cifar100": _BuiltinSpec(
        "tfds", "CIFAR-100 (fine labels) via TFDS", flip=True, mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)
    ),
}

# Dataset name prefixes followed by a path.
PREFIXES = ("imagefolder:", "npz:")


def _valid_names_text() -> str:
    return ", ".join(list(BUILTIN_DATASETS) + [p + "PATH" for p in PREFIXES])


def _parse_name(name: str) -> tuple[str, str | None]:
    """Splits a dataset spec into (kind, path); kind is a builtin name or a prefix without ':'."""
    if not isinstance(name, str):
        raise ValueError(f"dataset name must be a string, got {name!r}")
    if name in BUILTIN_DATASETS:
        return name, None
    for prefix in PREFIXES:
        if name.startswith(prefix):
            path = name[len(prefix) :]
            if not path:
                raise ValueError(f"dataset name {name!r} needs a path after {prefix!r}, e.g. {prefix}/data/my_set")
            return prefix[:-1], path
    raise ValueError(f"unknown dataset {name!r}; valid names are: {_valid_names_text()}")


def check_dataset_name(name: str) -> None:
    """Fails early on a dataset name no loader accepts (before any work).

    Only the form is checked (a built-in name, or ``imagefolder:``/``npz:`` with
    a path); whether the files exist is checked when loading.

    Raises:
      ValueError: Quoting the name and listing the valid names and prefixes.
    """
    _parse_name(name)


@dataclasses.dataclass(frozen=True)
class DataConfig(ConfigBase):
    """Which dataset to load and how to split it.

    Attributes:
      name: ``digits``, ``cifar10``, ``cifar100``, ``imagefolder:PATH`` or ``npz:PATH``.
      data_dir: TFDS data directory holding a prepared offline copy (TFDS datasets
        only); with it nothing is downloaded.
      image_size: Resize images to ``image_size`` x ``image_size``; None keeps the
        native size.
      val_fraction: Fraction of the non-test pool used for validation, in (0, 1).
      calib_size: Number of calibration examples drawn from train (>= 1).
      test_fraction: Fraction held out as test when the source has no test split,
        in (0, 1).
      seed: Seed of the val/train permutation and the calib draw (>= 0).
      augment: Random pad-and-crop (and flip where it is label-preserving) while training.
      limit: Keep at most this many examples of each source split (smoke tests).
    """

    name: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    val_fraction: float = 0.1
    calib_size: int = 1000
    test_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    limit: int | None = None

    def __post_init__(self) -> None:
        check_dataset_name(self.name)
        if self.image_size is not None and (isinstance(self.image_size, bool) or self.image_size < 1):
            raise ValueError(f"image_size must be a positive integer or None, got {self.image_size!r}")
        for field in ("val_fraction", "test_fraction"):
            value = getattr(self, field)
            if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
                raise ValueError(f"{field} must be in (0, 1), got {value!r}")
        if isinstance(self.calib_size, bool) or self.calib_size < 1:
            raise ValueError(f"calib_size must be >= 1, got {self.calib_size!r}")
        if isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 1):
            raise ValueError(f"limit must be a positive integer or None, got {self.limit!r}")


@dataclasses.dataclass(frozen=True)
class Augmentation(ConfigBase):
    """Training-time augmentation on uint8 images, before normalization.

    Attributes:
      pad: Zero-pad each side by this many pixels, then randomly crop back to
        the original size (0 disables).
      flip: Random horizontal flip (only for mirror-invariant classes).
    """

    pad: int = 0
    flip: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.pad, bool) or not isinstance(self.pad, (int, np.integer)) or self.pad < 0:
            raise ValueError(f"pad must be a non-negative integer, got {self.pad!r}")

    @property
    def enabled(self) -> bool:
        """Whether this augmentation changes anything."""
        return self.pad > 0 or self.flip


# ----------------------------------------------------------------------------
# The dataset object


@dataclasses.dataclass
class Dataset:
    """A loaded dataset: uint8 NHWC arrays per split plus how to feed them.

    Attributes:
      name: The dataset spec it was loaded from (``DataConfig.name``).
      num_classes: Number of classes; labels are in ``[0, num_classes)``.
      class_names: One name per class id.
      splits: ``{"train"|"val"|"calib"|"test": (uint8 images NHWC, int64 labels)}``.
      preprocessing: The input transform a model trained on this data uses.
      augmentation: Training augmentation (disabled when ``augment=False``).
      info: JSON-able provenance: source, split sizes, split rule, seed.
      indices: Per split, int64 positions in the source order (see module docstring).
    """

    name: str
    num_classes: int
    class_names: list[str]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    preprocessing: Preprocessing
    augmentation: Augmentation
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    indices: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def _split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            return self.splits[split]
        except KeyError:
            raise KeyError(f"unknown split {split!r}; valid splits are: {', '.join(self.splits)}") from None

    def x(self, split: str) -> np.ndarray:
        """uint8 images (N, H, W, C) of one split."""
        return self._split(split)[0]

    def y(self, split: str) -> np.ndarray:
        """int64 labels (N,) of one split."""
        return self._split(split)[1]

    def arrays(self, split: str, preprocessed: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Images and labels of one split.

        Args:
          split: ``train``, ``val``, ``calib`` or ``test``.
          preprocessed: Apply :attr:`preprocessing` (float32 output); False returns
            the raw uint8 images.

        Returns:
          ``(images, int64 labels)``.
        """
        x, y = self._split(split)
        return (self.preprocessing.apply(x) if preprocessed else x), y

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of every image."""
        return self.preprocessing.input_shape

    @property
    def slug(self) -> str:
        """A short file-name-safe name (``cifar10``, ``npz-mydata``, ``imagefolder-flowers``)."""
        kind, path = _parse_name(self.name)
        if path is None:
            return kind
        stem = Path(path.rstrip("/\\")).stem or "data"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
        return f"{kind}-{safe}"

    def tf_dataset(
        self,
        split: str,
        *,
        batch_size: int,
        training: bool | None = None,
        seed: int | None = None,
        shuffle_buffer: int | None = None,
        drop_remainder: bool = False,
    ) -> "tf.data.Dataset":
        """A tf.data pipeline over one split (see :func:`make_tf_dataset`).

        Args:
          split: Which split.
          batch_size: Examples per batch.
          training: Shuffle and augment; defaults to ``split == "train"``.
          seed: Shuffle/augmentation seed; defaults to the dataset's seed.
          shuffle_buffer: Shuffle buffer size; defaults to the whole split.
          drop_remainder: Drop a last partial batch.
        """
        x, y = self._split(split)
        training = split == "train" if training is None else training
        return make_tf_dataset(
            x,
            y,
            self.preprocessing,
            batch_size=batch_size,
            training=training,
            augmentation=self.augmentation if training else None,
            seed=self.info.get("seed", 0) if seed is None else seed,
            shuffle_buffer=shuffle_buffer,
            drop_remainder=drop_remainder,
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-able description for logs and ``results.json``."""
        return {
            "name": self.name,
            "slug": self.slug,
            "source": self.info.get("source"),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape),
            "split_sizes": {k: int(len(v[1])) for k, v in self.splits.items()},
            "official_test_split": self.info.get("official_test_split"),
            "seed": self.info.get("seed"),
            "limit": self.info.get("limit"),
            "split_rule": self.info.get("split_rule", SPLIT_RULE),
            "preprocessing": self.preprocessing.to_dict(),
            "preprocessing_stats": self.info.get("preprocessing_stats"),
            "augmentation": self.augmentation.to_dict(),
        }


# ----------------------------------------------------------------------------
# Array validation


def _check_images(images: Any, where: str) -> np.ndarray:
    """Validates raw images; returns uint8 (N, H, W, C) (adds C=1 to NHW)."""
    if not isinstance(images, np.ndarray):
        raise ValueError(f"{where}: images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        nan = ""
        if np.issubdtype(images.dtype, np.floating) and np.isnan(images).any():
            nan = " and contain NaN"
        raise ValueError(
            f"{where}: images must be uint8 pixels 0..255, got dtype {images.dtype}{nan}; "
            "convert them first, e.g. np.clip(np.round(x * 255), 0, 255).astype(np.uint8) for 0..1 floats"
        )
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"{where}: images must have shape (N, H, W) or (N, H, W, C), got {images.shape}")
    if images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{where}: images must have 1 (grayscale) or 3 (RGB) channels, got shape {images.shape} "
            "(NCHW arrays must be transposed to NHWC)"
        )
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"{where}: images are empty, shape {images.shape}")
    return images


def _check_labels(labels: Any, n: int, where: str) -> np.ndarray:
    """Validates integer class ids; returns int64 (N,) (accepts (N, 1))."""
    if not isinstance(labels, np.ndarray):
        raise ValueError(f"{where}: labels must be a numpy array, got {type(labels).__name__}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{where}: labels must have shape (N,) of class ids, got {labels.shape} (one-hot? use argmax)")
    if labels.dtype == np.bool_ or not (
        np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)
    ):
        raise ValueError(f"{where}: labels must be integer class ids, got dtype {labels.dtype}")
    if np.issubdtype(labels.dtype, np.floating):
        if np.isnan(labels).any():
            raise ValueError(f"{where}: labels contain NaN")
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise ValueError(f"{where}: labels must be whole numbers, got non-integer values")
    if len(labels) != n:
        raise ValueError(f"{where}: {n} images but {len(labels)} labels")
    if n and labels.min() < 0:
        raise ValueError(f"{where}: labels must be >= 0, got minimum {labels.min()}")
    return labels.astype(np.int64)


def _check_label_range(labels: np.ndarray, num_classes: int, where: str) -> None:
    if len(labels) and labels.max() >= num_classes:
        raise ValueError(
            f"{where}: label {int(labels.max())} is out of range for {num_classes} classes (valid ids 0..{num_classes - 1})"
        )


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 NHWC images to size x size with PIL."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    from PIL import Image

    out = np.empty((images.shape[0], size, size, images.shape[3]), dtype=np.uint8)
    for i, img in enumerate(images):
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        arr = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR))
        out[i] = arr.reshape(size, size, images.shape[3])
    return out


# ----------------------------------------------------------------------------
# Sources: each returns a _Source with the source's own splits in source order


@dataclasses.dataclass
class _Source:
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray] | None
    class_names: list[str]
    description: str


def _limit(arrays: tuple[np.ndarray, np.ndarray], limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    if limit is None:
        return arrays
    return arrays[0][:limit], arrays[1][:limit]


def _load_digits(config: DataConfig, path: str | None = None) -> _Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    names = [str(n) for n in bunch.target_names]
    return _Source(
        train=_limit((images, labels), config.limit),
        test=None,
        class_names=names,
        description="sklearn.datasets.load_digits (8x8, values 0..16 -> round(v*255/16))",
    )


def _tfds_unavailable_message(
    name: str, data_dir: str | None, error: BaseException | None, default_dir: str | None = None
) -> str:
    if data_dir:
        where = f"in data_dir {data_dir!r}"
    else:
        location = f" ({default_dir})" if default_dir else ""
        where = f"in the default TFDS location{location}, and downloading it failed"
    cause = ""
    if error is not None:
        text = str(error).strip().splitlines()
        cause = f" ({type(error).__name__}: {text[0][:300] if text else ''})"
    return (
        f"dataset {name!r} is not available {where}{cause}.\n"
        f"To use it offline, prepare a copy on a machine with internet:\n"
        f"    tfds build {name} --data_dir DIR\n"
        f"or  python -c \"import tensorflow_datasets as tfds; tfds.load('{name}', data_dir='DIR')\"\n"
        f"then copy DIR to this machine and pass --data-dir DIR (DataConfig.data_dir). "
        f"Arrays you already have can be used through npz:PATH (see tfq.data.save_npz)."
    )


def _tfds_to_numpy(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for x, y in ds.batch(4096).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        return np.zeros((0, 0, 0, 0), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def _load_tfds(config: DataConfig, path: str | None = None) -> _Source:
    name = config.name
    if config.data_dir is not None and not os.path.isdir(config.data_dir):
        raise DatasetUnavailableError(
            _tfds_unavailable_message(name, config.data_dir, FileNotFoundError(f"no such directory: {config.data_dir}"))
        )
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DatasetUnavailableError(f"tensorflow_datasets cannot be imported ({e}); install tfq's dependencies") from e

    split = [f"{s}[:{config.limit}]" if config.limit else s for s in ("train", "test")]
    kwargs: dict[str, Any] = {"split": split, "as_supervised": True, "with_info": True, "shuffle_files": False}
    if config.data_dir is not None:
        kwargs.update(data_dir=config.data_dir, download=False)
    # Not batch_size=-1: that needs the split sizes from prepared metadata and
    # aborts the process under tfds.testing.mock_data; batching here is equivalent.
    try:
        (train_ds, test_ds), info = tfds.load(name, **kwargs)
        # The split slices already limit; _limit again for loaders that ignore slices (mocks).
        train = _limit(_tfds_to_numpy(train_ds), config.limit)
        test = _limit(_tfds_to_numpy(test_ds), config.limit)
    except Exception as e:  # download/network/missing-copy failures of any kind
        default_dir = getattr(getattr(getattr(tfds, "core", None), "constants", None), "DATA_DIR", None)
        raise DatasetUnavailableError(_tfds_unavailable_message(name, config.data_dir, e, default_dir)) from e
    names = list(info.features["label"].names)
    where = f"tfds:{name}" + (f" (data_dir={config.data_dir})" if config.data_dir else "")
    return _Source(train=train, test=test, class_names=names, description=where)


_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """{class name: sorted image files} for the sub-folders of ``root``."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"imagefolder: {root} has no class sub-folders (expected {root}/<class>/<image files>)")
    out = {}
    for folder in classes:
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(
                f"imagefolder: class folder {folder} holds no images "
                f"(extensions {', '.join(sorted(_IMAGE_EXTENSIONS))})"
            )
        out[folder.name] = files
    return out


def _interleave(by_class: dict[str, list[Path]], class_ids: dict[str, int]) -> list[tuple[Path, int]]:
    """Round-robin over classes: 1st file of each class, then the 2nd, ..."""
    out = []
    longest = max(len(f) for f in by_class.values())
    for i in range(longest):
        for name, files in by_class.items():
            if i < len(files):
                out.append((files[i], class_ids[name]))
    return out


def _read_images(items: list[tuple[Path, int]], mode: str, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    images = []
    for path, _ in items:
        try:
            with Image.open(path) as im:
                im = im.convert(mode)
                if size is not None and im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except OSError as e:
            raise ValueError(f"imagefolder: cannot read image {path}: {e}") from None
        images.append(arr[..., None] if arr.ndim == 2 else arr)
    labels = np.array([label for _, label in items], dtype=np.int64)
    return np.stack(images), labels


def _load_imagefolder(config: DataConfig, path: str | None) -> _Source:
    from PIL import Image

    root = Path(path or "").expanduser()
    if not root.is_dir():
        raise ValueError(f"imagefolder: {root} is not a directory")
    has_train, has_test = (root / "train").is_dir(), (root / "test").is_dir()
    if has_train != has_test:
        found, missing = ("train", "test") if has_train else ("test", "train")
        raise ValueError(
            f"imagefolder: {root} has {found}/ but no {missing}/; give both for official splits, "
            "or put the class folders directly in the dataset folder"
        )
    if has_train:
        train_by_class = _class_folders(root / "train")
        test_by_class = _class_folders(root / "test")
        unknown = sorted(set(test_by_class) - set(train_by_class))
        if unknown:
            raise ValueError(f"imagefolder: test classes {unknown} do not exist in {root / 'train'}")
    else:
        train_by_class, test_by_class = _class_folders(root), None
    class_names = sorted(train_by_class)
    ids = {name: i for i, name in enumerate(class_names)}
    train_items = _interleave(train_by_class, ids)[: config.limit]
    test_items = _interleave(test_by_class, ids)[: config.limit] if test_by_class is not None else []

    modes, sizes = set(), {}
    for p, _ in train_items + test_items:
        try:
            with Image.open(p) as im:
                modes.add(im.mode)
                sizes.setdefault(im.size, p)
        except OSError as e:
            raise ValueError(f"imagefolder: cannot read image {p}: {e}") from None
    mode = "L" if modes <= _GRAYSCALE_MODES else "RGB"
    if config.image_size is None and len(sizes) > 1:
        examples = ", ".join(f"{w}x{h} (e.g. {p})" for (w, h), p in list(sizes.items())[:3])
        raise ValueError(
            f"imagefolder: images in {root} have different sizes ({examples}); "
            "set image_size (--image-size N) to resize them to N x N"
        )
    train = _read_images(train_items, mode, config.image_size)
    test = _read_images(test_items, mode, config.image_size) if test_items else None
    return _Source(train=train, test=test, class_names=class_names, description=f"imagefolder:{root.resolve()}")


def _load_npz(config: DataConfig, path: str | None) -> _Source:
    file = Path(path or "").expanduser()
    if not file.is_file():
        raise ValueError(f"npz: {file} is not a file (write one with tfq.data.save_npz)")
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"npz: cannot read {file}: {e}") from None
    keys = set(arrays)
    if {"images", "labels"} <= keys:
        train_keys, test_keys = ("images", "labels"), None
    elif {"x_train", "y_train"} <= keys:
        train_keys = ("x_train", "y_train")
        has_x, has_y = "x_test" in keys, "y_test" in keys
        if has_x != has_y:
            raise ValueError(f"npz: {file} has only one of x_test/y_test; give both or neither")
        test_keys = ("x_test", "y_test") if has_x else None
    else:
        raise ValueError(
            f"npz: {file} must hold 'images' and 'labels', or 'x_train' and 'y_train' "
            f"(optionally 'x_test', 'y_test', 'class_names'); found keys {sorted(keys)}"
        )

    def split(keys_: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        x = _check_images(arrays[keys_[0]], f"npz {file} [{keys_[0]}]")
        y = _check_labels(arrays[keys_[1]], len(x), f"npz {file} [{keys_[1]}]")
        return _limit((x, y), config.limit)

    train = split(train_keys)
    test = split(test_keys) if test_keys else None
    if test is not None and test[0].shape[1:] != train[0].shape[1:]:
        raise ValueError(f"npz: {file}: x_test images {test[0].shape[1:]} differ from x_train {train[0].shape[1:]}")
    max_label = int(max(train[1].max(initial=0), test[1].max(initial=0) if test else 0))
    if "class_names" in arrays:
        names = [str(c) for c in np.asarray(arrays["class_names"]).ravel()]
        if len(set(names)) != len(names):
            raise ValueError(f"npz: {file}: class_names has duplicates: {names}")
    else:
        names = [str(i) for i in range(max_label + 1)]
    checked = [(train[1], train_keys[1])] + ([(test[1], test_keys[1])] if test is not None and test_keys else [])
    for labels, key in checked:
        _check_label_range(labels, len(names), f"npz {file} [{key}] (class_names has {len(names)} entries)")
    return _Source(train=train, test=test, class_names=names, description=f"npz:{file.resolve()}")


# Loader per source kind: ``_BuiltinSpec.loader`` for built-ins, the prefix otherwise.
_LOADERS: dict[str, Callable[[DataConfig, str | None], _Source]] = {
    "sklearn_digits": _load_digits,
    "tfds": _load_tfds,
    "imagefolder": _load_imagefolder,
    "npz": _load_npz,
}


# ----------------------------------------------------------------------------
# Splitting, statistics and the public loader


def split_indices(
    n_source_train: int, n_source_test: int | None, config: DataConfig
) -> dict[str, np.ndarray]:
    """Applies the split rule (module docstring) to index positions.

    Args:
      n_source_train: Number of examples in the source's train split (or the
        whole source when it has no test split).
      n_source_test: Number of examples in the source's official test split, or
        None when it has none.
      config: Supplies ``val_fraction``, ``test_fraction``, ``calib_size`` and ``seed``.

    Returns:
      ``{"train", "val", "calib", "test"}`` -> int64 positions in source order
      (official test examples are numbered after the train examples).

    Raises:
      ValueError: Too few examples to give every split at least one.
    """
    n = n_source_train
    if n_source_test is not None:
        if n_source_test < 1:
            raise ValueError("the source's test split is empty")
        test = np.arange(n, n + n_source_test, dtype=np.int64)
        n_pool = n
    else:
        n_test = max(1, round(config.test_fraction * n))
        n_pool = n - n_test
        test = np.arange(n_pool, n, dtype=np.int64)
    n_val = max(1, round(config.val_fraction * n_pool))
    if n_pool - n_val < 1:
        raise ValueError(
            f"too few examples to split: {n} source examples leave {max(n_pool, 0)} for train+val "
            f"(need at least 2); raise limit or use a larger dataset"
        )
    rng = np.random.default_rng(config.seed)
    perm = rng.permutation(n_pool).astype(np.int64)
    val, train = perm[:n_val], perm[n_val:]
    calib = train[rng.permutation(len(train))[: min(config.calib_size, len(train))]]
    return {"train": train, "val": val, "calib": calib, "test": test}


def channel_stats(images: np.ndarray, scale: float = 1.0 / 255.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of uint8 NHWC images.

    Sums are accumulated in integers, so the result does not depend on chunking
    or summation order; values are in the scaled space and rounded to 6 decimals.

    Args:
      images: uint8 array (N, H, W, C).
      scale: Factor mapping raw pixels to the normalization space.

    Returns:
      ``(mean, std)``, one float per channel.
    """
    c = images.shape[-1]
    total, total_sq = [0] * c, [0] * c
    count = 0
    chunk = max(1, (1 << 22) // max(1, int(np.prod(images.shape[1:]))))
    for start in range(0, len(images), chunk):
        block = images[start : start + chunk].reshape(-1, c).astype(np.uint64)
        count += block.shape[0]
        s, sq = block.sum(axis=0), (block * block).sum(axis=0)
        for k in range(c):
            total[k] += int(s[k])
            total_sq[k] += int(sq[k])
    if count == 0:
        raise ValueError("cannot compute statistics of an empty image array")
    mean = tuple(round(scale * t / count, 6) for t in total)
    std = tuple(
        round(scale * math.sqrt((count * tq - t * t) / (count * count)), 6) for t, tq in zip(total, total_sq)
    )
    return mean, std


def default_augmentation(kind: str, image_shape: tuple[int, int, int]) -> Augmentation:
    """The training augmentation for a source kind and image shape.

    Pad = max(1, height // 8) pixels (4 for 32x32 CIFAR, 1 for 8x8 digits) with
    a random crop back to size. Flip for CIFAR and for 3-channel imagefolder/npz
    data; never for digits or other grayscale data (digits are not mirror-invariant).
    """
    pad = max(1, image_shape[0] // _PAD_DIVISOR)
    spec = BUILTIN_DATASETS.get(kind)
    flip = spec.flip if spec is not None else image_shape[2] == 3
    return Augmentation(pad=pad, flip=flip)


def load_dataset(config: DataConfig) -> Dataset:
    """Loads a dataset, applies the split rule and derives its preprocessing.

    Args:
      config: Which dataset and how to split it.

    Returns:
      The :class:`Dataset` with ``train``, ``val``, ``calib`` and ``test`` splits.

    Raises:
      ValueError: Unknown name, unreadable or invalid arrays/images, too few examples.
      DatasetUnavailableError: A TFDS dataset is not prepared offline and cannot
        be downloaded.
    """
    kind, path = _parse_name(config.name)
    spec = BUILTIN_DATASETS.get(kind)
    source = _LOADERS[spec.loader if spec is not None else kind](config, path)
    where = config.name
    train_x = _check_images(source.train[0], f"{where} train")
    train_y = _check_labels(source.train[1], len(train_x), f"{where} train")
    _check_label_range(train_y, len(source.class_names), f"{where} train")
    test = None
    if source.test is not None:
        test_x = _check_images(source.test[0], f"{where} test")
        test_y = _check_labels(source.test[1], len(test_x), f"{where} test")
        _check_label_range(test_y, len(source.class_names), f"{where} test")
        test = (test_x, test_y)
    native_shape = tuple(int(v) for v in train_x.shape[1:])
    if config.image_size is not None:
        train_x = _resize(train_x, config.image_size)
        if test is not None:
            test = (_resize(test[0], config.image_size), test[1])

    idx = split_indices(len(train_x), None if test is None else len(test[0]), config)
    n_train_src = len(train_x)
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in ("train", "val", "calib"):
        splits[name] = (train_x[idx[name]], train_y[idx[name]])
    if test is None:
        splits["test"] = (train_x[idx["test"]], train_y[idx["test"]])
    else:
        splits["test"] = (test[0][idx["test"] - n_train_src], test[1][idx["test"] - n_train_src])

    image_shape = tuple(int(v) for v in splits["train"][0].shape[1:])
    if spec is not None and spec.mean is not None and spec.std is not None:
        mean, std = spec.mean, spec.std
        stats = f"published {kind} training-set constants"
    else:
        mean, std = channel_stats(splits["train"][0])
        stats = "computed per channel on the train split"
        if any(s == 0 for s in std):
            log.warning("a channel of %s is constant on the train split; using std 1.0 for it", config.name)
            std = tuple(s if s > 0 else 1.0 for s in std)
    preprocessing = Preprocessing(image_size=image_shape[:2], channels=image_shape[2], mean=mean, std=std)
    augmentation = default_augmentation(kind, image_shape) if config.augment else Augmentation(pad=0, flip=False)

    test_classes = set(np.unique(splits["test"][1]).tolist())
    missing = sorted(set(np.unique(splits["train"][1]).tolist()) - test_classes)
    if missing:
        log.warning("test split of %s has no examples of classes %s", config.name, missing)

    info = {
        "source": source.description,
        "official_test_split": test is not None,
        "source_sizes": {"train": n_train_src, "test": None if test is None else len(test[0])},
        "split_sizes": {k: int(len(v[1])) for k, v in splits.items()},
        "split_rule": SPLIT_RULE,
        "index_space": INDEX_SPACE,
        "seed": config.seed,
        "val_fraction": config.val_fraction,
        "test_fraction": None if test is not None else config.test_fraction,
        "calib_size": config.calib_size,
        "limit": config.limit,
        "native_image_shape": list(native_shape),
        "image_shape": list(image_shape),
        "preprocessing_stats": stats,
        "calib_from": "train (disjoint from val and test)",
    }
    dataset = Dataset(
        name=config.name,
        num_classes=len(source.class_names),
        class_names=list(source.class_names),
        splits=splits,
        preprocessing=preprocessing,
        augmentation=augmentation,
        info=info,
        indices=idx,
    )
    log.info("loaded %s: %s, image shape %s", config.name, info["split_sizes"], image_shape)
    return dataset


def save_npz(
    path: str | os.PathLike,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    compress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Writes arrays as an ``.npz`` that ``npz:PATH`` loads (atomically).

    Without a test split the file holds ``images``/``labels``; with one it holds
    ``x_train``/``y_train``/``x_test``/``y_test``.

    Args:
      path: Output file (written exactly as given; use a ``.npz`` suffix).
      images: uint8 (N, H, W) or (N, H, W, C) training images, C in {1, 3}.
      labels: Integer class ids, shape (N,) or (N, 1).
      x_test: Optional official test images.
      y_test: Labels of ``x_test``.
      class_names: Optional names, one per class id.
      compress: Use ``np.savez_compressed`` (smaller, slower).
      overwrite: Replace an existing file instead of raising.

    Returns:
      The path written.

    Raises:
      ValueError: Invalid arrays (same checks as loading).
      FileExistsError: The file exists and ``overwrite`` is False.
    """
    from tfq.rundir import atomic_write_bytes

    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    x = _check_images(images, "save_npz images")
    y = _check_labels(labels, len(x), "save_npz labels")
    if (x_test is None) != (y_test is None):
        raise ValueError("save_npz: give both x_test and y_test, or neither")
    arrays: dict[str, np.ndarray]
    if x_test is None:
        arrays = {"images": x, "labels": y}
    else:
        xt = _check_images(x_test, "save_npz x_test")
        yt = _check_labels(y_test, len(xt), "save_npz y_test")
        if xt.shape[1:] != x.shape[1:]:
            raise ValueError(f"save_npz: x_test images {xt.shape[1:]} differ from train images {x.shape[1:]}")
        arrays = {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt}
    if class_names is not None:
        names = [str(c) for c in class_names]
        for key in ("labels", "y_train", "y_test"):
            if key in arrays:
                _check_label_range(arrays[key], len(names), f"save_npz {key} (class_names has {len(names)} entries)")
        arrays["class_names"] = np.array(names, dtype=str)
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buffer, **arrays)
    atomic_write_bytes(target, buffer.getvalue())
    return target


# ----------------------------------------------------------------------------
# tf.data pipelines


def make_tf_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    preprocessing: Preprocessing,
    *,
    batch_size: int,
    training: bool,
    augmentation: Augmentation | None = None,
    seed: int = 0,
    shuffle_buffer: int | None = None,
    drop_remainder: bool = False,
) -> "tf.data.Dataset":
    """A deterministic tf.data pipeline of (float32 preprocessed images, int64 labels).

    Training: shuffle (seeded, reshuffled every epoch) -> augmentation on uint8
    images (zero-pad ``pad`` pixels per side, random crop back to size, optional
    horizontal flip; stateless ops whose seeds come from a seeded random stream
    that changes every epoch) -> batch -> normalize -> prefetch. Otherwise:
    batch -> normalize -> prefetch, in order, without augmentation.
    Normalization computes exactly :meth:`Preprocessing.apply` in float32.

    Args:
      images: uint8 (N, H, W, C) matching ``preprocessing``.
      labels: Integer class ids (N,).
      preprocessing: The input transform.
      batch_size: Examples per batch.
      training: Shuffle and augment.
      augmentation: Augmentation used when training (None = none).
      seed: Seed of the shuffle order and the augmentation stream.
      shuffle_buffer: Shuffle buffer size; None shuffles the whole array.
      drop_remainder: Drop a last partial batch.

    Returns:
      A ``tf.data.Dataset`` with ``Options.deterministic = True``.
    """
    preprocessing.check_images(images)
    labels = _check_labels(labels, len(images), "make_tf_dataset labels")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if shuffle_buffer is not None and shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be a positive integer or None, got {shuffle_buffer!r}")
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    height, width, channels = preprocessing.input_shape
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if training:
        ds = ds.shuffle(shuffle_buffer or max(1, len(images)), seed=seed, reshuffle_each_iteration=True)
        if augmentation is not None and augmentation.enabled:
            pad, flip = int(augmentation.pad), bool(augmentation.flip)

            def augment(example: Any, rng_seed: Any) -> Any:
                x, y = example
                crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(rng_seed, 2))
                if pad:
                    x = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]])
                    x = tf.image.stateless_random_crop(x, (height, width, channels), seed=crop_seed)
                if flip:
                    x = tf.image.stateless_random_flip_left_right(x, seed=flip_seed)
                return x, y

            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip((ds, seeds)).map(augment, num_parallel_calls=autotune)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    mean = tf.constant(preprocessing.mean, dtype=tf.float32)
    std = tf.constant(preprocessing.std, dtype=tf.float32)
    scale = tf.constant(preprocessing.scale, dtype=tf.float32)

    def normalize(x: Any, y: Any) -> Any:
        return (tf.cast(x, tf.float32) * scale - mean) / std, y

    ds = ds.map(normalize, num_parallel_calls=autotune).prefetch(autotune)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


# ----------------------------------------------------------------------------
# Command line: load a dataset and print its summary


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses ``python -m tfq.data`` arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m tfq.data", description="Load a dataset with tfq's split rule and print its summary as JSON."
    )
    group = parser.add_argument_group("dataset (defaults -> --config FILE -> these flags -> --set)")
    group.add_argument("--config", help="YAML/JSON file with DataConfig fields")
    group.add_argument("--name", help=f"dataset: {_valid_names_text()}")
    group.add_argument("--data-dir", help="TFDS data directory with a prepared offline copy")
    group.add_argument("--image-size", type=int, help="resize images to N x N")
    group.add_argument("--limit", type=int, help="use at most N examples of each source split")
    group.add_argument("--seed", type=int)
    group.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any DataConfig field")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    """Loads the dataset and prints ``Dataset.summary()``; returns 0, or 1 on failure."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        config = DataConfig.from_dict(load_mapping(args.config)) if args.config else DataConfig()
        flags = {"name": args.name, "data_dir": args.data_dir, "image_size": args.image_size,
                 "limit": args.limit, "seed": args.seed}  # fmt: skip
        config = config.replace(**{k: v for k, v in flags.items() if v is not None})
        config = config.with_overrides(parse_set_args(args.set))
        with contextlib.redirect_stdout(sys.stderr):  # TFDS prints progress; stdout is the JSON
            dataset = load_dataset(config)
    except (DatasetUnavailableError, ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"config": config.to_dict(), "dataset": dataset.summary()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
