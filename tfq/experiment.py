"""Config-driven experiments: a stage graph run into one directory, with caching and resume.

An experiment names the stages to run (``train``, ``ptq``, ``qat``,
``sensitivity``, ``mixed``, ``bench``) and one section per stage. The command
``python -m pipelines.experiment --config configs/experiments/tiny.yaml`` runs
them in dependency order into one experiment directory::

    runs/<name>-<YYYYmmdd-HHMMSS>/
      run.json            kind "experiment", status, command
      experiment.json     the resolved ExperimentConfig
      stages.json         per unit: content hash, status, sub-run dir, times, command
      environment.json    TensorFlow/LiteRT versions, CPU model, cores
      history.jsonl       one line per invocation
      configs/<unit>.json the config file handed to each stage's CLI
      train/ ptq/ ...     each stage's own run directory (``--out <exp>/<stage>``)
      report/             report.md, report.html and the plots

Units, hashes and caching
-------------------------
Each stage is one *unit*; a training stage run with ``repeats: N`` (and
``repeat_training: true``) adds the replicas ``train.rep1`` ... with seeds
``seed + 1`` ... (the same for ``qat``). A unit's *hash* is the SHA-256 of its
resolved stage config and the *output digests* of the units it reads (a digest
hashes every file of a finished run directory except ``run.json``, ``backup/``
and ``tensorboard/``). So:

* a unit whose hash matches its ``stages.json`` record, whose record is
  complete and whose directory still has the recorded digest is **reused**;
* a unit whose config changed, or whose inputs were recomputed with different
  output, is **recomputed**; its old directory is moved aside to
  ``<unit>.old-<YYYYmmdd-HHMMSS>`` first (never overwritten). Downstream units
  follow automatically because their input digests change;
* a unit that was interrupted (record ``running``/``interrupted``/``failed``
  with the same hash) is **resumed**: training continues from its own backup,
  every other stage restarts in the same directory;
* a stage config's check-only fields (QAT's ``min_agreement``,
  ``max_logit_steps``, ``agreement_samples``: what
  ``QATConfig.training_identity()`` leaves out) are not part of the hash:
  changing only them **re-checks** the unit in place (a finished or failed
  QAT run converts and checks again without training again);
* ``--rerun STAGE`` forces a recomputation of that stage's units.

Validation
----------
Every section is validated before any work starts, by the stage's own config
class (``tfq.train.TrainConfig``, ``tfq.qat.config.QATConfig``,
``tfq.sensitivity.SensitivityConfig``, ``tfq.mixed.MixedConfig``,
``tfq.ptq.PTQConfig``): an unknown key or value raises :class:`ConfigError`
naming the key and the valid choices.

This module holds the config, the graph and the bookkeeping. The functions
that drive each stage's CLI (the *adapters*) live in ``pipelines.experiment``;
``tfq`` never imports ``pipelines`` or ``edge``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tfq.configs import ConfigBase, ConfigError
from tfq.rundir import MANIFEST, RunDir, RunDirError, find_runs, read_json, timestamp, write_json

log = logging.getLogger(__name__)

__all__ = [
    "BenchSection",
    "Experiment",
    "ExperimentConfig",
    "GRAPH",
    "PTQSection",
    "STAGE_ORDER",
    "Stage",
    "StageContext",
    "StageError",
    "StageSpec",
    "Target",
    "Unit",
    "dir_digest",
    "find_experiment",
    "unit_hash",
]

STAGES_FILE = "stages.json"
CONFIG_FILE = "experiment.json"
ENVIRONMENT_FILE = "environment.json"
HISTORY_FILE = "history.jsonl"
KIND = "experiment"

#: ``run.json`` statuses that count as a finished stage. ``budget_not_met``:
#: pipelines.mixed wrote its best plan but no plan met the budget; the report
#: shows it, marked.
FINISHED_STATUSES = ("complete", "budget_not_met")

#: Files and folders a digest leaves out: the manifest holds timestamps and
#: status; backups and TensorBoard logs are training-time scratch.
DIGEST_SKIP_FILES = frozenset({MANIFEST})
DIGEST_SKIP_DIRS = frozenset({"backup", "tensorboard", "__pycache__"})


class StageError(RuntimeError):
    """A stage failed; the message names it and the command that reproduces it."""


# --------------------------------------------------------------------------- the graph


class Stage(str, enum.Enum):
    """The stages an experiment can run."""

    TRAIN = "train"
    PTQ = "ptq"
    QAT = "qat"
    SENSITIVITY = "sensitivity"
    MIXED = "mixed"
    BENCH = "bench"


class Target(str, enum.Enum):
    """Benchmark targets of ``edge.bench`` (kept equal to ``edge.bench.TARGETS`` by a test)."""

    CPU = "cpu"
    GPU = "gpu"
    EDGETPU = "edgetpu"
    ANDROID = "android"


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One row of the stage graph.

    Attributes:
      cli: The module whose ``parse_args``/``main`` runs the stage.
      requires: Stages whose output this one needs (``train`` may be replaced
        by an existing ``baseline`` run directory).
      uses: Stages whose output this one reads when they are in the experiment.
      needs_one_of: At least one of these must be in the experiment.
      seeded: ``repeats`` repeats this stage with other seeds.
      config_class: ``module:Class`` validating the stage's section.
    """

    cli: str
    requires: tuple[Stage, ...] = ()
    uses: tuple[Stage, ...] = ()
    needs_one_of: tuple[Stage, ...] = ()
    seeded: bool = False
    config_class: str | None = None


