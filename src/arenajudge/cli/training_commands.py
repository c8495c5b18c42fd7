"""``arenajudge train | cv``: fit a backend's model on labelled battles."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from arenajudge.cli import main
from arenajudge.cli.inputs import embeddings_option, read_input, sources_option
from arenajudge.cli.options import (
    FiniteFloat,
    data_argument,
    echo_json,
    force_option,
    format_option,
    input_options,
    print_scores,
)
from arenajudge.cli.settings import (
    GroupedCommand,
    backend_settings_groups,
    check_backend_flags,
    config_options,
)
from arenajudge.data.soft_labels import read_oof, teacher_record, teacher_targets
from arenajudge.errors import ConfigError
from arenajudge.evaluate import cross_validate, oof_frame, training_caveats
from arenajudge.models.contract import PreferenceModel, check_labelled
from arenajudge.models.registry import TRAINABLE, build_model, model_class
from arenajudge.models.transformer import is_main_process
from arenajudge.outputs import check_output, refuse_overwriting_inputs, write_csv

logger = logging.getLogger("arenajudge.cli")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="YAML or TOML file of the backend's settings (the fields listed "
    "under its options below); flags given override it.",
)
model_settings = config_options(backend_settings_groups(), exclude=("kind",))
backend_option = click.option(
    "--backend",
    type=click.Choice(TRAINABLE),
    default="gbdt",
    show_default=True,
    help="Model family: the CPU LightGBM model, or a transformer backend (needs --base and "
    "the transformers extra; a GPU for all but small models).",
)


def _model_factory(
    backend: str,
    config_path: str | None,
    settings: dict[str, Any],
    embeddings_path: str | None,
    checkpoint_per_fold: bool = False,
) -> tuple[Callable[[], PreferenceModel], Any]:
    """A function making a fresh, unfitted ``backend`` model, and its resolved config.

    Everything that needs no data is checked here, before any is read. With
    ``checkpoint_per_fold`` each model made gets its own ``checkpoint_dir/fold-K``
    (cross-validation fits one model per fold, in order).
    """
    if embeddings_path and backend != "gbdt":
        raise ConfigError("--embeddings applies to --backend gbdt only")
    check_backend_flags(backend, settings)
    config = build_model(backend, settings, config_path=config_path).config
    logger.info("config: %s", json.dumps(config.__dict__))
    checkpoints = getattr(config, "checkpoint_dir", None) if checkpoint_per_fold else None
    if checkpoints is None:
        return lambda: model_class(backend)(config), config
    folds = iter(range(1_000_000))
    return (
        lambda: model_class(backend)(
            config, checkpoint_dir=str(Path(checkpoints) / f"fold-{next(folds)}")
        ),
        config,
    )


@main.command("train", cls=GroupedCommand)
@data_argument
@click.option(
    "--out",
    "out_dir",
    required=True,
    metavar="MODEL_DIR",
    type=click.Path(file_okay=False),
    help="Model directory to write.",
)
@backend_option
@config_option
@embeddings_option
@sources_option("in training, a large source is kept from drowning out small ones (source_balance)")
@click.option(
    "--teacher",
    "teacher_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="OOF.csv",
    help="Distil: train on a mix of the labels and this teacher's probabilities "
    "of the same rows (e.g. an ensemble's `cv --oof` file).",
)
@click.option(
    "--teacher-weight",
    type=FiniteFloat(0, 1),
    default=0.5,
    metavar="W",
    show_default=True,
    help="Share of the teacher's probabilities in the training targets.",
)
@input_options
@format_option
@force_option
@model_settings
def train_command(
    data: str,
    out_dir: str,
    backend: str,
    config_path: str | None,
    embeddings_path: str | None,
    sources_path: str | None,
    teacher_path: str | None,
    teacher_weight: float,
    input_format: str | None,
    columns: str | None,
    output_format: str,
    force: bool,
    settings: dict[str, Any],
) -> None:
    """Train a preference model on labelled DATA and save it to --out MODEL_DIR.

    Prints what was trained and its out-of-sample calibrated score on stdout (--format
    json: one object); the stages of training go to stderr as they start.
    """
    refuse_overwriting_inputs(
        [out_dir], [data, config_path, embeddings_path, sources_path, teacher_path]
    )
    check_output(out_dir, force, "directory", output="model")
    make_model, _config = _model_factory(backend, config_path, settings, embeddings_path)
    battles = read_input(data, input_format, columns, sources_path, embeddings_path)
    check_labelled(battles)
    if teacher_path:
        battles = teacher_targets(battles, read_oof(teacher_path, battles), teacher_weight)
    started = time.perf_counter()
    logger.info("training on %d battles", len(battles))
    progress = logging.getLogger("arenajudge.progress")  # the fit's stages, on stderr
    level = progress.level
    progress.setLevel(logging.INFO)
    try:
        model = make_model().fit(battles)
    finally:
        progress.setLevel(level)
    if teacher_path:
        model.training_["teacher"] = teacher_record(teacher_path, teacher_weight)
    model.save(out_dir, force=force)
    if not is_main_process():  # under `accelerate launch` rank 0 reports
        return
    validation = getattr(model, "validation_", None) or None  # {} without a holdout
    warnings = training_caveats(validation or {}, bool(teacher_path))
    result = {
        "model_dir": out_dir,
        "backend": backend,
        "battles": len(battles),
        "seconds": round(time.perf_counter() - started, 1),
        "validation": validation,
        "warnings": warnings,
    }
    for caveat in warnings:
        logger.warning(caveat)
    if output_format == "json":
        echo_json(result)
    else:
        click.echo(_train_summary(result))


def _train_summary(result: dict[str, Any]) -> str:
    """One line of what ``train`` did; its score says it is out of sample and calibrated,
    or that there is none."""
    calibrated = result["validation"] or {}
    verb = "calibrated the zero-shot judge" if calibrated.get("zero_shot") else "trained"
    summary = f"{verb} on {result['battles']:,} battles in {result['seconds']:.1f} s"
    if calibrated.get("log_loss") is not None:
        summary += (
            f"; out-of-sample calibrated log loss {calibrated['log_loss']:.4f} "
            f"(class prior {calibrated['prior_log_loss']:.4f}, ECE "
            f"{calibrated['ece']:.3f}, {calibrated['rows']:,} rows, "
            f"{calibrated['folds']}-fold cross-fit; ties: {calibrated['tie_model']})"
        )
    else:
        summary += "; no out-of-sample score (no holdout to calibrate on)"
    return f"{summary}; saved to {result['model_dir']}"


@main.command("cv", cls=GroupedCommand)
@data_argument
@click.option(
    "--folds",
    "n_folds",
    type=click.IntRange(min=2),
    default=5,
    metavar="N",
    show_default=True,
    help="Number of prompt-grouped folds.",
)
@click.option(
    "--oof",
    "oof_path",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="OUT",
    help="Write out-of-fold predictions (id,fold + the three probabilities).",
)
@backend_option
@config_option
@embeddings_option
@sources_option("scores per source; in training, source_balance")
@input_options
@format_option
@force_option
@model_settings
def cv_command(
    data: str,
    n_folds: int,
    oof_path: str | None,
    backend: str,
    config_path: str | None,
    embeddings_path: str | None,
    sources_path: str | None,
    input_format: str | None,
    columns: str | None,
    output_format: str,
    force: bool,
    settings: dict[str, Any],
) -> None:
    """Prompt-grouped cross-validation on DATA: per-fold, overall and per-source scores.

    --seed also seeds the folds; with --checkpoint-dir each fold checkpoints into its
    own fold-K subdirectory.
    """
    if oof_path:
        refuse_overwriting_inputs([oof_path], [data, config_path, embeddings_path, sources_path])
        check_output(oof_path, force, "file")
    make_model, config = _model_factory(
        backend, config_path, settings, embeddings_path, checkpoint_per_fold=True
    )
    battles = read_input(data, input_format, columns, sources_path, embeddings_path)
    result = cross_validate(make_model, battles, n_folds=n_folds, seed=config.seed)
    if oof_path:
        write_csv(oof_frame(battles, result), oof_path, force=force)
    if output_format == "json":
        echo_json(result.to_dict())
    else:
        print_scores(result.overall, result.by_source, result.folds)
