"""Option types shared by several commands, defined once.

Model settings are not declared here one by one: :func:`config_options` turns the
fields of the config dataclasses (:mod:`arenajudge.config`) into flags, with their help,
type, range and default, grouped under a heading in ``--help``. A command receives the
settings the user *gave* (not the defaults), so a config file's value survives unless a
flag overrides it.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click
import pandas as pd
from click.core import ParameterSource

from arenajudge.config import field_help, field_types
from arenajudge.data.readers import parse_columns_option
from arenajudge.data.tables import FORMATS
from arenajudge.errors import ArenaJudgeError, ConfigError
from arenajudge.models.contract import LoadsWithOptions
from arenajudge.models.registry import BACKENDS, TRAINABLE, model_class

MAX_SEED = 2**31 - 1
_METAVARS = {
    "base": "MODEL",
    "encoder": "MODEL",
    "checkpoint_dir": "DIR",
    "lora_targets": "NAMES",
    "tta": "MODE",
}
_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


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


class FiniteFloat(click.FloatRange):
    """A float option: a finite number, optionally within a range, shown readably.

    Every float option uses it. ``click.FloatRange`` lets ``nan`` through (it compares
    false with every bound) and ``inf`` through an open-ended range, and prints bounds
    with every digit (``0.3333333333333333<=x``).
    """

    name = "float"

    def __init__(
        self,
        min: float | None = None,
        max: float | None = None,
        *,
        min_open: bool = False,
        max_open: bool = False,
    ) -> None:
        super().__init__(min, max, min_open=min_open, max_open=max_open)

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        try:
            return super().convert(number, param, ctx)
        except click.BadParameter:  # the error gives the exact bounds: 0.333 < 1/3
            self.fail(
                f"{number!r} is not in the range {self._describe_range(exact=True)}", param, ctx
            )

    def _describe_range(self, exact: bool = False) -> str:
        """``0.333<=x<=1`` for --help (3 significant digits); ``exact``: every digit."""

        def bound(value: float) -> str:
            return repr(float(value)) if exact else f"{value:.3g}"

        if self.max is None:  # one-sided ranges read as click writes them: x>=0
            if self.min is None:
                return "finite"
            return f"x{'>' if self.min_open else '>='}{bound(self.min)}"
        high = ("<" if self.max_open else "<=") + bound(self.max)
        if self.min is None:
            return f"x{high}"
        return f"{bound(self.min)}{'<' if self.min_open else '<='}x{high}"


data_argument = click.argument(
    "data", metavar="DATA", type=click.Path(dir_okay=False, path_type=str)
)


def _model_option(required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--model MODEL_DIR``, the one definition every command uses.

    Whether the directory exists is left to the model loader, so that every command
    answers alike: its one-line error says what a MODEL_DIR is and how to make one,
    where click's check could only say that the path is missing.
    """
    return click.option(
        "--model",
        "model_dir",
        required=required,
        default=None,
        metavar="MODEL_DIR",
        type=click.Path(file_okay=False, path_type=str),
        help="A model directory written by `arenajudge train`.",
    )


model_dir_option = _model_option(required=True)
optional_model_option = _model_option(required=False)


def input_options(command: Callable) -> Callable:
    """``--input-format`` and ``--columns``, for every command that reads battles."""
    command = click.option(
        "--columns",
        "columns",
        default=None,
        metavar="FIELD=COL,...",
        help="Map file columns to fields, e.g. prompt=question,response_a=answer1.",
    )(command)
    return click.option(
        "--input-format",
        "input_format",
        type=click.Choice(FORMATS),
        default=None,
        help="File format; by default taken from the extension.",
    )(command)


def read_options(input_format: str | None, columns: str | None) -> dict[str, Any]:
    """Keyword arguments for :func:`arenajudge.data.read_battles` from the shared options."""
    try:
        return {"format": input_format, "columns": parse_columns_option(columns)}
    except ArenaJudgeError as exc:
        raise click.BadParameter(str(exc), param_hint="--columns") from None


def _format_option(*formats: str) -> Callable:
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(list(formats)),
        default="text",
        show_default=True,
        help="Output format on stdout.",
    )