#: The stage graph: one row per stage (data, not code).
GRAPH: dict[Stage, StageSpec] = {
    Stage.TRAIN: StageSpec("pipelines.train", seeded=True, config_class="tfq.train:TrainConfig"),
    Stage.PTQ: StageSpec("pipelines.ptq", requires=(Stage.TRAIN,), config_class="tfq.ptq:PTQConfig"),
    Stage.SENSITIVITY: StageSpec(
        "pipelines.sensitivity", requires=(Stage.TRAIN,), config_class="tfq.sensitivity:SensitivityConfig"
    ),
    Stage.QAT: StageSpec(
        "pipelines.qat", requires=(Stage.TRAIN,), uses=(Stage.PTQ,), seeded=True,
        config_class="tfq.qat.config:QATConfig",
    ),
    Stage.MIXED: StageSpec(
        "pipelines.mixed", requires=(Stage.TRAIN,), uses=(Stage.SENSITIVITY,), config_class="tfq.mixed:MixedConfig"
    ),
    Stage.BENCH: StageSpec(
        "edge.bench", uses=(Stage.PTQ, Stage.QAT, Stage.MIXED), needs_one_of=(Stage.PTQ, Stage.QAT, Stage.MIXED)
    ),
}

#: Execution order of primary units (every stage after the ones it reads).
STAGE_ORDER: tuple[Stage, ...] = (
    Stage.TRAIN, Stage.PTQ, Stage.SENSITIVITY, Stage.QAT, Stage.MIXED, Stage.BENCH,
)


def _import_class(spec: str) -> type:
    """Imports ``module:Class``; raises ImportError when the stage is not available."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def stage_available(stage: Stage) -> bool:
    """True when the stage's CLI module can be imported in this checkout."""
    try:
        importlib.import_module(GRAPH[stage].cli)
    except ImportError:
        return False
    return True


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- sections


