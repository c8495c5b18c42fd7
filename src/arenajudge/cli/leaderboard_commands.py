"""``arenajudge leaderboard``: rank the models of a file of battles."""

from __future__ import annotations

import math
from typing import Any

import click
import numpy as np
import pandas as pd

from arenajudge.cli import main
from arenajudge.cli.options import (
    data_argument,
    echo_csv,
    echo_json,
    force_option,
    input_options,
    option_given,
    optional_model_option,
    read_options,
    seed_option,
    table_format_option,
)
from arenajudge.data import read_battles
from arenajudge.data.schema import Battles
from arenajudge.errors import ConfigError
from arenajudge.leaderboard import COLUMNS, Leaderboard, fit_leaderboard
from arenajudge.leaderboard.categories import CategoryBoards, category_values, fit_category_boards
from arenajudge.leaderboard.intervals import INTERVALS
from arenajudge.leaderboard.ppi import fit_ppi_leaderboard, suggest_battles
from arenajudge.models.contract import PreferenceModel
from arenajudge.models.registry import load_model
from arenajudge.outputs import atomic_path, check_output, refuse_overwriting_inputs
from arenajudge.ties import RATING_TIE_MODELS


def _render(board: Leaderboard, rated_from: str) -> str:
    lines = [
        f"{'rank':>4}  {'model':<40} {'rating':>7}  {'95% CI':>13}  {'battles':>8}  {'win rate':>8}"
    ]
    for rank, row in enumerate(board.table.itertuples(index=False), start=1):
        interval = "" if math.isnan(row.ci_lower) else f"[{row.ci_lower:.0f}, {row.ci_upper:.0f}]"
        lines.append(
            f"{rank:>4}  {row.model:<40} {row.rating:>7.0f}  {interval:>13}  "
            f"{row.battles:>8,}  {row.win_rate:>8.1%}"
        )
    method = {
        "sandwich": "; 95% intervals: sandwich (robust)",
        "bootstrap": f"; 95% intervals from {board.n_bootstrap} bootstrap replicates",
        "none": "",
    }[board.interval]
    lines.append(f"rated from {rated_from}; Elo scale, average model = 1000" + method)
    if board.tie_parameter is not None:
        name = "nu" if board.ties == "davidson" else "theta"
        both_bad = (
            ""
            if board.both_bad_share is None
            else f"; {board.both_bad_share:.1%} of ties voted both bad"
        )
        lines.append(
            f"ties: {board.ties} model, fitted {name} = {board.tie_parameter:.3f}" + both_bad
        )
    if board.style_coefficients:
        effects = ", ".join(
            f"{name} {value:+.3f}" for name, value in board.style_coefficients.items()
        )
        lines.append(f"style control (log-odds per standard deviation of A - B): {effects}")
    if board.prediction_powered:
        gain = board.prediction_powered
        lines.append(
            f"prediction-powered (PPI++, lambda {gain['lambda']:.2f}): "
            f"{gain['voted_battles']:,} human votes + {gain['unvoted_battles']:,} judged "
            f"battles; intervals {gain['width_ratio']:.2f}x the human-only width, worth "
            f"{gain['effective_human_votes']:,.0f} human votes "
            f"({gain['human_votes_gained']:+,.0f}); judge-vote correlation "
            f"{gain['rho']:.2f}"
        )
    return "\n".join(lines)


def _render_categories(boards: CategoryBoards, overall: Leaderboard) -> str:
    lines = []
    for value, changes in boards.rank_changes(overall).items():
        board = boards.boards[value]
        moved = ", ".join(f"{c['model']} {c['overall_rank']}->{c['rank']}" for c in changes)
        lines.append(
            f"{boards.column}={value} ({board.battles:,} battles, "
            f"{len(board.table)} models): "
            + (f"ranks differ: {moved}" if moved else "same order as overall")
        )
    if boards.too_small:
        lines.append(
            "not rated (fewer battles than --min-battles): "
            + ", ".join(f"{value} ({count:,})" for value, count in boards.too_small.items())
        )
    return "\n".join(lines)


