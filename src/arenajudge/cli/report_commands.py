"""``arenajudge report``."""

from __future__ import annotations

import logging

import click

from arenajudge.cli import main
from arenajudge.cli.options import (
    data_argument,
    echo_json,
    force_option,
    format_option,
    input_options,
    optional_model_option,
    read_options,
    retired_seed_option,
    tie_rate_option,
)
from arenajudge.data import read_battles
from arenajudge.data.sources import attach_sources
from arenajudge.engines.scoring import predict
from arenajudge.errors import ConfigError
from arenajudge.evaluate import battle_keys_of, score_caveats, trained_sections
from arenajudge.models.registry import load_model
from arenajudge.outputs import check_output, refuse_overwriting_inputs

logger = logging.getLogger("arenajudge.cli")


@main.command("report")
@data_argument
@input_options
@optional_model_option
@click.option(
    "--oof",
    default=None,
    metavar="OOF.csv",
    type=click.Path(dir_okay=False, exists=True, path_type=str),
    help="Out-of-fold predictions (`cv --oof`) or any file of id,winner_model_a,"
    "winner_model_b,winner_tie instead of a model.",
)
@tie_rate_option
@click.option(
    "--sources",
    default=None,
    metavar="FILE",
    type=click.Path(dir_okay=False, exists=True, path_type=str),
    help="CSV of id,source (else a `source` column in DATA): the report's figures per source.",
)
@click.option(
    "--out",
    required=True,
    metavar="OUT",
    type=click.Path(file_okay=False, path_type=str),
    help="Directory to write index.html and the plots to.",
)
@format_option
@retired_seed_option
@force_option
def report_command(
    data: str,
    input_format: str | None,
    columns: str | None,
    model_dir: str | None,
    oof: str | None,
    tie_rate: float | None,
    sources: str | None,
    out: str,
    output_format: str,
    force: bool,
) -> None:
    """Write an HTML report on DATA: class balance, biases, calibration, errors.

    With --model the predictions come from the model (and the page shows how often its
    predicted winner flips when A and B are swapped); with --oof from an out-of-fold
    file; with neither, the report shows the data-only sections. --format json also
    writes report.json with the numbers behind every plot.
    """
    from arenajudge.data.soft_labels import read_oof
    from arenajudge.report import Evidence, write_report

    if model_dir and oof:
        raise ConfigError("give --model or --oof, not both")
    if tie_rate is not None and not model_dir:
        raise ConfigError(
            "--tie-rate shifts a model's predictions: give --model (an --oof "
            "file's probabilities are reported as they were written)"
        )
    refuse_overwriting_inputs([out], [data, model_dir, oof, sources])
    check_output(out, force, "directory", output="report")
    battles = read_battles(data, **read_options(input_format, columns))
    if sources:
        battles = attach_sources(battles, sources)
    proba = swapped = None
    predictor, caveats = "none", []
    if model_dir:
        model = load_model(model_dir)
        proba = predict(model, battles, tie_rate)
        swapped = predict(model, battles.swap(), tie_rate)
        predictor = f"model {model_dir}" + (
            "" if tie_rate is None else f" shifted to --tie-rate {tie_rate:.3g}"
        )
        if battles.target is not None:  # labelled: the report scores the model
            caveats = score_caveats(
                battles.target, battle_keys_of(battles), trained_sections(model), tie_rate, data
            )
        for caveat in caveats:
            logger.warning(caveat)
    elif oof:
        proba = read_oof(oof, battles)
        predictor = f"out-of-fold file {oof}"
    summary = write_report(
        Evidence(battles, proba, swapped),
        out,
        predictor=predictor,
        caveats=caveats,
        force=force,
        with_json=output_format == "json",
    )
    if output_format == "json":
        echo_json({"report": f"{out}/index.html", **summary})
        return
    click.echo(f"wrote {out}/index.html ({len(summary['plots'])} plots)")
    if "metrics" in summary:
        scores = summary["metrics"]
        click.echo(
            f"log loss {scores['log_loss']:.4f} (prior {scores['prior_log_loss']:.4f}), "
            f"accuracy {scores['accuracy']:.1%}, ECE {scores['ece']:.4f}"
        )
