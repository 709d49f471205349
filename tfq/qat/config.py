"""The QAT configuration: typed, frozen, TensorFlow-free.

A :class:`QATConfig` says *how* fake quantization is inserted (weight and
activation quantizers, layers kept float) and *how* the model is fine-tuned
(epochs, learning rate, BatchNorm and range freezing, range initialization).
It follows :mod:`tfq.configs`: dataclass defaults -> ``--config FILE`` ->
command-line overrides, validated in ``__post_init__`` and written into the
run directory as ``config.json``.

Example ``configs/qat/resnet18_cifar10.yaml``::

    weights: {granularity: per_channel}
    activations: {symmetric: false}
    keep_float: []
    epochs: 10
    freeze_bn_after: 6
    freeze_ranges_after: 8
    init_from_ptq: true
    calibration_method: minmax

Named presets (:data:`PRESETS`) cover the usual choices: ``int8_per_channel``
(the default), ``int8_per_tensor``, ``int8_symmetric_activations`` and
``mixed_int8_fp16`` (first convolution and classifier kept float).
"""

from __future__ import annotations

import dataclasses
import enum
import re

from tfq.configs import ConfigBase, ConfigError

__all__ = [
    "ActivationQuant",
    "CalibrationMethodName",
    "Distillation",
    "Granularity",
    "PRESETS",
    "QATConfig",
    "WeightQuant",
    "preset",
]


class Granularity(str, enum.Enum):
    """How many scales a weight tensor gets."""

    PER_CHANNEL = "per_channel"  # one scale per output channel (Conv2D, DepthwiseConv2D)
    PER_TENSOR = "per_tensor"  # one scale for the whole kernel


