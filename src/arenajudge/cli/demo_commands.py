"""``arenajudge demo``: the whole CPU workflow on the bundled sample, in one command."""

from __future__ import annotations

import importlib.util
import time
from functools import partial
from pathlib import Path

import click
import numpy as np

from arenajudge.cli import main
from arenajudge.cli.options import force_option, format_scores, seed_option
from arenajudge.data.folds import folds
from arenajudge.data.schema import Battles
from arenajudge.datasets import load_sample
from arenajudge.evaluate import cross_validate, evaluate_predictions, oof_frame
from arenajudge.models.gbdt import GBDTModel
from arenajudge.outputs import atomic_path, check_output, probability_frame

HELD_OUT_SHARE = 5  # one prompt-grouped fifth of the sample plays the unseen test set


def _split(battles: Battles, seed: int) -> tuple[Battles, Battles]:
    """Train and test battles; no prompt is in both."""
    test = folds(battles, n_folds=HELD_OUT_SHARE, seed=seed) == 0
    return battles.take(~test), battles.take(test)


def _echo_scores(title: str, overall: dict, by_source: dict) -> None:
    click.echo(title)
    click.echo(format_scores("  all sources", overall))
    for source, values in by_source.items():
        click.echo(format_scores(f"  {source}", values))


def _write_report(test: Battles, model: GBDTModel, proba: np.ndarray, out: Path) -> None:
    from arenajudge.report import Evidence, write_report

    write_report(
        Evidence(test, proba, model.predict_proba(test.without_labels().swap())),
        out,
        predictor="demo model (trained without these battles' prompts)",
    )


def _echo_outputs(out: Path, has_report: bool, seconds: float) -> None:
    report = (
        f"{out / 'report' / 'index.html'}  (open it in a browser)"
        if has_report
        else 'not written: it needs matplotlib (pip install -e ".[report]")'
    )
    click.echo(
        f"\nwrote {out}/ in {seconds:.0f} s:\n"
        f"  model       {out / 'model'}  (arenajudge predict DATA "
        f"--model {out / 'model'} --out OUT)\n"
        f"  submission  {out / 'submission.csv'}  (held-out test set)\n"
        f"  oof         {out / 'oof.csv'}  (cross-validation)\n"
        f"  report      {report}"
    )


@main.command("demo")
@click.option(
    "--out",
    "out_dir",
    default="arenajudge-demo",
    show_default=True,
    metavar="OUT",
    type=click.Path(file_okay=False, path_type=str),
    help="New folder for the model, submission, out-of-fold predictions and report.",
)
@click.option(
    "--folds",
    "n_folds",
    type=click.IntRange(min=2),
    default=3,
    metavar="N",
    show_default=True,
    help="Number of prompt-grouped cross-validation folds (3 keeps the demo within "
    "3 minutes on 2 cores).",
)
@seed_option("the split, the folds and the model")
@force_option
def demo_command(out_dir: str, n_folds: int, seed: int, force: bool) -> None:
    """Train and score the CPU model on the bundled sample of 3,000 human votes.

    A prompt-grouped fifth of the sample is held out as a test set. On the rest the
    command runs prompt-grouped cross-validation and prints its log loss against the
    class prior, overall and per source; then it trains the model on all of the rest,
    predicts the test set and writes, into the new folder OUT: model/ (a MODEL_DIR),
    submission.csv (test-set predictions), oof.csv (cross-validation predictions) and,
    when matplotlib is installed, report/index.html on the test set. --seed seeds the
    split, the folds and the model.
    """
    out = check_output(out_dir, force, "directory", output="demo")
    started = time.perf_counter()
    train, test = _split(load_sample(), seed)
    click.echo(
        f"bundled sample: {len(train):,} battles to train on, {len(test):,} held out "
        f"(no prompt in both)"
    )
    make_model = partial(GBDTModel, seed=seed)
    cv = cross_validate(make_model, train, n_folds=n_folds, seed=seed)
    _echo_scores(
        f"{n_folds}-fold prompt-grouped cross-validation (out of fold, calibrated):",
        cv.overall,
        cv.by_source,
    )
    model = make_model().fit(train)
    proba = model.predict_proba(test.without_labels())
    _echo_scores("held-out test set:", *evaluate_predictions(test, proba, seed=seed))
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    with atomic_path(out, force, kind="directory", output="demo") as staged:
        staged.mkdir()
        model.save(staged / "model")
        probability_frame(test.id, proba, out / "submission.csv").to_csv(
            staged / "submission.csv", index=False
        )
        oof_frame(train, cv).to_csv(staged / "oof.csv", index=False)
        if has_matplotlib:
            _write_report(test, model, proba, staged / "report")
    _echo_outputs(out, has_matplotlib, time.perf_counter() - started)