def out_file_option(help: str) -> Callable:
    """The required ``--out OUT`` of a command that writes one file (``out_path``)."""
    return click.option(
        "--out",
        "out_path",
        required=True,
        type=click.Path(dir_okay=False),
        metavar="OUT",
        help=help,
    )


format_option = _format_option("text", "json")
table_format_option = _format_option("text", "json", "csv")
"""``--format`` of the commands that print a table (leaderboard, winrate): CSV too."""


def seed_option(what: str) -> Callable:
    """``--seed``, saying what it seeds on this command."""
    return click.option(
        "--seed",
        type=click.IntRange(0, MAX_SEED),
        default=0,
        metavar="N",
        show_default=True,
        help=f"Seed of {what}.",
    )


def _warn_retired_seed(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        logging.getLogger("arenajudge").warning(
            "--seed no longer changes anything on `%s`: a chosen/rejected pair's A/B order "
            "is a function of its texts, the same in every run; drop the option",
            ctx.command_path,
        )


retired_seed_option = click.option(
    "--seed",
    type=click.IntRange(0, MAX_SEED),
    default=None,
    hidden=True,
    metavar="N",
    expose_value=False,
    callback=_warn_retired_seed,
    help="Seed of nothing any more (ignored, with a warning): the A/B order of "
    "chosen/rejected pairs it used to draw is a function of each pair.",
)
"""``--seed`` of a command it used to seed only the A/B order of chosen/rejected pairs
on: still accepted, so that scripts keep working, with a warning that it does nothing."""


def option_given(name: str) -> bool:
    """Whether the user gave the current command's parameter ``name`` (on the command
    line or in the environment), rather than leaving its default."""
    return click.get_current_context().get_parameter_source(name) in _GIVEN


tie_rate_option = click.option(
    "--tie-rate",
    type=FiniteFloat(0, 1, min_open=True, max_open=True),
    default=None,
    metavar="RATE",
    help="Shift predictions to this share of ties (e.g. 0.31 for Kaggle's arena data).",
)
force_option = click.option("--force", is_flag=True, help="Overwrite existing outputs.")
workers_option = click.option(
    "--workers",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    metavar="N",
    help="Processes scoring blocks of DATA side by side with the CPU model; 0 means one "
    "per core, 1 scores in this process (transformer models always do).",
)


def echo_json(payload: Any) -> None:
    """Print ``payload`` as JSON on stdout."""
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def format_scores(title: str, values: dict[str, float]) -> str:
    """One line of scores: rows, class prior, length baseline, log loss, accuracy, ECE."""
    return (
        f"{title:<24} rows {values['rows']:>6}  prior {values['prior_log_loss']:.4f}  "
        f"length {values['length_log_loss']:.4f}  log loss {values['log_loss']:.4f}  "
        f"accuracy {values['accuracy']:.3f}  ECE {values['ece']:.3f}"
    )


def print_scores(
    overall: dict[str, Any],
    by_source: dict[str, dict[str, Any]],
    folds: list[dict[str, Any]] | None = None,
) -> None:
    """The lines of :func:`format_scores` of each fold, overall, and each source."""
    for fold in folds or []:
        click.echo(format_scores(f"fold {fold['fold']}", fold))
    click.echo(format_scores("overall", overall))
    for source, values in by_source.items():
        click.echo(format_scores(f"source {source}", values))


def echo_csv(frame: pd.DataFrame) -> None:
    """Print ``frame`` as CSV (no index) on stdout."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    click.echo(buffer.getvalue(), nl=False)


# --------------------------------------------------------------------------- settings
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
    flag = spec.metadata.get("flag") or "--" + name.replace("_", "-")
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
                if ctx.get_parameter_source(name) in _GIVEN
            }
            return command(*args, settings=given, **kwargs)

        for name, classes in reversed(owners.items()):
            group = heading[classes[0]] if len(classes) == 1 else None
            wrapper = _settings_option(classes[0], name, group)(wrapper)
        return wrapper

    return decorate


def flags_of(names: Any) -> str:
    """``--flag-a, --flag-b`` for config field names."""
    return ", ".join("--" + name.replace("_", "-") for name in names)


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
