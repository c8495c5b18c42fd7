"""The backends' settings as flags, grouped in ``--help``, from their config classes.

Model settings are not declared one by one: :func:`config_options` turns the fields of
the config dataclasses (:mod:`arenajudge.config`) into flags, with their help, type,
range and default, grouped under the heading the config class names (``cli_title``). A
command receives the settings the user *gave* (not the defaults), so a config file's
value survives unless a flag overrides it. The registry says which backends exist, so a
new backend's flags, heading and "flag of another backend" errors need no CLI edit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from arenajudge.cli.options import GIVEN_SOURCES, FiniteFloat
from arenajudge.config import field_help, field_types, flag_of, flags_of
from arenajudge.errors import ConfigError
from arenajudge.models.contract import LoadsWithOptions
from arenajudge.models.registry import BACKENDS, TRAINABLE, model_class

_METAVARS = {
    "base": "MODEL",
    "encoder": "MODEL",
    "checkpoint_dir": "DIR",
    "lora_targets": "NAMES",
    "tta": "MODE",
}


class GroupedOption(click.Option):
    """An option listed under its ``group`` heading in ``--help``."""

    def __init__(self, *args: Any, group: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group


class GroupedCommand(click.Command):
    """A command whose ``--help`` lists grouped options under their own headings."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and isinstance(param, click.Option):
                sections.setdefault(getattr(param, "group", None) or "Options", []).append(record)
        for title, records in sections.items():
            with formatter.section(title):
                formatter.write_dl(records)


def _click_type(config_cls: type, name: str) -> dict[str, Any]:
    spec = {f.name: f for f in fields(config_cls)}[name]
    kind, _ = field_types(config_cls)[name]
    choices, allowed = spec.metadata.get("choices"), spec.metadata.get("range")
    if kind is bool:
        return {"is_flag": True}
    if choices:
        return {"type": click.Choice(choices)}
    if kind in (int, float) and allowed is not None:
        number = click.IntRange if kind is int else FiniteFloat
        return {
            "type": number(
                allowed.low, allowed.high, min_open=allowed.low_open, max_open=allowed.high_open
            ),
            "metavar": "N" if kind is int else "FLOAT",
        }
    if kind is float:
        return {"type": FiniteFloat(), "metavar": "FLOAT"}
    return {"type": click.INT if kind is int else click.STRING, "metavar": _METAVARS.get(name)}


def _settings_option(config_cls: type, name: str, group: str | None) -> Callable:
    spec = {f.name: f for f in fields(config_cls)}[name]
    flag = spec.metadata.get("flag") or flag_of(name)
    kwargs = _click_type(config_cls, name)
    if kwargs.pop("is_flag", False):
        flag = f"{flag}/--no-{flag[2:]}"
    return click.option(
        flag,
        name,
        cls=GroupedOption,
        group=group,
        default=spec.default,
        show_default=spec.default is not None,
        help=field_help(config_cls, name, allowed=False),
        **{k: v for k, v in kwargs.items() if v is not None},
    )


def config_options(groups: dict[str, type], exclude: tuple[str, ...] = ()) -> Callable:
    """Flags for every field of each config class, under the heading that maps to it.

    A field several classes share (``seed``) is one flag listed with the general options.
    The command receives ``settings``: ``{field: value}`` of the flags given on the
    command line, nothing for flags left at their defaults.
    """
    owners: dict[str, list[type]] = {}
    for config_cls in groups.values():
        for spec in fields(config_cls):
            if spec.name not in exclude:
                owners.setdefault(spec.name, []).append(config_cls)
    heading = {cls: title for title, cls in groups.items()}

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            values = {name: kwargs.pop(name) for name in owners}
            given = {
                name: value
                for name, value in values.items()
                if ctx.get_parameter_source(name) in GIVEN_SOURCES
            }
            return command(*args, settings=given, **kwargs)

        for name, classes in reversed(owners.items()):
            group = heading[classes[0]] if len(classes) == 1 else None
            wrapper = _settings_option(classes[0], name, group)(wrapper)
        return wrapper

    return decorate


def _settings_parts(config_class: type) -> list[type]:
    """The config classes a backend's settings are made of, each with its own
    ``cli_title`` (TransformerConfig: NetworkConfig, then TrainingConfig)."""
    return [part for part in reversed(config_class.__mro__) if "cli_title" in vars(part)]


def backend_settings_groups() -> dict[str, type]:
    """``{heading: config class}`` of the flags of every trainable backend, each heading
    naming the backends its flags apply to, as the backends' config classes say."""
    users: dict[type, list[str]] = {}
    for backend in TRAINABLE:
        for part in _settings_parts(model_class(backend).config_class):
            users.setdefault(part, []).append(backend)
    return {
        f"{vars(part)['cli_title']} (--backend {'|'.join(names)})": part
        for part, names in users.items()
    }


def check_backend_flags(backend: str, settings: dict[str, Any]) -> None:
    """ConfigError naming the backends that flags given for ``backend`` apply to, when
    ``backend``'s config class has no such fields."""
    owned = {spec.name for spec in fields(model_class(backend).config_class)}
    foreign = [name for name in settings if name not in owned]
    if foreign:
        applies = [
            other
            for other in TRAINABLE
            if other != backend
            and {spec.name for spec in fields(model_class(other).config_class)} & set(foreign)
        ]
        raise ConfigError(f"{flags_of(foreign)} apply to --backend {'|'.join(applies)} only")


def _predict_settings_groups() -> dict[str, type]:
    """``{heading: options class}`` of the prediction-time flags of saved models, from
    the backends' ``predict_options_class``."""
    users: dict[type, list[str]] = {}
    for backend in BACKENDS:
        cls = model_class(backend)
        if isinstance(cls, LoadsWithOptions):
            users.setdefault(cls.predict_options_class, []).append(backend)
    return {
        f"{vars(cls)['cli_title']} ({'|'.join(names)} models; default: as trained)": cls
        for cls, names in users.items()
    }


predict_settings = config_options(_predict_settings_groups())
"""The prediction-time flags of ``predict``, ``evaluate`` and ``serve``."""
