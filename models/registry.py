"""A name registry of model builders and the one entry point that builds them.

Each architecture module registers its builders under a name
(``@register("smallcnn")`` or ``register("resnet18", builder)``);
:func:`build_model` checks the arguments once, in :class:`BuildOptions`, and
calls the builder. Builders are called as ``builder(name, options)`` and
return a functional ``tf_keras.Model`` named ``name`` whose last layer,
``logits``, is a ``Dense`` layer without softmax.

This module imports no TensorFlow, so ``models.available_models()`` is cheap.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tf_keras as keras

__all__ = [
    "Builder",
    "BuildOptions",
    "Stem",
    "available_models",
    "build_model",
    "get_builder",
    "register",
]


class Stem(str, Enum):
    """The first layers of a network, chosen by input resolution.

    ``CIFAR`` keeps the input resolution (3x3 convolution, stride 1) for small
    images; ``IMAGENET`` downsamples early (stride 2, plus a max-pool for
    ResNets) for large ones. Each architecture documents what it does.
    """

    CIFAR = "cifar"
    IMAGENET = "imagenet"


@dataclass(frozen=True)
class BuildOptions:
    """The validated arguments every builder receives.

    Attributes:
        input_shape: ``(height, width, channels)``, three positive ints.
        num_classes: Number of logits, positive.
        width_multiplier: Scales channel counts; must be positive.
        stem: A :class:`Stem` or its string value.
        dropout: Dropout rate before the logits, in ``[0, 1)``; 0 adds no layer.
        seed: Seed for weight initializers and dropout, or ``None``.
    """

    input_shape: tuple[int, int, int] = (32, 32, 3)
    num_classes: int = 10
    width_multiplier: float = 1.0
    stem: Stem = Stem.CIFAR
    dropout: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        shape = self.input_shape
        if (
            not isinstance(shape, (tuple, list))
            or len(shape) != 3
            or not all(_is_int(d) and d > 0 for d in shape)
        ):
            raise ValueError(
                f"input_shape must be 3 positive ints (height, width, channels), got {shape!r}"
            )
        if not _is_int(self.num_classes) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")
        width = self.width_multiplier
        if not _is_number(width) or not math.isfinite(width) or width <= 0:
            raise ValueError(f"width_multiplier must be a positive number, got {width!r}")
        try:
            object.__setattr__(self, "stem", Stem(self.stem))
        except ValueError:
            valid = ", ".join(repr(s.value) for s in Stem)
            raise ValueError(f"stem must be one of {valid}, got {self.stem!r}") from None
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise ValueError(f"seed must be None or a non-negative int, got {self.seed!r}")
        # Plain Python types from here on (numpy scalars and lists are accepted above).
        object.__setattr__(self, "input_shape", tuple(int(d) for d in shape))
        object.__setattr__(self, "num_classes", int(self.num_classes))
        object.__setattr__(self, "width_multiplier", float(width))
        object.__setattr__(self, "dropout", float(self.dropout))
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))


Builder = Callable[[str, BuildOptions], "keras.Model"]

_BUILDERS: dict[str, Builder] = {}


def register(name: str, builder: Builder | None = None) -> Any:
    """Registers a model builder under ``name``.

    Usable as a decorator (``@register("smallcnn")``) or as a call
    (``register("resnet18", builder)``).

    Args:
        name: The registry name, also the name of the built model.
        builder: A callable ``builder(name, options) -> tf_keras.Model``; when
            omitted, a decorator that registers the function it wraps is returned.

    Returns:
        ``builder`` itself, or a decorator when ``builder`` is omitted.

    Raises:
        ValueError: If ``name`` is empty or already registered.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorator(fn: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"model name {name!r} is already registered")
        _BUILDERS[name] = fn
        return fn

    return decorator if builder is None else decorator(builder)


def available_models() -> list[str]:
    """Returns the registered model names, sorted."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> Builder:
    """Returns the builder registered under ``name``.

    Raises:
        ValueError: If ``name`` is not registered; the message lists valid names.
    """
    try:
        return _BUILDERS[name]
    except (KeyError, TypeError):
        valid = ", ".join(available_models())
        raise ValueError(f"unknown model name {name!r}; valid names: {valid}") from None


def build_model(
    name: str,
    *,
    input_shape: tuple[int, int, int] = (32, 32, 3),
    num_classes: int = 10,
    width_multiplier: float = 1.0,
    stem: Stem | str = Stem.CIFAR,
    dropout: float = 0.0,
    seed: int | None = None,
) -> keras.Model:
    """Builds a registered model with freshly initialized weights.

    Args:
        name: A name from :func:`available_models`.
        input_shape: ``(height, width, channels)`` of one example.
        num_classes: Number of logits.
        width_multiplier: Scales channel counts (rounded to multiples of 8).
        stem: ``"cifar"`` for small inputs or ``"imagenet"`` for large ones.
        dropout: Dropout rate before the logits layer; 0 adds no dropout layer.
        seed: Makes weight initialization reproducible without touching global
            random state; ``None`` draws fresh weights.

    Returns:
        A functional ``tf_keras.Model`` named ``name`` that outputs logits.

    Raises:
        ValueError: On an unknown name or an invalid argument.
    """
    builder = get_builder(name)
    options = BuildOptions(
        input_shape=input_shape,
        num_classes=num_classes,
        width_multiplier=width_multiplier,
        stem=stem,
        dropout=dropout,
        seed=seed,
    )
    return builder(name, options)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
