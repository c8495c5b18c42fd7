"""``arenajudge predict | evaluate``: score battles with a saved model."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import click
import numpy as np

from arenajudge.cli import main
from arenajudge.cli.inputs import embeddings_option, sources_option
from arenajudge.cli.options import (
    data_argument,
    echo_json,
    force_option,
    format_option,
    input_options,
    model_dir_option,
    out_file_option,
    print_scores,
    read_options,
    retired_seed_option,
    seed_option,
    tie_rate_option,
    workers_option,
)
from arenajudge.cli.settings import GroupedCommand, predict_settings
from arenajudge.data.folds import prompt_keys
from arenajudge.data.schema import Battles
from arenajudge.data.sources import attach_sources
from arenajudge.engines.local import ScoredBlock, score_blocks, stream_predict
from arenajudge.errors import ConfigError
from arenajudge.evaluate import (
    battle_keys_of,
    evaluate_predictions,
    relative_length_difference,
    score_caveats,
    trained_sections,
)
from arenajudge.models.contract import check_labelled
from arenajudge.models.registry import load_model
from arenajudge.models.transformer import is_main_process
from arenajudge.outputs import check_output, refuse_overwriting_inputs, write_submission

logger = logging.getLogger("arenajudge.cli")

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


@main.command("predict", cls=GroupedCommand)
@data_argument
@model_dir_option
@out_file_option("Submission CSV to write: id,winner_model_a,winner_model_b,winner_tie.")
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
        options: dict[str, Any] = dict(
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
    overall, by_source = evaluate_predictions(
        battles,
        proba,
        seed=seed,
        length_diff=baseline_inputs["length_diff"],
        groups=baseline_inputs["groups"],
    )
    target = check_labelled(battles)  # the labels of every block, each checked as read
    caveats = score_caveats(target, keys, trained_sections(model), tie_rate, data)
    for caveat in caveats:
        logger.warning(caveat)
    if output_format == "json":
        echo_json({"overall": overall, "by_source": by_source, "warnings": caveats})
    else:
        print_scores(overall, by_source)


def _labelled_scores(
    blocks: Iterable[ScoredBlock],
) -> tuple[Battles, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Ids, labels and sources of the streamed ``blocks`` (as battles without texts,
    which are dropped block by block), their probabilities, shape (n, 3), what the
    length baseline needs of the texts (``length_diff``, prompt ``groups``) and the
    battles' keys, to tell rows the model was trained on."""
    ids, target, proba, diff, groups, keys = [], [], [], [], [], []
    sources: list[np.ndarray] = []
    for block in blocks:
        keys.append(battle_keys_of(block.battles))
        ids.append(block.ids)
        target.append(check_labelled(block.battles))
        if block.battles.source is not None:  # a file's blocks all have sources or none
            sources.append(block.battles.source)
        proba.append(block.proba)
        diff.append(relative_length_difference(block.battles))
        groups.append(prompt_keys(block.battles))
    no_turns: list[tuple[str, ...]] = [()] * sum(map(len, ids))
    battles = Battles(
        id=np.concatenate(ids),
        prompt=no_turns,
        response_a=no_turns,
        response_b=no_turns,
        target=np.vstack(target),
        source=np.concatenate(sources) if sources else None,
    )
    return (
        battles,
        np.vstack(proba),
        {"length_diff": np.concatenate(diff), "groups": np.concatenate(groups)},
        np.concatenate(keys),
    )
