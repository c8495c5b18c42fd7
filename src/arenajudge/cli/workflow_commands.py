"""``arenajudge ensemble | cascade | pseudo-label``: the winners' workflow on saved models."""

from __future__ import annotations

import click
import numpy as np
import pandas as pd

from arenajudge.cli import main
from arenajudge.cli.inputs import embeddings_option, read_input
from arenajudge.cli.options import (
    FiniteFloat,
    echo_json,
    force_option,
    format_option,
    input_options,
    model_dir_option,
    out_file_option,
    read_options,
    retired_seed_option,
    seed_option,
    workers_option,
)
from arenajudge.data.folds import folds
from arenajudge.data.schema import Battles
from arenajudge.data.soft_labels import (
    check_confident,
    confident_rows,
    pseudo_label_frame,
    read_oof,
)
from arenajudge.engines.local import score_blocks
from arenajudge.errors import ConfigError
from arenajudge.evaluate import CVResult, oof_frame
from arenajudge.metrics import log_loss
from arenajudge.models.cascade import CascadeConfig, CascadeModel, cross_fitted_cascade, entropy
from arenajudge.models.contract import check_labelled
from arenajudge.models.ensemble import EnsembleConfig, EnsembleModel, cross_fitted_blend
from arenajudge.models.manifest import check_scores_raw_text, read_manifest
from arenajudge.models.registry import load_model
from arenajudge.outputs import check_output, refuse_overwriting_inputs, write_csv

HONEST_FOLDS = 5
"""Prompt-grouped folds of the cross-fitted (out-of-sample) score of a fitted blend."""

labels_data_option = click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    metavar="DATA",
    help="The labelled battles the OOF files predict (the file given to `arenajudge cv`).",
)
out_dir_option = click.option(
    "--out",
    "out_dir",
    required=True,
    metavar="MODEL_DIR",
    type=click.Path(file_okay=False),
    help="Model directory to write; it refers to the members where they are now.",
)


def _labelled(
    data: str, input_format: str | None, columns: str | None
) -> tuple[Battles, np.ndarray]:
    """The battles of ``data`` and their labels (n, 3); an error when it has none."""
    battles = read_input(data, input_format, columns)
    return battles, check_labelled(battles)


def _echo_scores(scores: dict, output_format: str, combined: str) -> None:
    if output_format == "json":
        echo_json(scores)
        return
    for name, value in scores["oof_log_loss"].items():
        click.echo(f"{name:<40} OOF log loss {value:.4f}")
    click.echo(
        f"{combined + ' (cross-fitted)':<40} OOF log loss "
        f"{scores['blend_log_loss']:.4f}  gain {scores['gain']:+.4f}"
    )


@main.command("ensemble")
@click.argument(
    "member_dirs",
    nargs=-1,
    required=True,
    metavar="MEMBER_DIR...",
    type=click.Path(exists=True, file_okay=False),
)
@click.option(
    "--oof",
    "oof_paths",
    multiple=True,
    required=True,
    metavar="OOF.csv",
    type=click.Path(exists=True, dir_okay=False),
    help="Each member's `arenajudge cv --oof` file, on the same rows; once per "
    "member, in the members' order.",
)
@labels_data_option
@out_dir_option
@click.option(
    "--write-oof",
    "blend_oof_path",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="OOF.csv",
    help="Also write the blend's cross-fitted OOF predictions (a teacher for `train --teacher`).",
)
@click.option(
    "--min-weight",
    type=FiniteFloat(0, 1, max_open=True),
    default=0.0,
    metavar="W",
    show_default=True,
    help=EnsembleConfig.__dataclass_fields__["min_weight"].metadata["help"],
)
@input_options
@format_option
@seed_option("the scoring folds")
@force_option
def ensemble_command(
    member_dirs: tuple[str, ...],
    oof_paths: tuple[str, ...],
    data: str,
    out_dir: str,
    blend_oof_path: str | None,
    min_weight: float,
    input_format: str | None,
    columns: str | None,
    output_format: str,
    seed: int,
    force: bool,
) -> None:
    """Blend saved models with weights fitted on their out-of-fold predictions.

    Prints each member's OOF log loss and the blend's, cross-fitted (weights fitted on
    the other prompt-grouped folds), and writes an `ensemble` MODEL_DIR.
    """
    refuse_overwriting_inputs([out_dir, blend_oof_path], [*member_dirs, *oof_paths, data])
    check_output(out_dir, force, "directory", output="model")
    if blend_oof_path:
        check_output(blend_oof_path, force, "file")
    if len(oof_paths) != len(member_dirs):
        raise ConfigError(
            f"got {len(oof_paths)} --oof files for {len(member_dirs)} "
            "members; give one per member, in the same order"
        )
    battles, target = _labelled(data, input_format, columns)
    oof = [read_oof(path, battles) for path in oof_paths]
    model = EnsembleModel(
        EnsembleConfig(min_weight=min_weight), member_dirs=member_dirs, load_member=load_model
    )
    model.fit(battles, oof=oof).save(out_dir, force=force)
    fold = folds(battles, n_folds=HONEST_FOLDS, seed=seed)
    member_scores = {path: log_loss(target, p) for path, p in zip(member_dirs, oof)}
    blended = cross_fitted_blend(oof, target, fold)
    if blend_oof_path:
        write_csv(oof_frame(battles, CVResult(oof=blended, fold=fold)), blend_oof_path, force=force)
    blend = log_loss(target, blended)
    _echo_scores(
        {
            "oof_log_loss": member_scores,
            "blend_log_loss": blend,
            "gain": min(member_scores.values()) - blend,
            "weights": dict(zip(member_dirs, model.blend_.weights)),
            "temperature": model.blend_.calibration.temperature,
        },
        output_format,
        "blend (vs best member)",
    )
    click.echo(
        f"weights {', '.join(f'{w:.3f}' for w in model.blend_.weights)}, temperature "
        f"{model.blend_.calibration.temperature:.3f}; saved to {out_dir}",
        err=True,
    )


