"""Option types shared by several commands, defined once."""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from arenajudge.data.readers import FORMATS, parse_columns_option
from arenajudge.errors import ArenaJudgeError

data_argument = click.argument("data", type=click.Path(dir_okay=False, path_type=str))


def input_options(command: Callable) -> Callable:
    """``--input-format`` and ``--columns``, for every command that reads battles."""
    command = click.option(
        "--columns", "columns", default=None, metavar="FIELD=COL,...",
        help="Map file columns to fields, e.g. prompt=question,response_a=answer1.")(command)
    return click.option(
        "--input-format", "input_format", type=click.Choice(FORMATS), default=None,
        help="File format; by default taken from the extension.")(command)


def read_options(input_format: str | None, columns: str | None) -> dict[str, Any]:
    """Keyword arguments for :func:`arenajudge.data.read_battles` from the shared options."""
    try:
        return {"format": input_format, "columns": parse_columns_option(columns)}
    except ArenaJudgeError as exc:
        raise click.BadParameter(str(exc), param_hint="--columns") from None


format_option = click.option(
    "--format", "output_format", type=click.Choice(["text", "json"]), default="text",
    show_default=True, help="Output format on stdout.")
seed_option = click.option("--seed", type=int, default=0, show_default=True,
                           help="Seed of every random choice.")
force_option = click.option("--force", is_flag=True, help="Overwrite existing outputs.")


def echo_json(payload: Any) -> None:
    """Print ``payload`` as JSON on stdout."""
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
