"""Typed, frozen configuration objects and their JSON/YAML form.

Every stage's configuration is a frozen dataclass deriving from
:class:`ConfigBase`, with ``str`` enums for choices. Values are resolved in one
documented order::

    dataclass defaults  ->  --config FILE (YAML or JSON)  ->  command-line overrides

and the resolved object is validated (in ``__post_init__``), then written into
the run directory as ``config.json`` beside the artifact it produced.

``from_dict`` rejects unknown keys, naming the key and the valid ones, so a
typo in a config file fails before any work starts. Nested dataclasses and
enums are converted both ways.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import types
import typing
from typing import Any, Mapping, TypeVar

T = TypeVar("T", bound="ConfigBase")


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Converts a plain JSON/YAML value to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except (ConfigError, TypeError, ValueError) as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} does not fit {tp} ({'; '.join(errors)})")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except ValueError:
            valid = ", ".join(repr(m.value) for m in tp)
            raise ConfigError(f"{where}: got {value!r}; valid choices are {valid}") from None
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return tp.from_dict(value, _where=where)
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        seq = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) and not (
            isinstance(value, float) and value.is_integer()
        ):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _to_plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


@dataclasses.dataclass(frozen=True)
class ConfigBase:
    """Mixin for frozen dataclass configs: dict/JSON/YAML round trips and overrides."""

    def to_dict(self) -> dict[str, Any]:
        """Returns a plain dict (enums as their values, tuples as lists)."""
        return _to_plain(self)

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any], _where: str = "") -> T:
        """Builds a config from a plain mapping.

        Args:
          data: Keys are field names; nested configs are nested mappings.

        Returns:
          The validated config.

        Raises:
          ConfigError: On an unknown key (naming the valid keys) or a value of the
            wrong type or outside its choices.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"{_where or cls.__name__}: expected a mapping, got {data!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            prefix = f"{_where}." if _where else ""
            raise ConfigError(
                f"unknown key {', '.join(prefix + k for k in unknown)} in {cls.__name__}; "
                f"valid keys are: {', '.join(sorted(fields))}"
            )
        kwargs = {}
        for name, value in data.items():
            where = f"{_where}.{name}" if _where else name
            kwargs[name] = _convert(value, hints[name], where)
        try:
            return cls(**kwargs)
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{_where or cls.__name__}: {e}") from None

    def replace(self: T, **changes: Any) -> T:
        """Returns a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_overrides(self: T, overrides: Mapping[str, Any]) -> T:
        """Applies dotted-key overrides (``{"optimizer.lr": 0.1}``) and validates.

        Values may be strings from the command line; they are parsed as YAML
        scalars/lists (``"0.1"`` -> 0.1, ``"[1,2]"`` -> [1, 2]) before conversion.
        """
        data = self.to_dict()
        for key, raw in overrides.items():
            value = parse_scalar(raw) if isinstance(raw, str) else raw
            node = data
            parts = key.split(".")
            for i, part in enumerate(parts[:-1]):
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"unknown key {'.'.join(parts[: i + 1])!r} in override {key}")
                node = node[part]
            node[parts[-1]] = value
        return type(self).from_dict(data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def load(cls: type[T], path: str | os.PathLike) -> T:
        """Loads a YAML or JSON file written by hand or by :meth:`to_json`."""
        return cls.from_dict(load_mapping(path))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top; nested mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_scalar(text: str) -> Any:
    """Parses one command-line value the way YAML would (numbers, bools, lists)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a YAML (``.yaml``/``.yml``) or JSON file holding one mapping.

    Raises:
      FileNotFoundError: The file does not exist.
      ConfigError: The file does not parse or does not hold a mapping.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml.YAMLError / json.JSONDecodeError
        raise ConfigError(f"cannot parse config file {path}: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def parse_set_args(items: list[str] | None) -> dict[str, str]:
    """Parses ``--set key=value`` items from the command line."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out