def _choices(values: Sequence[Any], enum_cls: type[enum.Enum] | None, where: str) -> tuple[str, ...]:
    """Validates a list of choices against an enum (when importable); no duplicates."""
    if isinstance(values, str):
        raise ConfigError(f"{where}: expected a list, got {values!r}")
    out = []
    for i, v in enumerate(values):
        v = v.value if isinstance(v, enum.Enum) else v
        if enum_cls is not None:
            try:
                v = enum_cls(v).value
            except ValueError:
                valid = ", ".join(repr(m.value) for m in enum_cls)
                raise ConfigError(f"{where}[{i}]: got {v!r}; valid choices are {valid}") from None
        out.append(str(v))
    if len(set(out)) != len(out):
        raise ConfigError(f"{where}: lists a value twice: {out}")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class PTQSection(ConfigBase):
    """The ``ptq:`` section: which modes and calibration methods, and the common recipe.

    Attributes:
      modes: Conversion modes (``tfq.ptq.Mode``: fp32, dynamic, fp16, int8, int16x8).
      calibration: Calibration methods for calibrated modes
        (``tfq.calibration.CalibrationMethod``: minmax, percentile, kl, mse).
      options: Keys of :class:`tfq.ptq.PTQConfig` shared by every mode
        (``granularity``, ``io``, ``calib_samples``, ``calibration.percentile``...);
        ``mode`` and ``calibration.method`` come from the lists above.
      test_samples: Evaluate on the first N test images (None: all).
      int16x8_test_samples: Evaluate INT16x8 models on the first N of those
        only (their reference kernels are slow; None: all).
      latency_runs: The PTQ stage's own latency runs per thread count (0 skips
        them; the bench stage measures latency for the report).
      warmup: Untimed runs before the stage's own timing.
      threads: Thread counts the stage times (empty: 1 and all cores).
    """

    modes: tuple[str, ...] = ("fp32", "dynamic", "fp16", "int8")
    calibration: tuple[str, ...] = ("minmax",)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    test_samples: int | None = None
    int16x8_test_samples: int | None = None
    latency_runs: int = 0
    warmup: int = 10
    threads: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        try:
            from tfq.calibration import CalibrationMethod
            from tfq.ptq import Mode
        except ImportError:  # the PTQ stage is not in this checkout; checked when listed
            Mode = CalibrationMethod = None  # noqa: N806
        object.__setattr__(self, "modes", _choices(self.modes, Mode, "ptq.modes"))
        object.__setattr__(self, "calibration", _choices(self.calibration, CalibrationMethod, "ptq.calibration"))
        if not self.modes:
            raise ConfigError("ptq.modes must name at least one mode")
        if not self.calibration:
            raise ConfigError("ptq.calibration must name at least one method")
        for key in ("test_samples", "int16x8_test_samples"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"ptq.{key} must be >= 1 or null, got {getattr(self, key)}")
        if self.latency_runs < 0 or self.warmup < 0 or any(t < 1 for t in self.threads):
            raise ConfigError("ptq: latency_runs and warmup must be >= 0 and threads >= 1")
        if "mode" in self.options:
            raise ConfigError("ptq.options.mode: set the modes with ptq.modes (a list)")
        if isinstance(self.options.get("calibration"), Mapping) and "method" in self.options["calibration"]:
            raise ConfigError("ptq.options.calibration.method: set the methods with ptq.calibration (a list)")

    def recipes(self) -> list[Any]:
        """The :class:`tfq.ptq.PTQConfig` of every mode x method (validates ``options``).

        Raises:
          ConfigError: An unknown key or value in ``options`` (named).
          ImportError: ``tfq.ptq`` is not available.
        """
        from tfq.calibration import CalibrationMethod
        from tfq.ptq import Mode, PTQConfig, configs_for

        base = PTQConfig.from_dict(self.options, _where="ptq.options")
        return configs_for(base, [Mode(m) for m in self.modes], [CalibrationMethod(c) for c in self.calibration])


@dataclasses.dataclass(frozen=True)
class BenchSection(ConfigBase):
    """The ``bench:`` section: ``edge.bench`` on every ``.tflite`` the experiment produced.

    Attributes:
      targets: Where to measure (cpu, gpu, edgetpu, android).
      threads: Interpreter thread counts; each is measured separately.
      runs: Timed invocations per measurement (at least).
      warmup: Untimed invocations first.
      min_seconds: Keep timing for at least this long.
      include: Regular expressions searched in ``<stage>/<file>.tflite``; only
        matching models are measured (empty: all).
      allow_fallback: Run on the CPU when a delegate is missing (marked).
      extra_args: More ``edge.bench`` arguments, verbatim (e.g. ``[--serial, X]``
        for android); checked by ``edge.bench``'s parser before any work.
      timeout: Seconds per model before giving up.
    """

    targets: tuple[Target, ...] = (Target.CPU,)
    threads: tuple[int, ...] = (1,)
    runs: int = 50
    warmup: int = 5
    min_seconds: float = 0.0
    include: tuple[str, ...] = ()
    allow_fallback: bool = False
    extra_args: tuple[str, ...] = ()
    timeout: float = 1800.0

    def __post_init__(self) -> None:
        if not self.targets:
            raise ConfigError("bench.targets must name at least one target")
        if not self.threads or any(t < 1 for t in self.threads):
            raise ConfigError(f"bench.threads must be positive integers, got {list(self.threads)}")
        if len(set(self.threads)) != len(self.threads) or len(set(self.targets)) != len(self.targets):
            raise ConfigError("bench.targets and bench.threads must not repeat a value")
        if self.runs < 1 or self.warmup < 0 or self.min_seconds < 0 or self.timeout <= 0:
            raise ConfigError(
                f"bench: runs must be >= 1, warmup >= 0, min_seconds >= 0, timeout > 0 "
                f"(got {self.runs}, {self.warmup}, {self.min_seconds}, {self.timeout})"
            )
        for p in self.include:
            try:
                re.compile(p)
            except re.error as e:
                raise ConfigError(f"bench.include: invalid regular expression {p!r}: {e}") from None