def _check_leaderboard_options(
    model_dir: str | None,
    unlabelled: str | None,
    n_suggest: int | None,
    by_column: str | None,
    ci: str,
    style_control: bool,
) -> None:
    if unlabelled and not model_dir:
        raise ConfigError(
            "--unlabelled needs --model MODEL_DIR: the judge whose predictions "
            "on the unlabelled battles power the ratings"
        )
    if n_suggest and not unlabelled:
        raise ConfigError(
            "--suggest picks among --unlabelled battles; give --unlabelled and --model"
        )
    if unlabelled and (by_column or ci != "sandwich" or style_control):
        raise ConfigError(
            "--unlabelled (prediction-powered ratings) works with sandwich "
            "intervals on one board: drop --by, --ci and --style-control"
        )
    # an option that the others would silently ignore is refused, not dropped
    if ci != "bootstrap" and option_given("n_bootstrap"):
        raise ConfigError(
            f"--bootstrap sets the replicates of --ci bootstrap; with --ci {ci} "
            "it would be ignored: add --ci bootstrap or drop --bootstrap"
        )
    if by_column is None and option_given("min_battles"):
        raise ConfigError(
            "--min-battles sets the battles a --by category needs; without --by "
            "it would be ignored: add --by COLUMN or drop --min-battles"
        )
    if n_suggest and click.get_current_context().params.get("output_format") == "json":
        raise ConfigError("--suggest prints the suggested battles as CSV: drop --format json")


def _echo_boards(
    board: Leaderboard, boards: CategoryBoards | None, output_format: str, rated_from: str
) -> None:
    if output_format == "json":
        echo_json({**board.summary(), **({"by": boards.summary(board)} if boards else {})})
    elif output_format == "csv" and boards:
        tables = [board.table.assign(board="all")] + [
            part.table.assign(board=f"{boards.column}={value}")
            for value, part in boards.boards.items()
        ]
        echo_csv(pd.concat(tables, ignore_index=True)[["board", *COLUMNS]])
    elif output_format == "csv":
        echo_csv(board.table[list(COLUMNS)])
    else:
        click.echo(_render(board, rated_from))
        if boards:
            click.echo(_render_categories(boards, board))


