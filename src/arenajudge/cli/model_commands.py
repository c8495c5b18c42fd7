"""``arenajudge train | cv | predict | evaluate``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import click
import numpy as np
import pandas as pd

from arenajudge.calibration import check_tie_rate
from arenajudge.cli import main
from arenajudge.cli.options import (data_argument, echo_json, force_option, format_option,
                                    input_options, read_options, seed_option)
from arenajudge.cli.transformer_commands import transformer_options
from arenajudge.data.embeddings import attach_embeddings
from arenajudge.data.readers import read_battles
from arenajudge.data.schema import LABELS, Battles
from arenajudge.engines.local import ScoredBlock, score_blocks, stream_predict
from arenajudge.errors import ConfigError
from arenajudge.evaluate import attach_sources, cross_validate, oof_frame, scores_by_source
from arenajudge.metrics import scores
from arenajudge.models.base import PreferenceModel, check_labelled, load_model
from arenajudge.models.gbdt import GBDTConfig, GBDTModel
from arenajudge.outputs import check_output, write_csv

logger = logging.getLogger("arenajudge.cli")

config_option = click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
    help="YAML or JSON file of model settings (GBDTConfig fields); flags override it.")
encoder_option = click.option(
    "--encoder", type=click.Path(exists=True, file_okay=False), default=None,
    help="Local Hugging Face encoder directory to embed texts with instead of WordLlama "
         "(needs the transformers extra).")
embeddings_option = click.option(
    "--embeddings", "embeddings_path", type=click.Path(exists=True, dir_okay=False),
    default=None, help="EMB.parquet from `arenajudge embed`: outside embeddings as extra "
                       "features of the CPU model (the same for predict and evaluate).")
sources_option = click.option(
    "--sources", "sources_path", type=click.Path(exists=True, dir_okay=False), default=None,
    help="CSV of id,source (or a `source` column in DATA): metrics per source; in "
         "training, a large source is kept from drowning out small ones (source_balance).")
tie_rate_option = click.option(
    "--tie-rate", type=float, default=None,
    help="Shift predictions to this share of ties (e.g. 0.31 for Kaggle's arena data).")
backend_option = click.option(
    "--model", "backend", type=click.Choice(["gbdt", "siamese", "cross", "llm"]),
    default="gbdt", show_default=True,
    help="Model family: the CPU LightGBM model, or a transformer backend (GPU; needs "
         "--base and the transformers extra).")
engine_option = click.option(
    "--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
    help="Score in this process, or in parallel Ray actors (needs the ray extra).")
address_option = click.option(
    "--address", default=None, help="Ray cluster address (e.g. auto); local cores if omitted.")
model_option = click.option("--model", "model_dir", required=True,
                            type=click.Path(exists=True, file_okay=False),
                            help="A model directory written by `arenajudge train`.")


def _load_config(config_path: str | None, seed: int, encoder: str | None) -> GBDTConfig:
    values: dict[str, Any] = {}
    if config_path:
        import yaml

        try:
            values = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: is not valid YAML/JSON ({exc})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{config_path}: must hold a mapping of setting: value")
    values["seed"] = seed
    if encoder:
        values["encoder"] = encoder
    config = GBDTConfig.from_dict(values)
    config.validate()
    logger.info("config: %s", json.dumps(config.__dict__))
    return config


def _model_factory(backend: str, config: GBDTConfig, transformer: dict[str, Any],
                   seed: int, embeddings_path: str | None) -> Callable[[], PreferenceModel]:
    """A function making a fresh, unfitted model of ``backend``; checks options first."""
    if embeddings_path and backend != "gbdt":
        raise ConfigError("--embeddings applies to --model gbdt only")
    if backend == "gbdt":
        if transformer:
            flags = ", ".join("--" + k.replace("_", "-") for k in transformer)
            raise ConfigError(f"{flags} apply to --model siamese|cross|llm only")
        return lambda: GBDTModel(config)
    from arenajudge.models.transformer import build_model

    options = {**transformer, "seed": seed}
    build_model(backend, options)  # fails fast on a bad --base, before any data is read
    return lambda: build_model(backend, options)


def _read(data: str, input_format: str | None, columns: str | None, seed: int,
          sources_path: str | None = None, embeddings_path: str | None = None) -> Battles:
    battles = read_battles(data, seed=seed, **read_options(input_format, columns))
    if embeddings_path:
        battles = attach_embeddings(battles, embeddings_path)
    return attach_sources(battles, sources_path) if sources_path else battles


def _format_scores(title: str, values: dict[str, float]) -> str:
    return (f"{title:<24} rows {values['rows']:>6}  log loss {values['log_loss']:.4f}  "
            f"prior {values['prior_log_loss']:.4f}  accuracy {values['accuracy']:.3f}  "
            f"ECE {values['ece']:.3f}")


def _print_scores(overall: dict, by_source: dict, folds: list | None = None) -> None:
    for fold in folds or []:
        click.echo(_format_scores(f"fold {fold['fold']}", fold))
    click.echo(_format_scores("overall", overall))
    for source, values in by_source.items():
        click.echo(_format_scores(f"source {source}", values))


@main.command("train")
@data_argument
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Model directory to write.")
@backend_option
@config_option
@encoder_option
@embeddings_option
@transformer_options
@sources_option
@input_options
@seed_option
@force_option
def train_command(data: str, out_dir: str, backend: str, config_path: str | None,
                  encoder: str | None, embeddings_path: str | None,
                  transformer: dict[str, Any], sources_path: str | None,
                  input_format: str | None, columns: str | None, seed: int,
                  force: bool) -> None:
    """Train a preference model on labelled DATA and save it to --out."""
    check_output(out_dir, force)
    make_model = _model_factory(backend, _load_config(config_path, seed, encoder),
                                transformer, seed, embeddings_path)
    battles = _read(data, input_format, columns, seed, sources_path, embeddings_path)
    check_labelled(battles)
    started = time.perf_counter()
    logger.info("training on %d battles", len(battles))
    model = make_model().fit(battles)
    model.save(out_dir, force=force)
    if backend != "gbdt":
        from arenajudge.models.transformer import is_main_process

        if not is_main_process():  # under `accelerate launch` rank 0 reports
            return
    holdout = getattr(model, "validation_", {})
    summary = f"trained on {len(battles):,} battles in {time.perf_counter() - started:.1f} s"
    if holdout.get("log_loss_raw") is not None:
        summary += (f"; holdout log loss {holdout['log_loss_raw']:.4f} before calibration "
                    f"(temperature {holdout['temperature']:.2f})")
    click.echo(f"{summary}; saved to {out_dir}", err=True)


@main.command("cv")
@data_argument
@click.option("--folds", "n_folds", type=int, default=5, show_default=True,
              help="Number of prompt-grouped folds.")
@click.option("--oof", "oof_path", type=click.Path(dir_okay=False), default=None,
              help="Write out-of-fold predictions (id,fold + the three probabilities).")
@backend_option
@config_option
@encoder_option
@embeddings_option
@transformer_options
@sources_option
@input_options
@format_option
@seed_option
@force_option
def cv_command(data: str, n_folds: int, oof_path: str | None, backend: str,
               config_path: str | None, encoder: str | None, embeddings_path: str | None,
               transformer: dict[str, Any], sources_path: str | None,
               input_format: str | None, columns: str | None, output_format: str, seed: int,
               force: bool) -> None:
    """Prompt-grouped cross-validation: per-fold, overall and per-source scores."""
    if oof_path:
        check_output(oof_path, force)
    make_model = _model_factory(backend, _load_config(config_path, seed, encoder),
                                transformer, seed, embeddings_path)
    battles = _read(data, input_format, columns, seed, sources_path, embeddings_path)
    result = cross_validate(make_model, battles, n_folds=n_folds, seed=seed)
    if oof_path:
        write_csv(oof_frame(battles, result), oof_path, force=force)
    if output_format == "json":
        echo_json(result.to_dict())
    else:
        _print_scores(result.overall, result.by_source, result.folds)


@main.command("predict")
@data_argument
@model_option
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Submission CSV to write: id,winner_model_a,winner_model_b,winner_tie.")
@tie_rate_option
@embeddings_option
@engine_option
@address_option
@input_options
@seed_option
@force_option
def predict_command(data: str, model_dir: str, out_path: str, tie_rate: float | None,
                    embeddings_path: str | None, engine: str, address: str | None,
                    input_format: str | None, columns: str | None, seed: int,
                    force: bool) -> None:
    """Write a submission: the probabilities of each battle in DATA, in input order."""
    check_output(out_path, force)
    check_tie_rate(tie_rate)
    started = time.perf_counter()
    read_kwargs = {**read_options(input_format, columns), "seed": seed}
    if engine == "ray":
        from arenajudge.engines.ray_engine import predict_with_ray

        if embeddings_path:
            raise ConfigError("--embeddings needs --engine local")
        ids, proba = predict_with_ray(data, model_dir, tie_rate=tie_rate, address=address,
                                      read_kwargs=read_kwargs)
        submission = pd.DataFrame(proba, columns=list(LABELS))
        submission.insert(0, "id", ids)
        write_csv(submission, out_path, force=force)
        n_rows = len(ids)
    else:
        if address:
            raise ConfigError("--address applies to --engine ray only")
        n_rows = stream_predict(data, load_model(model_dir), out_path, force=force,
                                read_kwargs=read_kwargs, tie_rate=tie_rate,
                                embeddings_path=embeddings_path, progress=True)
    elapsed = time.perf_counter() - started
    click.echo(f"wrote {n_rows:,} predictions to {out_path} "
               f"({n_rows / max(elapsed, 1e-9):,.0f} pairs/s)", err=True)


@main.command("evaluate")
@data_argument
@model_option
@tie_rate_option
@embeddings_option
@sources_option
@input_options
@format_option
@seed_option
def evaluate_command(data: str, model_dir: str, tie_rate: float | None,
                     embeddings_path: str | None, sources_path: str | None,
                     input_format: str | None, columns: str | None, output_format: str,
                     seed: int) -> None:
    """Score a saved model on labelled DATA: log loss vs the class prior, accuracy, ECE."""
    model = load_model(model_dir)
    blocks = score_blocks(data, model, read_kwargs={**read_options(input_format, columns),
                                                    "seed": seed},
                          tie_rate=tie_rate, embeddings_path=embeddings_path, progress=True,
                          check=check_labelled)
    battles, proba = _labelled_scores(blocks)
    if sources_path:
        battles = attach_sources(battles, sources_path)
    overall = scores(battles.target, proba)
    by_source = scores_by_source(battles, proba)
    if output_format == "json":
        echo_json({"overall": overall, "by_source": by_source})
    else:
        _print_scores(overall, by_source)


def _labelled_scores(blocks: Iterable[ScoredBlock]) -> tuple[Battles, np.ndarray]:
    """Ids, labels and sources of the streamed ``blocks`` (as battles without texts,
    which are dropped block by block) and their probabilities, shape (n, 3)."""
    ids, target, source, proba = [], [], [], []
    for block in blocks:
        ids.append(block.ids)
        target.append(block.target)
        source.append(block.battles.source)
        proba.append(block.proba)
    no_turns = [()] * sum(map(len, ids))
    battles = Battles(id=np.concatenate(ids), prompt=no_turns, response_a=no_turns,
                      response_b=no_turns, target=np.vstack(target),
                      source=None if source[0] is None else np.concatenate(source))
    return battles, np.vstack(proba)