# --------------------------------------------------------------------------- the config


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(ConfigBase):
    """Everything that defines one experiment.

    Attributes:
      name: Base name of the experiment directory (default ``<model>-<dataset>``).
      model: A registered model name or a path to a ``.keras`` file.
      dataset: ``cifar10``, ``digits``, ``npz:PATH`` ... (``tfq.data``).
      data_dir: TFDS data directory of a prepared offline copy.
      stages: Stages to run, any order (they run in dependency order).
      baseline: An existing complete training run directory, used instead of
        the ``train`` stage when ``train`` is not listed.
      seed: Default seed of every stage section that has a ``seed`` and does
        not set it; replica ``k`` of a seeded stage uses ``seed + k``.
      repeats: Repeat every latency measurement this many times and, with
        ``repeat_training``, every training stage (train, qat) with other seeds.
      repeat_training: Also repeat training stages (off: latency only).
      train: :class:`tfq.train.TrainConfig` keys over the defaults for the
        model and dataset (``model.name``/``data.name`` come from the top level).
      ptq: :class:`PTQSection`.
      qat: :class:`tfq.qat.config.QATConfig` keys.
      sensitivity: :class:`tfq.sensitivity.SensitivityConfig` keys.
      mixed: :class:`tfq.mixed.MixedConfig` keys (e.g. ``budget: {max_drop: 1.0}``).
      bench: :class:`BenchSection`.
    """

    name: str | None = None
    model: str = "smallcnn"
    dataset: str = "digits"
    data_dir: str | None = None
    stages: tuple[Stage, ...] = (Stage.TRAIN, Stage.PTQ, Stage.BENCH)
    baseline: str | None = None
    seed: int = 0
    repeats: int = 1
    repeat_training: bool = True
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    ptq: PTQSection = dataclasses.field(default_factory=PTQSection)
    qat: dict[str, Any] = dataclasses.field(default_factory=dict)
    sensitivity: dict[str, Any] = dataclasses.field(default_factory=dict)
    mixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    bench: BenchSection = dataclasses.field(default_factory=BenchSection)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(Stage(s) for s in self.stages))
        if not self.stages:
            raise ConfigError(f"stages must name at least one stage; valid choices are {[s.value for s in Stage]}")
        if len(set(self.stages)) != len(self.stages):
            raise ConfigError(f"stages lists a stage twice: {[s.value for s in self.stages]}")
        if self.name is not None and not _NAME_RE.match(self.name):
            raise ConfigError(f"name: {self.name!r} must be letters, digits, '.', '_' or '-'")
        if isinstance(self.repeats, bool) or self.repeats < 1:
            raise ConfigError(f"repeats must be an integer >= 1, got {self.repeats!r}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        self._check_graph()
        self._check_model_name()
        for stage in Stage:
            self._validate_section(stage)

    # -- validation --------------------------------------------------------
    def _check_graph(self) -> None:
        listed = set(self.stages)
        for stage in self.stages:
            spec = GRAPH[stage]
            for need in spec.requires:
                if need in listed or (need is Stage.TRAIN and self.baseline):
                    continue
                hint = " or set baseline: RUN_DIR (a finished training run)" if need is Stage.TRAIN else ""
                raise ConfigError(f"stage {stage.value!r} needs {need.value!r} in stages{hint}")
            if spec.needs_one_of and not listed.intersection(spec.needs_one_of):
                raise ConfigError(
                    f"stage {stage.value!r} needs one of {[s.value for s in spec.needs_one_of]} in stages"
                )
        if self.baseline and Stage.TRAIN in listed:
            raise ConfigError("give either the train stage or baseline: RUN_DIR, not both")

    def _check_model_name(self) -> None:
        import models
        from tfq.data import check_dataset_name

        try:
            check_dataset_name(self.dataset)
        except ValueError as e:
            raise ConfigError(f"dataset: {e}") from None

        if not models.is_model_path(self.model) and self.model not in models.available_models():
            raise ConfigError(
                f"model: unknown model {self.model!r}; valid choices are {', '.join(models.available_models())} "
                "(or a path to a .keras file or SavedModel directory)"
            )

    def _section_is_set(self, stage: Stage) -> bool:
        value = getattr(self, stage.value)
        default = {f.name: f for f in dataclasses.fields(self)}[stage.value]
        empty = default.default_factory() if default.default_factory is not dataclasses.MISSING else default.default
        return value != empty

    def _validate_section(self, stage: Stage) -> None:
        """Builds the stage's config from its section; missing stage modules fail only when listed."""
        listed = stage in self.stages
        if not listed and not self._section_is_set(stage):
            return
        try:
            self.stage_config(stage)
        except ImportError as e:
            if listed:
                raise ConfigError(
                    f"stage {stage.value!r} is listed in stages but is not available in this checkout ({e}); "
                    f"remove it from stages"
                ) from None
            log.debug("not validating the %s section: %s", stage.value, e)

    # -- resolved stage configs ---------------------------------------------
    @property
    def run_name(self) -> str:
        """Base name of the experiment directory."""
        if self.name:
            return self.name
        from tfq.train import run_name

        return run_name(self.model, self.dataset)

    def replicas(self, stage: Stage) -> int:
        """How many times ``stage`` runs (``repeats`` for seeded stages, else 1)."""
        return self.repeats if GRAPH[stage].seeded and self.repeat_training else 1

    def _seeded(self, cls: type, section: Mapping[str, Any], replica: int) -> dict[str, Any]:
        data = dict(section)
        if "seed" in {f.name for f in dataclasses.fields(cls)}:
            data["seed"] = int(data.get("seed", self.seed)) + replica
        return data

    def train_config(self, replica: int = 0):
        """The resolved :class:`tfq.train.TrainConfig` of one training replica."""
        from tfq.train import TrainConfig, default_train_config

        section = dict(self.train)
        for key, top, sub in (("model", self.model, "name"), ("data", self.dataset, "name")):
            given = section.get(key, {})
            if isinstance(given, Mapping) and sub in given and given[sub] != top:
                raise ConfigError(
                    f"train.{key}.{sub}: {given[sub]!r} differs from the top-level "
                    f"{'model' if key == 'model' else 'dataset'} {top!r}; set it at the top level only"
                )
        base = default_train_config(self.model, self.dataset).to_dict()
        data = _deep_merge(base, self._seeded(TrainConfig, section, replica))
        data["model"]["name"] = self.model
        data["data"]["name"] = self.dataset
        if self.data_dir is not None:
            data["data"]["data_dir"] = self.data_dir
        return TrainConfig.from_dict(data, _where="train")

    def stage_config(self, stage: Stage, replica: int = 0) -> ConfigBase:
        """The validated config object of ``stage`` (replica ``replica``).

        Raises:
          ConfigError: Unknown keys or values (named, with the valid choices).
          ImportError: The stage's config module is not in this checkout.
        """
        if stage is Stage.TRAIN:
            return self.train_config(replica)
        if stage is Stage.PTQ:
            self.ptq.recipes()  # validates options against PTQConfig
            return self.ptq
        if stage is Stage.BENCH:
            return self.bench
        cls = _import_class(GRAPH[stage].config_class)
        cfg = cls.from_dict(self._seeded(cls, getattr(self, stage.value), replica), _where=stage.value)
        if stage is Stage.MIXED and getattr(cfg, "budget", None) is None:
            raise ConfigError("mixed.budget: give at least one of max_drop, max_latency_ms, max_size_mb "
                              "(the experiment searches for a plan within it)")
        return cfg

    # -- units ---------------------------------------------------------------
    def units(self) -> list["Unit"]:
        """Every unit to run, in execution order: primaries first, extra seeds last."""
        listed = [s for s in STAGE_ORDER if s in self.stages]
        units = [Unit(s.value, s, 0) for s in listed]
        for s in listed:
            units.extend(Unit(f"{s.value}.rep{k}", s, k) for k in range(1, self.replicas(s)))
        return units


@dataclasses.dataclass(frozen=True)
class Unit:
    """One run of one stage: ``train`` (replica 0) or ``train.rep1`` ..."""

    name: str
    stage: Stage
    replica: int = 0

    @property
    def primary(self) -> bool:
        return self.replica == 0


# --------------------------------------------------------------------------- hashing


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def unit_hash(unit: Unit, config_payload: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """SHA-256 of a unit's resolved config and its inputs' output digests.

    Paths to the experiment directory are not part of it, so a moved
    experiment keeps its cache.
    """
    import tfq

    payload = {
        "stage": unit.stage.value,
        "replica": unit.replica,
        "config": config_payload,
        "inputs": dict(sorted(inputs.items())),
        "tfq": tfq.__version__,
    }
    return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


def dir_digest(path: str | os.PathLike) -> str:
    """SHA-256 over the relative path and content of every file of a run directory.

    ``run.json`` (timestamps, status), ``backup/``, ``tensorboard/`` and hidden
    temporary files are left out.
    """
    root = Path(path)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in DIGEST_SKIP_DIRS and not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root)
        for name in sorted(filenames):
            if name.startswith(".") or (rel_dir == Path(".") and name in DIGEST_SKIP_FILES):
                continue
            file = Path(dirpath) / name
            h.update(str(rel_dir / name).encode("utf-8") + b"\0")
            fh = hashlib.sha256()
            with open(file, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    fh.update(block)
            h.update(fh.digest())
    return h.hexdigest()


# --------------------------------------------------------------------------- running


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


@dataclasses.dataclass
class StageContext:
    """What an adapter needs to run one unit.

    Attributes:
      config: The experiment config.
      unit: The unit to run.
      exp_dir: The experiment directory.
      out: The unit's run directory (``--out`` of the stage CLI).
      inputs: Run directories of the stages it reads (``train`` may be an
        external baseline).
      stage_config: The resolved stage config object.
      resume: ``out`` holds an unfinished run of this unit with the same hash:
        resume it (training) or restart it in place (``--overwrite``).
    """

    config: ExperimentConfig
    unit: Unit
    exp_dir: Path
    out: Path
    inputs: dict[Stage, Path]
    stage_config: Any
    resume: bool = False
    _on_command: Callable[[list[str]], None] | None = None

    def write_config_file(self, mapping: Mapping[str, Any]) -> Path:
        """Writes the mapping handed to a stage's ``--config`` (``configs/<unit>.json``)."""
        path = self.exp_dir / "configs" / f"{self.unit.name}.json"
        write_json(path, mapping)
        return path

    def record_command(self, module: str, argv: Sequence[str]) -> None:
        """Appends ``python -m <module> <argv>`` to the unit's exact commands (before running it)."""
        if self._on_command is not None:
            self._on_command(["python", "-m", module, *[str(a) for a in argv]])


Adapter = Callable[[StageContext], None]


@dataclasses.dataclass
class UnitOutcome:
    """What happened to one unit in this invocation."""

    unit: Unit
    action: str  # "reused", "computed", "resumed"
    seconds: float = 0.0


class Experiment:
    """Runs the units of an experiment config into one directory, with caching.

    Args:
      config: The validated config.
      path: The experiment directory (created if needed).
      adapters: One function per stage that runs it (see ``pipelines.experiment``).
      rerun: Stages to recompute even when cached.
      command: The command line of this invocation (recorded).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        path: str | os.PathLike,
        adapters: Mapping[Stage, Adapter],
        *,
        rerun: Iterable[Stage] = (),
        command: Sequence[str] | None = None,
    ):
        self.config = config
        self.path = Path(path)
        self.adapters = dict(adapters)
        self.rerun = set(rerun)
        self.command = list(command) if command else None
        missing = [s.value for s in config.stages if s not in self.adapters]
        if missing:
            raise ConfigError(f"no adapter for stage(s) {', '.join(missing)}")

    # -- state -----------------------------------------------------------------
    @property
    def stages_path(self) -> Path:
        return self.path / STAGES_FILE

    def records(self) -> dict[str, dict[str, Any]]:
        """``stages.json``'s unit records (empty for a new experiment)."""
        if not self.stages_path.is_file():
            return {}
        return dict(read_json(self.stages_path).get("units", {}))

    def _save(self, records: Mapping[str, Any]) -> None:
        write_json(self.stages_path, {"version": 1, "units": dict(records)})

    def open(self) -> RunDir:
        """Creates or reopens the experiment directory and writes the resolved config."""
        meta = {"name": self.config.run_name, "model": self.config.model, "dataset": self.config.dataset}
        if self.path.exists() and any(self.path.iterdir()):
            run = RunDir.open(self.path)
            kind = run.manifest().get("kind")
            if kind != KIND:
                raise RunDirError(f"{self.path} is a {kind!r} run, not an experiment; choose another --out")
            run.update_manifest(status="running", resumed=_now(), **meta)
        else:
            run = RunDir.create(kind=KIND, out=self.path, meta=meta)
        if self.command:
            run.update_manifest(command=self.command)
        previous = run.read_json(CONFIG_FILE) if run.exists(CONFIG_FILE) else None
        if previous is not None and previous != self.config.to_dict():
            log.info("the experiment config changed since the last invocation; changed stages are recomputed")
        run.write_json(CONFIG_FILE, self.config.to_dict())
        from tfq.reporting.environment import capture_environment

        run.write_json(ENVIRONMENT_FILE, capture_environment())
        return run

    # -- the loop --------------------------------------------------------------
    def _inputs(self, unit: Unit, records: Mapping[str, Any]) -> tuple[dict[Stage, Path], dict[str, str]]:
        """Run directories and digests of the units ``unit`` reads."""
        spec = GRAPH[unit.stage]
        dirs: dict[Stage, Path] = {}
        digests: dict[str, str] = {}
        for stage in (*spec.requires, *spec.uses):
            if stage is Stage.TRAIN and Stage.TRAIN not in self.config.stages:
                if self.config.baseline:
                    base = Path(self.config.baseline)
                    dirs[stage] = base
                    digests["baseline"] = dir_digest(base)
                continue
            if stage not in self.config.stages:
                continue
            rec = records.get(stage.value)
            if not rec or rec.get("status") not in ("complete", "reused"):
                raise StageError(f"stage {unit.name!r} needs {stage.value!r}, which did not finish")
            dirs[stage] = self.path / rec["dir"]
            digests[stage.value] = rec["digest"]
        return dirs, digests

    def _move_aside(self, out: Path) -> None:
        if not out.exists():
            return
        dest = out.with_name(f"{out.name}.old-{timestamp()}")
        i = 1
        while dest.exists():
            i += 1
            dest = out.with_name(f"{out.name}.old-{timestamp()}-{i}")
        log.info("moving the outdated %s aside to %s", out.name, dest.name)
        shutil.move(str(out), str(dest))

    def check_baseline(self) -> None:
        """Fails before any work when ``baseline`` is not a finished training run of the model."""
        if not self.config.baseline or Stage.TRAIN in self.config.stages:
            return
        path = Path(self.config.baseline)
        try:
            run = RunDir.open(path)
        except RunDirError as e:
            raise ConfigError(f"baseline: {e}") from None
        m = run.manifest()
        if m.get("kind") != "train" or m.get("status") != "complete":
            raise ConfigError(f"baseline: {path} is not a finished training run (kind {m.get('kind')!r}, "
                              f"status {m.get('status')!r})")
        if m.get("model") not in (None, self.config.model):
            raise ConfigError(f"baseline: {path} trained {m.get('model')!r}, but model is {self.config.model!r}")

    def run(self) -> list[UnitOutcome]:
        """Runs (or reuses) every unit in order; returns what happened to each.

        Raises:
          StageError: A stage failed (its record says ``failed``).
          KeyboardInterrupt: Interrupted (the running unit is ``interrupted``;
            the same command resumes it).
        """
        import time

        self.check_baseline()
        exp = self.open()
        records = self.records()
        outcomes: list[UnitOutcome] = []
        for unit in self.config.units():
            inputs, digests = self._inputs(unit, records)
            cfg = self.config.stage_config(unit.stage, unit.replica)
            payload = cfg.to_dict()
            identity = cfg.training_identity() if hasattr(cfg, "training_identity") else payload
            check = {k: v for k, v in payload.items() if k not in identity}
            h = unit_hash(unit, identity, digests)
            rec = records.get(unit.name, {})
            out = self.path / unit.name
            forced = unit.stage in self.rerun
            finished = rec.get("status") in ("complete", "reused") or (
                rec.get("status") == "dropped" and rec.get("dropped_from") in ("complete", "reused")
            )
            cached = (
                not forced
                and rec.get("hash") == h
                and finished
                and out.is_dir()
                and dir_digest(out) == rec.get("digest")
            )
            if cached and rec.get("check", {}) == check:
                rec["status"] = "reused"
                rec.pop("dropped_from", None)
                rec["reused_at"] = _now()
                records[unit.name] = rec
                self._save(records)
                log.info("%s: reused (hash %s)", unit.name, h[:12])
                outcomes.append(UnitOutcome(unit, "reused"))
                continue
            if cached and (out / MANIFEST).is_file():
                # Same work, other check thresholds: the stage checks its finished run again in place.
                log.info("%s: only its check thresholds changed; checking again without recomputing", unit.name)
                RunDir(out).update_manifest(status="interrupted")
                rec["status"] = "interrupted"
            resume = (
                not forced
                and rec.get("hash") == h
                and rec.get("status") in ("running", "interrupted", "failed")
                and (out / MANIFEST).is_file()
            )
            if not resume:
                if rec.get("status") in ("complete", "reused") and rec.get("hash") == h and not forced:
                    log.warning("%s: its directory changed since it finished; recomputing", unit.name)
                self._move_aside(out)
            rec = {
                "stage": unit.stage.value,
                "replica": unit.replica,
                "hash": h,
                "check": check,
                "inputs": digests,
                "dir": unit.name,
                "status": "running",
                "started": _now(),
                "attempts": int(rec.get("attempts", 0)) + 1 if resume else 1,
                "commands": [],
            }
            records[unit.name] = rec

            def on_command(cmd: list[str], rec=rec) -> None:
                rec["commands"].append(cmd)
                self._save(records)

            self._save(records)
            ctx = StageContext(self.config, unit, self.path, out, inputs, cfg, resume, on_command)
            log.info("%s: %s (hash %s)", unit.name, "resuming" if resume else "running", h[:12])
            t0 = time.perf_counter()
            try:
                self.adapters[unit.stage](ctx)
                stage_status = RunDir(out).manifest().get("status") if (out / MANIFEST).is_file() else None
                if stage_status not in FINISHED_STATUSES:
                    raise StageError(f"stage {unit.name!r} returned but {out} is not marked complete "
                                     f"(status {stage_status!r})")
            except KeyboardInterrupt:
                rec.update(status="interrupted", finished=_now())
                self._save(records)
                exp.update_manifest(status="interrupted")
                raise
            except Exception as e:
                rec.update(status="failed", finished=_now(), error=str(e))
                self._save(records)
                exp.update_manifest(status="failed")
                cmd = " ".join(rec["commands"][-1]) if rec["commands"] else ""
                if isinstance(e, StageError):
                    raise
                raise StageError(
                    f"stage {unit.name!r} failed: {e}" + (f"\n  its command: {cmd}" if cmd else "")
                ) from e
            # The stage ran in this process, so its run.json recorded this command line;
            # replace it by the stage's own command, which reproduces the stage alone.
            stage_manifest = {"commands": rec["commands"], "experiment": str(self.path.resolve())}
            if len(rec["commands"]) == 1:
                stage_manifest["command"] = rec["commands"][0]
            RunDir(out).update_manifest(**stage_manifest)
            rec.update(status="complete", stage_status=stage_status, finished=_now(), digest=dir_digest(out),
                       seconds=round(time.perf_counter() - t0, 2))
            rec.pop("error", None)
            self._save(records)
            outcomes.append(UnitOutcome(unit, "resumed" if resume else "computed", rec["seconds"]))
        # Units no longer in the config stay on disk, marked (and reusable if they come back).
        planned = {u.name for u in self.config.units()}
        for name, rec in records.items():
            if name not in planned and rec.get("status") != "dropped":
                rec["dropped_from"] = rec.get("status")
                rec["status"] = "dropped"
        self._save(records)
        exp.append_jsonl(HISTORY_FILE, {
            "time": _now(),
            "command": self.command,
            "units": {o.unit.name: o.action for o in outcomes},
        })
        exp.mark_complete()
        return outcomes


def find_experiment(root: str | os.PathLike, name: str) -> Path | None:
    """The newest experiment directory called ``<name>-<time>`` under ``root`` (any status)."""
    for run in find_runs(root, kind=KIND, complete_only=False, name=name):
        return run.path
    return None
