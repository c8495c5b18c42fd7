"""``arenajudge train | cv | predict | evaluate``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
import numpy as np

from arenajudge.cli import main
from arenajudge.cli.options import (
    FiniteFloat,
    GroupedCommand,
    config_options,
    data_argument,
    echo_json,
    flags_of,
    force_option,
    format_option,
    input_options,
    model_dir_option,
    read_options,
    retired_seed_option,
    seed_option,
    tie_rate_option,
    workers_option,
)
from arenajudge.data.embeddings import attach_embeddings
from arenajudge.data.readers import read_battles
from arenajudge.data.schema import Battles
from arenajudge.data.soft_labels import read_oof, teacher_record, teacher_targets
from arenajudge.engines.local import ScoredBlock, score_blocks, stream_predict
from arenajudge.errors import ConfigError
from arenajudge.evaluate import (
    attach_sources,
    battle_keys_of,
    cross_validate,
    evaluate_predictions,
    oof_frame,
    prompt_keys,
    relative_length_difference,
    score_caveats,
    trained_sections,
    training_caveats,
)
from arenajudge.models.contract import PreferenceModel, check_labelled
from arenajudge.models.gbdt import GBDTConfig
from arenajudge.models.registry import TRAINABLE, build_model, load_model, model_class
from arenajudge.models.transformer import is_main_process
from arenajudge.models.transformer.config import NetworkConfig, PredictOptions, TrainingConfig
from arenajudge.outputs import check_output, refuse_overwriting_inputs, write_csv, write_submission

logger = logging.getLogger("arenajudge.cli")

TRANSFORMER_BACKENDS = ("siamese", "cross", "llm")
SETTINGS_GROUPS = {
    "CPU model options (--backend gbdt)": GBDTConfig,
    "Transformer network options (--backend siamese|cross|llm)": NetworkConfig,
    "Transformer training options (--backend siamese|cross|llm)": TrainingConfig,
}

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="FILE",
    help="YAML or TOML file of the backend's settings (the fields listed "
    "under its options below); flags given override it.",
)
model_settings = config_options(SETTINGS_GROUPS, exclude=("kind",))
predict_settings = config_options(
    {
        "Transformer prediction options (siamese|cross|llm models; default: as trained)": (
            PredictOptions
        )
    }
)
embeddings_option = click.option(
    "--embeddings",
    "embeddings_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="EMB.parquet",
    help="Outside embeddings from `arenajudge embed`, attached by id as extra features of "
    "the CPU model (give the same kind for predict and evaluate).",
)


def sources_option(use: str) -> Callable:
    return click.option(
        "--sources",
        "sources_path",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        metavar="FILE",
        help=f"CSV of id,source (else a `source` column in DATA): {use}.",
    )


backend_option = click.option(
    "--backend",
    type=click.Choice(TRAINABLE),
    default="gbdt",
    show_default=True,
    help="Model family: the CPU LightGBM model, or a transformer backend (needs --base and "
    "the transformers extra; a GPU for all but small models).",
)
engine_option = click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Score in this process, or in parallel Ray actors (needs the ray extra).",
)
address_option = click.option(
    "--address",
    default=None,
    metavar="ADDRESS",
    help="Ray cluster address (e.g. auto); local cores if omitted.",
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
    owned = {spec for spec in model_class(backend).config_class.__dataclass_fields__}
    foreign = [name for name in settings if name not in owned]
    if foreign:
        applies = "gbdt" if backend != "gbdt" else "|".join(TRANSFORMER_BACKENDS)
        raise ConfigError(f"{flags_of(foreign)} apply to --backend {applies} only")
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


def _read(
    data: str,
    input_format: str | None,
    columns: str | None,
    sources_path: str | None = None,
    embeddings_path: str | None = None,
) -> Battles:
    battles = read_battles(data, **read_options(input_format, columns))
    if embeddings_path:
        battles = attach_embeddings(battles, embeddings_path)
    return attach_sources(battles, sources_path) if sources_path else battles


def format_scores(title: str, values: dict[str, float]) -> str:
    """One line of scores: rows, class prior, length baseline, log loss, accuracy, ECE."""
    return (
        f"{title:<24} rows {values['rows']:>6}  prior {values['prior_log_loss']:.4f}  "
        f"length {values['length_log_loss']:.4f}  log loss {values['log_loss']:.4f}  "
        f"accuracy {values['accuracy']:.3f}  ECE {values['ece']:.3f}"
    )


def _print_scores(overall: dict, by_source: dict, folds: list | None = None) -> None:
    for fold in folds or []:
        click.echo(format_scores(f"fold {fold['fold']}", fold))
    click.echo(format_scores("overall", overall))
    for source, values in by_source.items():
        click.echo(format_scores(f"source {source}", values))


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
    battles = _read(data, input_format, columns, sources_path, embeddings_path)
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
    result = {
        "model_dir": out_dir,
        "backend": backend,
        "battles": len(battles),
        "seconds": round(time.perf_counter() - started, 1),
        "validation": getattr(model, "validation_", None) or None,
    }
    result["warnings"] = training_caveats(result["validation"] or {}, bool(teacher_path))
    for caveat in result["warnings"]:
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
    battles = _read(data, input_format, columns, sources_path, embeddings_path)
    result = cross_validate(make_model, battles, n_folds=n_folds, seed=config.seed)
    if oof_path:
        write_csv(oof_frame(battles, result), oof_path, force=force)
    if output_format == "json":
        echo_json(result.to_dict())
    else:
        _print_scores(result.overall, result.by_source, result.folds)


@main.command("predict", cls=GroupedCommand)
@data_argument
@model_dir_option
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="OUT",
    help="Submission CSV to write: id,winner_model_a,winner_model_b,winner_tie.",
)
@tie_rate_option
@embeddings_option
@engine_option
@address_option
@workers_option
@input_options
@retired_seed_option
@force_option
@predict_settings
def predict_command(
    data: str,
    model_dir: str,
    out_path: str,
    tie_rate: float | None,
    embeddings_path: str | None,
    engine: str,
    address: str | None,
    workers: int,
    input_format: str | None,
    columns: str | None,
    force: bool,
    settings: dict[str, Any],
) -> None:
    """Write a submission: the probabilities of each battle in DATA, in input order.

    Under `accelerate launch` a transformer model's batches are shared out among the
    processes (one GPU each); the main process writes the one submission.
    """
    refuse_overwriting_inputs([out_path], [data, model_dir, embeddings_path])
    check_output(out_path, force, "file")
    started = time.perf_counter()
    read_kwargs = read_options(input_format, columns)
    if engine == "ray":
        if embeddings_path:  # before the import: a flag error must not need the ray extra
            raise ConfigError("--embeddings needs --engine local")
        from arenajudge.engines.ray_engine import predict_with_ray

        ids, proba = predict_with_ray(
            data,
            model_dir,
            tie_rate=tie_rate,
            address=address,
            read_kwargs=read_kwargs,
            runtime=settings,
        )
        if is_main_process():
            write_submission(ids, proba, out_path, force=force)
        n_rows = len(ids)
    else:
        if address:
            raise ConfigError("--address applies to --engine ray only")
        model = load_model(model_dir, settings)
        options = dict(
            read_kwargs=read_kwargs,
            tie_rate=tie_rate,
            embeddings_path=embeddings_path,
            workers=workers,
        )
        if not is_main_process():  # under `accelerate launch`: score its share, rank 0 writes
            for _ in score_blocks(data, model, **options):
                pass
            return
        n_rows = stream_predict(data, model, out_path, force=force, progress=True, **options)
    elapsed = time.perf_counter() - started
    click.echo(
        f"wrote {n_rows:,} predictions to {out_path} ({n_rows / max(elapsed, 1e-9):,.0f} pairs/s)",
        err=True,
    )


@main.command("evaluate", cls=GroupedCommand)
@data_argument
@model_dir_option
@tie_rate_option
@embeddings_option
@sources_option("scores per source")
@workers_option
@input_options
@format_option
@seed_option("the folds of the length-only baseline")
@predict_settings
def evaluate_command(
    data: str,
    model_dir: str,
    tie_rate: float | None,
    embeddings_path: str | None,
    sources_path: str | None,
    workers: int,
    input_format: str | None,
    columns: str | None,
    output_format: str,
    seed: int,
    settings: dict[str, Any],
) -> None:
    """Score a saved model on labelled DATA: log loss vs the class prior, accuracy, ECE."""
    model = load_model(model_dir, settings)
    blocks = score_blocks(
        data,
        model,
        read_kwargs=read_options(input_format, columns),
        tie_rate=tie_rate,
        embeddings_path=embeddings_path,
        progress=True,
        check=check_labelled,
        workers=workers,
    )
    battles, proba, baseline_inputs, keys = _labelled_scores(blocks)
    if sources_path:
        battles = attach_sources(battles, sources_path)
    overall, by_source = evaluate_predictions(battles, proba, seed=seed, **baseline_inputs)
    caveats = score_caveats(battles.target, keys, trained_sections(model), tie_rate, data)
    for caveat in caveats:
        logger.warning(caveat)
    if output_format == "json":
        echo_json({"overall": overall, "by_source": by_source, "warnings": caveats})
    else:
        _print_scores(overall, by_source)


def _labelled_scores(
    blocks: Iterable[ScoredBlock],
) -> tuple[Battles, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Ids, labels and sources of the streamed ``blocks`` (as battles without texts,
    which are dropped block by block), their probabilities, shape (n, 3), what the
    length baseline needs of the texts (``length_diff``, prompt ``groups``) and the
    battles' keys, to tell rows the model was trained on."""
    ids, target, source, proba, diff, groups, keys = [], [], [], [], [], [], []
    for block in blocks:
        keys.append(battle_keys_of(block.battles))
        ids.append(block.ids)
        target.append(block.target)
        source.append(block.battles.source)
        proba.append(block.proba)
        diff.append(relative_length_difference(block.battles))
        groups.append(prompt_keys(block.battles))
    no_turns = [()] * sum(map(len, ids))
    battles = Battles(
        id=np.concatenate(ids),
        prompt=no_turns,
        response_a=no_turns,
        response_b=no_turns,
        target=np.vstack(target),
        source=None if source[0] is None else np.concatenate(source),
    )
    return (
        battles,
        np.vstack(proba),
        {"length_diff": np.concatenate(diff), "groups": np.concatenate(groups)},
        np.concatenate(keys),
    )
