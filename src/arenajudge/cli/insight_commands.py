"""``arenajudge report`` and ``arenajudge leaderboard``."""

from __future__ import annotations

import io
import math

import click

from arenajudge.cli import main
from arenajudge.cli.options import (data_argument, echo_json, force_option, format_option,
                                    input_options, read_options, seed_option)
from arenajudge.data import read_battles
from arenajudge.errors import ConfigError
from arenajudge.evaluate import attach_sources
from arenajudge.leaderboard import COLUMNS, Leaderboard, fit_leaderboard
from arenajudge.models.manifest import data_summary, read_manifest
from arenajudge.models.registry import load_model
from arenajudge.outputs import atomic_path, check_output

model_option = click.option("--model", "model_dir", default=None, metavar="MODEL_DIR",
                            type=click.Path(file_okay=False, path_type=str),
                            help="A trained model directory (arenajudge train).")


# --------------------------------------------------------------------------- report
@main.command("report")
@data_argument
@input_options
@model_option
@click.option("--oof", default=None, metavar="OOF.csv",
              type=click.Path(dir_okay=False, exists=True, path_type=str),
              help="Out-of-fold predictions (id,fold,winner_model_a,winner_model_b,"
                   "winner_tie) instead of a model.")
@click.option("--sources", default=None, metavar="FILE",
              type=click.Path(dir_okay=False, exists=True, path_type=str),
              help="CSV id,source naming each battle's source set.")
@click.option("--out", required=True, metavar="REPORT_DIR",
              type=click.Path(file_okay=False, path_type=str),
              help="Directory to write index.html and the plots to.")
@format_option
@seed_option("the A/B order of chosen/rejected pairs")
@force_option
def report_command(data: str, input_format: str | None, columns: str | None,
                   model_dir: str | None, oof: str | None, sources: str | None, out: str,
                   output_format: str, seed: int, force: bool) -> None:
    """Write an HTML report on DATA: class balance, biases, calibration, errors.

    With --model the predictions come from the model (and the page shows how often its
    predicted winner flips when A and B are swapped); with --oof from an out-of-fold
    file; with neither, the report shows the data-only sections. --format json also
    writes report.json with the numbers behind every plot.
    """
    from arenajudge.report import Evidence, read_oof, write_report

    if model_dir and oof:
        raise ConfigError("give --model or --oof, not both")
    check_output(out, force, "directory")
    battles = read_battles(data, seed=seed, **read_options(input_format, columns))
    if sources:
        battles = attach_sources(battles, sources)
    proba = swapped = None
    predictor = "none"
    if model_dir:
        model = load_model(model_dir)
        proba = model.predict_proba(battles)
        swapped = model.predict_proba(battles.swap())
        predictor = f"model {model_dir}"
        if read_manifest(model_dir).get("training", {}).get("sha256") == data_summary(
                battles)["sha256"]:
            predictor += " (trained on this same data: in-sample scores flatter the model)"
    elif oof:
        proba = read_oof(oof, battles)
        predictor = f"out-of-fold file {oof}"
    summary = write_report(Evidence(battles, proba, swapped), out,
                           predictor=predictor, force=force,
                           with_json=output_format == "json")
    if output_format == "json":
        echo_json({"report": f"{out}/index.html", **summary})
        return
    click.echo(f"wrote {out}/index.html ({len(summary['plots'])} plots)")
    if "metrics" in summary:
        scores = summary["metrics"]
        click.echo(f"log loss {scores['log_loss']:.4f} (prior {scores['prior_log_loss']:.4f}), "
                   f"accuracy {scores['accuracy']:.1%}, ECE {scores['ece']:.4f}")


# --------------------------------------------------------------------------- leaderboard
def _render(board: Leaderboard, rated_from: str) -> str:
    lines = [f"{'rank':>4}  {'model':<40} {'rating':>7}  {'95% CI':>13}  {'battles':>8}  "
             f"{'win rate':>8}"]
    for rank, row in enumerate(board.table.itertuples(index=False), start=1):
        interval = ("" if math.isnan(row.ci_lower)
                    else f"[{row.ci_lower:.0f}, {row.ci_upper:.0f}]")
        lines.append(f"{rank:>4}  {row.model:<40} {row.rating:>7.0f}  {interval:>13}  "
                     f"{row.battles:>8,}  {row.win_rate:>8.1%}")
    lines.append(f"rated from {rated_from}; Elo scale, average model = 1000"
                 + (f"; 95% intervals from {board.n_bootstrap} bootstrap replicates"
                    if board.n_bootstrap else ""))
    if board.style_coefficients:
        effects = ", ".join(f"{name} {value:+.3f}"
                            for name, value in board.style_coefficients.items())
        lines.append(f"style control (log-odds per standard deviation of A - B): {effects}")
    return "\n".join(lines)


@main.command("leaderboard")
@data_argument
@input_options
@model_option
@click.option("--format", "output_format", type=click.Choice(["text", "json", "csv"]),
              default="text", show_default=True, help="Output format on stdout.")
@click.option("--plot", default=None, metavar="FILE.png",
              type=click.Path(dir_okay=False, path_type=str),
              help="Also draw the ratings and their intervals to this PNG.")
@click.option("--bootstrap", "n_bootstrap", type=click.IntRange(min=0), default=100,
              show_default=True, help="Bootstrap replicates for the 95% intervals (0: none).")
@click.option("--style-control", is_flag=True,
              help="Adjust ratings for differences in length and markdown.")
@seed_option("the bootstrap resampling and of the A/B order of chosen/rejected pairs")
@force_option
def leaderboard_command(data: str, input_format: str | None, columns: str | None,
                        model_dir: str | None, output_format: str, plot: str | None,
                        n_bootstrap: int, style_control: bool, seed: int, force: bool
                        ) -> None:
    """Rank the models in DATA by Bradley–Terry ratings from the votes.

    A tie counts as half a win for each side; ratings are on the Elo scale with
    bootstrap 95% intervals. With --model, ratings come from the model's predicted
    probabilities instead, p(A wins) + p(tie) / 2 per battle: rank models whose
    answers have no votes yet. Rows without model names are skipped.
    """
    if plot:
        check_output(plot, force, "file")
    battles = read_battles(data, seed=seed, **read_options(input_format, columns))
    proba = load_model(model_dir).predict_proba(battles) if model_dir else None
    board = fit_leaderboard(battles, proba, n_bootstrap=n_bootstrap, seed=seed,
                            style_control=style_control)
    if output_format == "json":
        echo_json(board.records())
    elif output_format == "csv":
        buffer = io.StringIO()
        board.table.to_csv(buffer, index=False, columns=list(COLUMNS), lineterminator="\n")
        click.echo(buffer.getvalue(), nl=False)
    else:
        rated_from = (f"predictions of {model_dir}" if model_dir else "votes") + (
            f" on {len(battles) - board.skipped - board.self_battles:,} battles")
        click.echo(_render(board, rated_from))
    if plot:
        from arenajudge.report.plots import leaderboard, save_plot

        title = "predicted ratings" if model_dir else "ratings from votes"
        with atomic_path(plot, force) as staged:
            save_plot(leaderboard, {"rows": board.records(), "title": title}, staged)
