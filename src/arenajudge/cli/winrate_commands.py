"""``arenajudge winrate``: win rates against a baseline, the AlpacaEval way."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from arenajudge.cli import main
from arenajudge.cli.options import (
    echo_csv,
    echo_json,
    force_option,
    input_options,
    optional_model_option,
    read_options,
    retired_seed_option,
    table_format_option,
)
from arenajudge.data.model_outputs import read_baseline_battles
from arenajudge.data.schema import Battles
from arenajudge.errors import ConfigError
from arenajudge.evaluate import battle_keys_of, rows_in_training, trained_sections
from arenajudge.models.contract import PreferenceModel
from arenajudge.models.manifest import content_sha256, read_manifest
from arenajudge.models.registry import load_model
from arenajudge.outputs import (
    atomic_path,
    check_output,
    refuse_overwriting_inputs,
    write_csv,
    write_text,
)
from arenajudge.winrate import WinRates, ppi_win_rates, win_rates
from arenajudge.winrate.rates import read_difficulty


def _estimate_line(rates: WinRates, judge: str | None, in_sample: bool) -> str:
    if rates.estimate == "votes":
        return "from the votes; ± one standard error over instructions"
    if rates.estimate == "judge":
        return (
            f"predicted by the judge {judge}"
            + (" (trained on these same battles: in-sample)" if in_sample else "")
            + "; ± one standard error over instructions, which does not count the "
            "judge's own errors: add --votes FEW for prediction-powered intervals"
        )
    return (
        f"prediction-powered (PPI++): the judge {judge}'s predictions corrected by "
        "the votes; ± one standard error, valid however biased the judge"
    )


def _render(rates: WinRates, judge: str | None, in_sample: bool) -> str:
    powered = rates.estimate == "prediction-powered"
    header = (
        f"{'rank':>4}  {'model':<36} {'LC win rate':>13}  {'win rate':>13}  "
        f"{'discrete':>8}  {'pairs':>6}  {'avg len':>7}"
    )
    if powered:
        header += f"  {'votes only':>13}  {'votes':>5}  {'lambda':>6}"
    lines = [header]

    def pm(value: float, error: float) -> str:
        return f"{value:5.1f} ± {error:4.1f}" if not math.isnan(error) else f"{value:5.1f}"

    for rank, row in enumerate(rates.table.itertuples(index=False), start=1):
        line = (
            f"{rank:>4}  {row.model:<36} "
            f"{pm(row.length_controlled_winrate, row.lc_standard_error):>13}  "
            f"{pm(row.win_rate, row.standard_error):>13}  {row.discrete_win_rate:>8.1f}  "
            f"{row.n_total:>6,}  {row.avg_length:>7,}"
        )
        if powered:
            line += (
                f"  {pm(row.votes_only_win_rate, row.votes_only_standard_error):>13}  "
                f"{row.n_votes:>5,}  {row.ppi_lambda:>6.2f}"
            )
        lines.append(line)
    difficulty = (
        "no instruction difficulty (one model: give --difficulty FILE)"
        if rates.difficulty_source == "none"
        else f"instruction difficulty {rates.difficulty_source}"
    )
    lines.append(
        f"win rates in % against {rates.baseline}, " + _estimate_line(rates, judge, in_sample)
    )
    lines.append(
        "LC: length-controlled (AlpacaEval 2.0's GLM: model, tanh of the "
        f"standardised length difference, {difficulty})"
    )
    lines += [f"note: {note}" for note in rates.notes]
    return "\n".join(lines)


def _check_options(
    model_dir: str | None,
    votes: str | None,
    data: tuple[str, ...],
    difficulty_file: str | None,
    out: str | None,
    plot: str | None,
    save_difficulty: str | None,
    force: bool,
) -> None:
    if votes and not model_dir:
        raise ConfigError(
            "--votes needs --model MODEL_DIR: the judge whose predictions the votes correct"
        )
    outputs = [path for path in (out, plot, save_difficulty) if path]
    if len({Path(path).resolve() for path in outputs}) < len(outputs):
        raise ConfigError("--out, --plot and --save-difficulty must be different files")
    refuse_overwriting_inputs(outputs, (*data, votes, model_dir, difficulty_file))
    for path in outputs:
        check_output(path, force, "file")


def _trained_on(battles: Battles, judge: PreferenceModel) -> int:
    """How many of ``battles`` the judge (or a member of it) was trained on, by the
    battles its manifests record; a judge saved before they were recorded knows only its
    training file's content hash: all of them when it is this file, else none."""
    sections = trained_sections(judge)
    seen = rows_in_training(battle_keys_of(battles), sections)
    if seen is None:
        digest = content_sha256(battles)
        return len(battles) if any(s.get("sha256") == digest for s in sections) else 0
    return seen


def _write_table(rates: WinRates, out: str, force: bool) -> None:
    if Path(out).suffix.lower() == ".json":
        write_text(json.dumps(rates.summary(), indent=2, ensure_ascii=False), out, force)
    else:
        write_csv(rates.table, out, force=force)