@main.command("cascade")
@click.option(
    "--first",
    "first_dir",
    required=True,
    metavar="FAST_DIR",
    type=click.Path(exists=True, file_okay=False),
    help="Scores every row.",
)
@click.option(
    "--then",
    "then_dir",
    required=True,
    metavar="SLOW_DIR",
    type=click.Path(exists=True, file_okay=False),
    help="Rescores the rows the first model is least sure of.",
)
@click.option(
    "--share",
    type=FiniteFloat(0, 1),
    default=None,
    metavar="F",
    help="Share F of rows the second model rescores (default 0.3).",
)
@click.option(
    "--max-entropy",
    type=FiniteFloat(0, float(np.log(3))),
    default=None,
    metavar="H",
    help="Instead of --share: rescore rows whose first-stage entropy (nats) is at least this.",
)
@click.option(
    "--swap-tta", is_flag=True, help=CascadeConfig.__dataclass_fields__["swap_tta"].metadata["help"]
)
@click.option(
    "--oof-first",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    metavar="OOF.csv",
    help="The first model's `cv --oof` file.",
)
@click.option(
    "--oof-then",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    metavar="OOF.csv",
    help="The second model's `cv --oof` file, same rows.",
)
@labels_data_option
@out_dir_option
@input_options
@format_option
@seed_option("the scoring folds")
@force_option
def cascade_command(
    first_dir: str,
    then_dir: str,
    share: float | None,
    max_entropy: float | None,
    swap_tta: bool,
    oof_first: str,
    oof_then: str,
    data: str,
    out_dir: str,
    input_format: str | None,
    columns: str | None,
    output_format: str,
    seed: int,
    force: bool,
) -> None:
    """Write a `cascade` MODEL_DIR: FAST_DIR scores every row, SLOW_DIR rescores the
    uncertain share, blended there with weights fitted on the OOF files."""
    refuse_overwriting_inputs([out_dir], [first_dir, then_dir, oof_first, oof_then, data])
    check_output(out_dir, force, "directory", output="model")
    if share is not None and max_entropy is not None:
        raise ConfigError("give --share or --max-entropy, not both")
    config = CascadeConfig(
        share=0.3 if share is None else share, max_entropy=max_entropy, swap_tta=swap_tta
    )
    battles, target = _labelled(data, input_format, columns)
    first, then = read_oof(oof_first, battles), read_oof(oof_then, battles)
    model = CascadeModel(config, first_dir=first_dir, then_dir=then_dir, load_member=load_model)
    model.fit(battles, oof=(first, then)).save(out_dir, force=force)
    fold = folds(battles, n_folds=HONEST_FOLDS, seed=seed)
    cascade = cross_fitted_cascade(first, then, target, fold, config)
    _echo_scores(
        {
            "oof_log_loss": {
                first_dir: log_loss(target, first),
                then_dir: log_loss(target, then),
            },
            "blend_log_loss": log_loss(target, cascade),
            "gain": log_loss(target, first) - log_loss(target, cascade),
            "rescored_share": float(np.mean(entropy(first) >= model.threshold_)),
            "threshold": model.threshold_,
        },
        output_format,
        "cascade (vs first)",
    )
    click.echo(
        f"rescoring rows with first-stage entropy >= {model.threshold_:.4f}; saved to {out_dir}",
        err=True,
    )


@main.command("pseudo-label")
@click.argument("data", metavar="UNLABELLED", type=click.Path(exists=True, dir_okay=False))
@model_dir_option
@out_file_option("Kaggle-layout CSV with soft labels and a source column.")
@click.option(
    "--min-confidence",
    type=FiniteFloat(1 / 3, 1),
    default=1 / 3,
    metavar="C",
    help="Keep only rows whose most probable class has at least this probability "
    "(default: keep all).",
)
@embeddings_option
@workers_option
@input_options
@retired_seed_option
@force_option
def pseudo_label_command(
    data: str,
    model_dir: str,
    out_path: str,
    min_confidence: float,
    embeddings_path: str | None,
    workers: int,
    input_format: str | None,
    columns: str | None,
    force: bool,
) -> None:
    """Label UNLABELLED battles with a model's probabilities (soft labels), ready for
    `arenajudge train` on the concatenation with the labelled data."""
    refuse_overwriting_inputs([out_path], [data, model_dir, embeddings_path])
    check_output(out_path, force, "file")
    if not embeddings_path:
        check_scores_raw_text(
            read_manifest(model_dir), model_dir, "pseudo-label without --embeddings"
        )
    model = load_model(model_dir)
    frames, confidence, n_rows = [], [], 0
    for block in score_blocks(
        data,
        model,
        read_kwargs=read_options(input_format, columns),
        embeddings_path=embeddings_path,
        progress=True,
        workers=workers,
    ):
        keep = confident_rows(block.proba, min_confidence)
        frames.append(pseudo_label_frame(block.battles.take(keep), block.proba[keep]))
        confidence.append(block.proba.max(axis=1))
        n_rows += len(block.battles)
    check_confident(np.concatenate(confidence), min_confidence, data)
    labelled = pd.concat(frames, ignore_index=True)
    write_csv(labelled, out_path, force=force)
    click.echo(
        f"wrote {len(labelled):,} of {n_rows:,} battles with soft labels to {out_path}", err=True
    )
