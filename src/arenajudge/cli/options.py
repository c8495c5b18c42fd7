"""Options and output helpers shared by several commands, defined once.

The backends' settings flags are built from their config classes in
:mod:`arenajudge.cli.settings`.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import click
import pandas as pd
from click.core import ParameterSource

from arenajudge.data.readers import parse_columns_option
from arenajudge.data.tables import FORMATS
from arenajudge.errors import ArenaJudgeError

MAX_SEED = 2**31 - 1
GIVEN_SOURCES = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
"""Where a parameter the user gave comes from (not a default)."""


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
    return click.get_current_context().get_parameter_source(name) in GIVEN_SOURCES


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