@main.command("winrate")
@click.argument(
    "data",
    nargs=-1,
    required=True,
    metavar="DATA...",
    type=click.Path(dir_okay=False, path_type=str),
)
@click.option(
    "--baseline",
    required=True,
    metavar="NAME",
    help="The model every other one is compared with (a model_a/model_b or "
    "generator name in DATA).",
)
@input_options
@optional_model_option
@click.option(
    "--votes",
    default=None,
    metavar="FEW",
    type=click.Path(dir_okay=False, exists=True, path_type=str),
    help="With --model: voted battles of the same models against the baseline; "
    "the judge's win rates are corrected by them (prediction-powered).",
)
@click.option(
    "--difficulty",
    "difficulty_file",
    default=None,
    metavar="FILE",
    type=click.Path(dir_okay=False, exists=True, path_type=str),
    help="Instruction difficulties (instruction,instruction_difficulty) for the "
    "LC GLM, as --save-difficulty writes; default: fitted from DATA's models.",
)
@click.option(
    "--save-difficulty",
    default=None,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=str),
    help="Write the difficulties used to this CSV (to score later models alone).",
)
@table_format_option
@click.option(
    "--out",
    default=None,
    metavar="OUT",
    type=click.Path(dir_okay=False, path_type=str),
    help="Also write the table: CSV with AlpacaEval's leaderboard columns, or "
    "JSON when OUT ends in .json.",
)
@click.option(
    "--plot",
    default=None,
    metavar="PNG",
    type=click.Path(dir_okay=False, path_type=str),
    help="Also draw the win rates and LC win rates with 95% intervals.",
)
@retired_seed_option
@force_option
def winrate_command(
    data: tuple[str, ...],
    baseline: str,
    input_format: str | None,
    columns: str | None,
    model_dir: str | None,
    votes: str | None,
    difficulty_file: str | None,
    save_difficulty: str | None,
    output_format: str,
    out: str | None,
    plot: str | None,
    force: bool,
) -> None:
    """Win rate of each model in DATA against --baseline, with AlpacaEval's columns.

    DATA is one battles file in any layout (model_a/model_b name the models; an
    AlpacaEval annotations.json works too), or AlpacaEval model_outputs.json files of
    the models and of the baseline, paired by instruction. From the votes by default;
    with --model, a judge scores every pair and the win rates come from its
    probabilities; with --votes too, they are prediction-powered: corrected by a few
    voted pairs, with intervals that hold however biased the judge. A tie counts half.
    The LC win rate is AlpacaEval 2.0's length-controlled win rate.
    """
    _check_options(model_dir, votes, data, difficulty_file, out, plot, save_difficulty, force)
    options = read_options(input_format, columns)
    battles = read_baseline_battles(data, baseline, **options)
    difficulty = read_difficulty(difficulty_file) if difficulty_file else None
    in_sample = False
    if model_dir is None:
        rates = win_rates(battles, baseline, difficulty=difficulty, difficulty_file=difficulty_file)
    else:
        model = load_model(model_dir)
        _note_judge_limits(model_dir, battles, data, votes)
        in_sample = _trained_on(battles, model) > 0
        proba = model.predict_proba(battles.without_labels())
        if votes:
            voted = _unseen_votes(votes, baseline, options, model, model_dir)
            rates = ppi_win_rates(
                battles,
                proba,
                voted,
                model.predict_proba(voted),
                baseline,
                difficulty=difficulty,
                difficulty_file=difficulty_file,
            )
        else:
            rates = win_rates(
                battles, baseline, proba, difficulty=difficulty, difficulty_file=difficulty_file
            )
    if save_difficulty and rates.difficulty.empty:
        raise ConfigError(
            "--save-difficulty: no difficulty was fitted (DATA has one model "
            "against the baseline; fitting needs two or more)"
        )
    if output_format == "json":
        echo_json(rates.summary())
    elif output_format == "csv":
        echo_csv(rates.table)
    else:
        click.echo(_render(rates, model_dir, in_sample))
    _write_files(rates, baseline, out, save_difficulty, plot, force)


def _note_judge_limits(
    model_dir: str, battles: Battles, data: tuple[str, ...], votes: str | None
) -> None:
    """Say on stderr when the judge was not calibrated for unseen models, or when DATA's
    votes go unused."""
    manifest = read_manifest(model_dir)
    if (
        manifest.get("backend") == "gbdt"
        and manifest.get("config", {}).get("fold_groups", "prompt") != "model"
    ):
        click.echo(
            f"note: {model_dir} was calibrated for new prompts, not for models it "
            "has not seen; for win rates of new models train the judge with "
            "--fold-groups model",
            err=True,
        )
    if battles.labelled and not votes:
        click.echo(
            f"note: the votes in {', '.join(data)} are not used with --model; "
            "pass voted battles as --votes for prediction-powered win rates",
            err=True,
        )


def _unseen_votes(
    votes: str, baseline: str, options: dict[str, Any], model: PreferenceModel, model_dir: str
) -> Battles:
    """The voted battles of ``votes``; an error when the judge was trained on any."""
    voted = read_baseline_battles((votes,), baseline, **options)
    seen = _trained_on(voted, model)
    if seen:
        raise ConfigError(
            f"the judge {model_dir} was trained on {seen:,} of the "
            f"{len(voted):,} battles in {votes}; prediction-powered "
            "win rates need votes it has not seen"
        )
    return voted


def _write_files(
    rates: WinRates,
    baseline: str,
    out: str | None,
    save_difficulty: str | None,
    plot: str | None,
    force: bool,
) -> None:
    """Write the files asked for: the table (--out), the difficulties, the plot."""
    if out:
        _write_table(rates, out, force)
    if save_difficulty:
        write_csv(
            rates.difficulty.rename_axis("instruction").reset_index(), save_difficulty, force=force
        )
    if plot:
        from arenajudge.report.plots import save_plot  # matplotlib: only to draw
        from arenajudge.report.plots import win_rates as draw_win_rates

        with atomic_path(plot, force) as staged:
            save_plot(
                draw_win_rates,
                {"rows": rates.records(), "baseline": baseline, "estimate": rates.estimate},
                staged,
            )