@main.command("leaderboard")
@data_argument
@input_options
@optional_model_option
@table_format_option
@click.option(
    "--plot",
    default=None,
    metavar="OUT",
    type=click.Path(dir_okay=False, path_type=str),
    help="Also draw the ratings and their intervals to this PNG.",
)
@click.option(
    "--ci",
    type=click.Choice(INTERVALS),
    default="sandwich",
    show_default=True,
    help="95% intervals: sandwich (robust, one fit), bootstrap (refits) or none.",
)
@click.option(
    "--bootstrap",
    "n_bootstrap",
    type=click.IntRange(min=0),
    default=100,
    metavar="N",
    show_default=True,
    help="Bootstrap replicates with --ci bootstrap.",
)
@click.option(
    "--ties",
    type=click.Choice(RATING_TIE_MODELS),
    default="half",
    show_default=True,
    help="half: a tie is half a win each; davidson / rao-kupper: ties as a third "
    "outcome with a fitted tie parameter.",
)
@click.option(
    "--style-control", is_flag=True, help="Adjust ratings for differences in length and markdown."
)
@click.option(
    "--by",
    "by_column",
    default=None,
    metavar="COLUMN",
    help="Also fit one board per value of this column of DATA (e.g. language, "
    "source) and show where ranks differ from the overall board.",
)
@click.option(
    "--min-battles",
    type=click.IntRange(min=1),
    default=200,
    metavar="N",
    show_default=True,
    help="Battles a --by category needs to get a board.",
)
@click.option(
    "--unlabelled",
    default=None,
    metavar="BATTLES",
    type=click.Path(dir_okay=False, exists=True, path_type=str),
    help="Battles without votes: with --model, prediction-powered ratings from "
    "the votes in DATA plus the model's predictions on these.",
)
@click.option(
    "--suggest",
    "n_suggest",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Instead of the board, print as CSV the N --unlabelled "
    "battles whose votes would narrow adjacent ranks most.",
)
@seed_option("the bootstrap resampling")
@force_option
def leaderboard_command(
    data: str,
    input_format: str | None,
    columns: str | None,
    model_dir: str | None,
    output_format: str,
    plot: str | None,
    ci: str,
    n_bootstrap: int,
    ties: str,
    style_control: bool,
    by_column: str | None,
    min_battles: int,
    unlabelled: str | None,
    n_suggest: int | None,
    seed: int,
    force: bool,
) -> None:
    """Rank the models in DATA by Bradley–Terry ratings from the votes.

    Ratings are on the Elo scale (average model = 1000) with 95% intervals; a tie
    counts as half a win for each side unless --ties models it. With --model alone,
    ratings come from the model's predicted probabilities instead: rank models whose
    answers have no votes yet. With --model and --unlabelled, DATA's votes and the
    model's predictions on the unlabelled battles combine into prediction-powered
    ratings whose intervals stay valid however biased the model is. Rows without
    model names are skipped.
    """
    _check_leaderboard_options(model_dir, unlabelled, n_suggest, by_column, ci, style_control)
    if plot:
        refuse_overwriting_inputs([plot], [data, model_dir, unlabelled])
        check_output(plot, force, "file")
    options = read_options(input_format, columns)
    # votes alone rank models; a model or the style covariates need the texts
    battles = read_battles(data, **options, needs_texts=model_dir is not None or style_control)
    model = load_model(model_dir) if model_dir else None
    if unlabelled and model is not None:  # _check_leaderboard_options: --unlabelled has --model
        extra = read_battles(unlabelled, **options)
        extra_proba = model.predict_proba(extra)
        board = fit_ppi_leaderboard(
            battles, model.predict_proba(battles), extra, extra_proba, ties=ties
        )
        if n_suggest:  # the CSV replaces the board on stdout; --plot still draws the board
            echo_csv(suggest_battles(board, extra, extra_proba, n_suggest))
        else:
            rated_from = f"votes on {len(battles):,} battles and predictions of {model_dir}"
            _echo_boards(board, None, output_format, rated_from)
    else:
        fit_options = {
            "ci": ci,
            "n_bootstrap": n_bootstrap,
            "ties": ties,
            "seed": seed,
            "style_control": style_control,
        }
        board, boards = _boards(battles, model, by_column, min_battles, input_format, fit_options)
        rated_from = (f"predictions of {model_dir}" if model_dir else "votes") + (
            f" on {board.battles:,} battles"
        )
        _echo_boards(board, boards, output_format, rated_from)
    if plot:
        title = (
            "prediction-powered ratings"
            if unlabelled
            else "predicted ratings"
            if model_dir
            else "ratings from votes"
        )
        _plot_board(board, title, plot, force)


def _boards(
    battles: Battles,
    model: PreferenceModel | None,
    by_column: str | None,
    min_battles: int,
    input_format: str | None,
    fit_options: dict[str, Any],
) -> tuple[Leaderboard, CategoryBoards | None]:
    """The board of ``battles``, rated from their votes or, given a ``model``, from its
    predictions, and with ``by_column`` one board per category of that column."""
    proba = model.predict_proba(battles) if model else None
    board = fit_leaderboard(battles, proba, **fit_options)
    if not by_column:
        return board, None

    def fit_part(mask: np.ndarray) -> Leaderboard:
        return fit_leaderboard(
            battles.take(mask), None if proba is None else proba[mask], **fit_options
        )

    values = category_values(battles, by_column, input_format)
    return board, fit_category_boards(battles, values, by_column, min_battles, fit_part)


def _plot_board(board: Leaderboard, title: str, plot: str, force: bool) -> None:
    """Draw the ratings of ``board`` and their intervals to the PNG ``plot``."""
    from arenajudge.report.plots import leaderboard, save_plot  # matplotlib: only to draw

    with atomic_path(plot, force) as staged:
        save_plot(
            leaderboard,
            {"rows": board.records(), "title": title, "interval": board.interval},
            staged,
        )
