"""One way to build every typed config: from YAML/TOML files, CLI flags and manifests.

A config is a frozen dataclass whose fields are made with :func:`option`: a default, a
help string, and the allowed range or choices. :func:`config_from_mapping` coerces
values to each field's type (``"1e-3"`` is a float, ``2.0`` an int, ``2.5`` is not),
checks every range and choice from that one table, and names the key, the value and
what is allowed on error. :func:`resolve_config` layers them: an explicit flag beats
the file, the file beats the default.
"""

from __future__ import annotations

import math
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from arenajudge.errors import ConfigError

if TYPE_CHECKING:  # typeshed's name for "an instance of a dataclass"; no runtime module
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")
"""Spellings of a boolean in a config file (YAML 1.1's, any case); see :func:`_parse_yaml`."""


@dataclass(frozen=True)
class Range:
    """Allowed numeric interval; ``None`` ends are open to infinity."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        return (
            f"{'(' if self.low_open or self.low is None else '['}{low}, {high}"
            f"{')' if self.high_open or self.high is None else ']'}"
        )


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[str, ...] | None = None,
    flag: str | None = None,
) -> Any:
    """A config field: its default, its help text and what values it allows.

    ``low``/``high`` bound numbers (``*_open`` excludes the end); ``choices`` lists the
    allowed strings; ``flag`` overrides the CLI flag name (default ``--field-name``).
    """
    metadata: dict[str, Any] = {
        "help": help,
        "choices": choices,
        "flag": flag,
        "range": (
            Range(low, high, low_open, high_open) if low is not None or high is not None else None
        ),
    }
    return field(default=default, metadata=metadata)


def flags_of(names: Iterable[str]) -> str:
    """``--flag-a, --flag-b``: the CLI flags of config fields ``names`` (``field_name``
    is ``--field-name``), as errors about given flags name them."""
    return ", ".join(flag_of(name) for name in names)


def flag_of(name: str) -> str:
    """The CLI flag of the config field ``name``: ``--field-name``."""
    return "--" + name.replace("_", "-")


def field_help(config_cls: type, name: str, allowed: bool = True) -> str:
    """The help text of field ``name``, with its range or choices unless not ``allowed``."""
    spec = {f.name: f for f in fields(config_cls)}[name]
    if not allowed:
        return spec.metadata.get("help", "")
    values = spec.metadata.get("range") or (
        "|".join(spec.metadata["choices"]) if spec.metadata.get("choices") else None
    )
    return spec.metadata.get("help", "") + (f"  Allowed: {values}." if values else "")


def _base_type(hint: Any) -> tuple[type, bool]:
    """(int, float, bool or str; whether None is allowed) of a field's type hint."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(hint))
    return hint, False


def field_types(config_cls: type) -> dict[str, tuple[type, bool]]:
    """Each field's (base type, optional) of a config dataclass."""
    hints = typing.get_type_hints(config_cls, vars(sys.modules[config_cls.__module__]))
    return {f.name: _base_type(hints[f.name]) for f in fields(config_cls)}


def _describe(value: Any) -> str:
    return "null" if value is None else repr(value)


def _coerce(value: Any, kind: type) -> Any:
    """``value`` as ``kind``, or ValueError saying what was expected."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise ValueError("expected true or false")
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError("expected a string")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}")
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"expected {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    if kind is int:
        if isinstance(number, float) and not number.is_integer():
            raise ValueError("expected an integer")
        return int(number)
    return float(number)


def _check_field(spec: Any, value: Any, where: str) -> None:
    allowed_range, choices = spec.metadata.get("range"), spec.metadata.get("choices")
    if value is None:
        return
    if allowed_range is not None and value not in allowed_range:
        raise ConfigError(f"{where}{spec.name}={value!r} is out of range; allowed: {allowed_range}")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}{spec.name}={value!r} is not one of {', '.join(choices)}")


def check_config(config: Any, source: str | None = None) -> None:
    """Check every field of a config instance against its range and choices, then the
    config's own cross-field ``check()`` if it has one."""
    where = f"{source}: " if source else ""
    for spec in fields(config):
        _check_field(spec, getattr(config, spec.name), where)
    if hasattr(config, "check"):
        config.check()


def config_from_mapping(
    config_cls: type[C], values: Mapping[str, Any], *, source: str = "config", base: C | None = None
) -> C:
    """A ``config_cls`` from ``values`` (a config file, flags or a manifest), on top of
    ``base`` (default: the class defaults). Unknown keys, uncoercible values and
    out-of-range values are :class:`ConfigError` naming ``source``, the key and the
    value."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: must hold a mapping of setting: value")
    types_ = field_types(config_cls)
    unknown = sorted(set(map(str, values)) - set(types_))
    if unknown:
        raise ConfigError(
            f"{source}: unknown config key(s) {', '.join(unknown)}; known "
            f"keys: {', '.join(sorted(types_))}"
        )
    current = {
        f.name: getattr(base, f.name)
        if base is not None
        else (f.default if f.default is not MISSING else None)
        for f in fields(config_cls)
    }
    for key, value in values.items():
        kind, optional = types_[key]
        if value is None and not optional:
            raise ConfigError(f"{source}: {key}: expected {kind.__name__}, got null")
        try:
            current[key] = None if value is None else _coerce(value, kind)
        except ValueError as exc:
            raise ConfigError(f"{source}: {key}: {exc}, got {_describe(value)}") from None
    config = config_cls(**current)
    check_config(config, source)
    return config


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML (``.yaml``/``.yml``/``.json``) or TOML (``.toml``) file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigError(
            f"has extension {suffix or '(none)'!r}; a config file is {', '.join(CONFIG_SUFFIXES)}",
            file=path,
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot be read ({exc})", file=path) from None
    try:
        values = _parse_toml(text) if suffix == ".toml" else _parse_yaml(text)
    except RecursionError:
        raise ConfigError("is nested too deeply to be a config file", file=path) from None
    except ValueError as exc:
        raise ConfigError(
            f"is not valid {'TOML' if suffix == '.toml' else 'YAML'} "
            f"({str(exc).strip().splitlines()[0]})",
            file=path,
        ) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError("must hold a mapping of setting: value", file=path)
    return values


def _parse_yaml(text: str) -> Any:
    import yaml

    class WordsLoader(yaml.SafeLoader):
        """YAML 1.1 reads ``off``, ``yes``, ``on`` (and ``true``) as booleans, so
        ``model_style: off`` would arrive as False, and the word is lost. Keep every
        boolean spelling as the string written: a word-valued field gets its word, and
        :func:`_coerce` turns the same spellings into booleans for boolean fields."""

    WordsLoader.add_constructor(
        "tag:yaml.org,2002:bool", lambda loader, node: loader.construct_scalar(node)
    )
    try:
        return yaml.load(text, Loader=WordsLoader)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def _parse_toml(text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def resolve_config(
    config_cls: type[C],
    config_path: str | Path | None,
    flags: Mapping[str, Any],
    base: C | None = None,
) -> C:
    """``base`` (default: the class defaults), then the file at ``config_path``, then the
    explicitly given ``flags``."""
    file_values = read_config_file(config_path) if config_path else {}
    from_file = config_from_mapping(
        config_cls, file_values, base=base, source=str(config_path or "config")
    )
    return config_from_mapping(config_cls, flags, source="command line", base=from_file)