class CalibrationMethodName(str, enum.Enum):
    """Calibration methods of :mod:`tfq.calibration` used to initialize ranges."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    KL = "kl"
    MSE = "mse"


@dataclasses.dataclass(frozen=True)
class WeightQuant(ConfigBase):
    """How weights are fake-quantized (always 8 bits, always symmetric).

    Attributes:
      granularity: ``per_channel`` (default) or ``per_tensor`` for Conv2D and
        DepthwiseConv2D kernels. Dense kernels are always per-tensor, as in
        TFMOT's default scheme and TFLite's ``FULLY_CONNECTED`` default.
      symmetric: Must stay True: TFLite's INT8 kernels require weight zero
        points of 0. The field exists so a config file can state it.
      narrow_range: Use ``[-127, 127]`` (True, the TFLite INT8 spec) instead of
        ``[-128, 127]``.
    """

    granularity: Granularity = Granularity.PER_CHANNEL
    symmetric: bool = True
    narrow_range: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.granularity, Granularity):
            object.__setattr__(self, "granularity", _enum(Granularity, self.granularity, "weights.granularity"))
        if not self.symmetric:
            raise ConfigError(
                "weights.symmetric: got False, but TFLite INT8 kernels require symmetric weights "
                "(zero point 0); use activations.symmetric to choose the activation scheme"
            )


@dataclasses.dataclass(frozen=True)
class ActivationQuant(ConfigBase):
    """How activations are fake-quantized (8 bits, per tensor).

    Attributes:
      symmetric: False (default) gives asymmetric ranges: a post-ReLU range
        ``[0, max]`` uses all 256 levels (zero point -128). True gives zero
        point 0 everywhere (some accelerators want it), at the cost of half the
        levels of every non-negative tensor.
    """

    symmetric: bool = False


@dataclasses.dataclass(frozen=True)
class Distillation(ConfigBase):
    """Knowledge distillation from the FP32 baseline (the teacher) during QAT.

    The loss is ``(1 - weight) * CE(labels, student) + weight * T**2 *
    KL(softmax(teacher / T) || softmax(student / T))`` (Hinton et al. 2015; the
    ``T**2`` keeps the soft term's gradient scale independent of ``T``).

    Attributes:
      enabled: Distill (False keeps the plain label loss).
      temperature: Softening temperature ``T`` (> 0).
      weight: Share of the soft (teacher) term, in ``[0, 1]``.
    """

    enabled: bool = False
    temperature: float = 4.0
    weight: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not self.temperature > 0:
            raise ConfigError(f"distill.temperature: must be > 0, got {self.temperature!r}")
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not 0 <= self.weight <= 1:
            raise ConfigError(f"distill.weight: must be in [0, 1], got {self.weight!r}")


@dataclasses.dataclass(frozen=True)
class QATConfig(ConfigBase):
    """Everything that defines one QAT run.

    Attributes:
      weights: Weight quantization.
      activations: Activation quantization.
      distill: Distillation from the FP32 baseline (off by default).
      keep_float: Regular expressions matched against whole layer names
        (``re.fullmatch``); matching layers are not quantized and keep FP16
        weights in the ``.tflite``. A Conv2D/DepthwiseConv2D/Dense pulls its
        BatchNormalization and ReLU along (TFLite fuses them).
      epochs: Fine-tuning epochs (>= 1).
      lr: Peak learning rate; None uses 1/100 of the baseline's.
      warmup_epochs: Linear warm-up before the cosine decay.
      batch_size: None uses the baseline's.
      steps_per_epoch: Cap on steps per epoch (smoke tests); None is a full pass.
      freeze_bn_after: Stop updating BatchNorm statistics (fold with the moving
        statistics) from this epoch on (0-based count of finished epochs);
        None never freezes.
      freeze_ranges_after: Stop updating activation ranges from this epoch on;
        None never freezes.
      init_from_ptq: Initialize activation ranges from the PTQ calibration
        (a PTQ run's recorded ranges when one exists, else a calibration pass
        on the calib split with ``calibration_method``) instead of starting cold.
      calibration_method: Calibration method for range initialization.
      calibration_samples: Calibration images used when calibrating here.
      ptq_run: A PTQ run directory to take ranges from; None searches ``runs/``.
      momentum: SGD momentum.
      weight_decay: L2 weight decay; None uses the baseline's.
      seed: Seeds Python, NumPy, TensorFlow and data shuffling.
      agreement_samples: Test images used to check Keras vs ``.tflite`` agreement.
      min_agreement: The conversion fails below this top-1 agreement.
      max_logit_steps: The conversion fails when a logit differs by more than
        this many output quantization steps.
    """

    weights: WeightQuant = WeightQuant()
    activations: ActivationQuant = ActivationQuant()
    distill: Distillation = Distillation()
    keep_float: tuple[str, ...] = ()
    epochs: int = 10
    lr: float | None = None
    warmup_epochs: float = 0.0
    batch_size: int | None = None
    steps_per_epoch: int | None = None
    freeze_bn_after: int | None = None
    freeze_ranges_after: int | None = None
    init_from_ptq: bool = True
    calibration_method: CalibrationMethodName = CalibrationMethodName.MINMAX
    calibration_samples: int = 512
    ptq_run: str | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    seed: int = 0
    agreement_samples: int = 512
    min_agreement: float = 0.99
    max_logit_steps: float = 3.0

    def __post_init__(self) -> None:
        if not isinstance(self.calibration_method, CalibrationMethodName):
            object.__setattr__(
                self, "calibration_method",
                _enum(CalibrationMethodName, self.calibration_method, "calibration_method"),
            )
        if isinstance(self.keep_float, str):
            raise ConfigError(f"keep_float: expected a list of regular expressions, got {self.keep_float!r}")
        object.__setattr__(self, "keep_float", tuple(self.keep_float))
        for pattern in self.keep_float:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"keep_float: invalid regular expression {pattern!r}: {e}") from None
        _check_int(self.epochs, "epochs", 1)
        _check_int(self.calibration_samples, "calibration_samples", 1)
        _check_int(self.agreement_samples, "agreement_samples", 1)
        _check_int(self.seed, "seed", 0)
        for name in ("batch_size", "steps_per_epoch"):
            if getattr(self, name) is not None:
                _check_int(getattr(self, name), name, 1)
        for name in ("freeze_bn_after", "freeze_ranges_after"):
            value = getattr(self, name)
            if value is not None:
                _check_int(value, name, 0)
                if value > self.epochs:
                    raise ConfigError(f"{name}: {value} is after the last epoch ({self.epochs}); use null to never freeze")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr: must be > 0 (or null for baseline lr / 100), got {self.lr!r}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError(f"weight_decay: must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum: must be in [0, 1), got {self.momentum!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"warmup_epochs: must be in [0, epochs={self.epochs}), got {self.warmup_epochs!r}")
        if not 0 < self.min_agreement <= 1:
            raise ConfigError(f"min_agreement: must be in (0, 1], got {self.min_agreement!r}")
        if not self.max_logit_steps > 0:
            raise ConfigError(f"max_logit_steps: must be > 0, got {self.max_logit_steps!r}")

    #: Fields that only decide how the result is checked; a run may be resumed
    #: with other values.
    CHECK_FIELDS = ("agreement_samples", "min_agreement", "max_logit_steps")

    def training_identity(self) -> dict:
        """The config without :attr:`CHECK_FIELDS` (what a resumed run must match)."""
        data = self.to_dict()
        for name in self.CHECK_FIELDS:
            data.pop(name, None)
        return data

    @property
    def per_channel(self) -> bool:
        """True for per-channel Conv2D/DepthwiseConv2D weights."""
        return self.weights.granularity is Granularity.PER_CHANNEL


def _enum(cls: type[enum.Enum], value: object, where: str) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in cls)
        raise ConfigError(f"{where}: got {value!r}; valid choices are {valid}") from None


def _check_int(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}: must be an integer >= {low}, got {value!r}")


PRESETS: dict[str, QATConfig] = {
    "int8_per_channel": QATConfig(),
    "int8_per_tensor": QATConfig(weights=WeightQuant(granularity=Granularity.PER_TENSOR)),
    "int8_symmetric_activations": QATConfig(activations=ActivationQuant(symmetric=True)),
    "mixed_int8_fp16": QATConfig(keep_float=("stem_conv", "logits")),
}


def preset(name: str) -> QATConfig:
    """Returns a named preset.

    Raises:
      ConfigError: Unknown name (the message lists the presets).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown QAT preset {name!r}; presets are: {', '.join(sorted(PRESETS))}") from None
