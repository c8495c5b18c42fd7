"""``arenajudge embed``, and the transformer flags that ``arenajudge train`` carries.

Nothing here imports torch: the library functions called do, once they run.
"""

from __future__ import annotations

import functools
from dataclasses import fields
from typing import Any, Callable

import click

from arenajudge.cli import main
from arenajudge.cli.options import (data_argument, echo_json, force_option, format_option,
                                    input_options, read_options, seed_option)
from arenajudge.data.readers import read_battles
from arenajudge.models.transformer.config import (DEVICES, LOAD_IN, LOSSES, PRECISIONS,
                                                  TransformerConfig)
from arenajudge.outputs import check_output

_HELP = {f.name: f.metadata["help"] for f in fields(TransformerConfig)}


_TRAIN_FLAGS: dict[str, dict[str, Any]] = {
    "base": {"type": click.Path(file_okay=False), "metavar": "DIR"},
    "max_length": {"type": int},
    "epochs": {"type": int},
    "max_steps": {"type": int},
    "batch_size": {"type": int},
    "grad_accum": {"type": int},
    "lr": {"type": float},
    "lora_r": {"type": int},
    "lora_alpha": {"type": int},
    "lora_targets": {"metavar": "NAMES"},
    "load_in": {"type": click.Choice(LOAD_IN)},
    "device": {"type": click.Choice(DEVICES)},
    "precision": {"type": click.Choice(PRECISIONS)},
    "loss": {"type": click.Choice(LOSSES)},
    "val_fraction": {"type": float},
    "eval_every": {"type": int, "metavar": "STEPS"},
    "patience": {"type": int},
    "checkpoint_dir": {"type": click.Path(file_okay=False), "metavar": "DIR"},
    "gradient_checkpointing": {"is_flag": True},
    "merge_lora": {"is_flag": True},
}
"""TransformerConfig fields settable from ``train``; each flag's help is the field's."""


def _option(name: str, settings: dict[str, Any]) -> Callable:
    """The ``--kebab-case`` flag of field ``name``; ``None`` when not given, so the
    config default applies."""
    flag = "--" + name.replace("_", "-")
    settings = dict(settings)
    if settings.pop("is_flag", False):
        flag = f"{flag}/--no-{flag[2:]}"
    return click.option(flag, name, default=None, help=_HELP[name], **settings)


def transformer_options(command: Callable) -> Callable:
    """Add the ``--model siamese|cross|llm`` flags to a command.

    The command receives them as one keyword argument ``transformer``: a dict of the
    flags given, keyed by TransformerConfig field (ready for
    :func:`arenajudge.models.transformer.build_model`).
    """
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in _TRAIN_FLAGS}
        return command(*args, transformer={k: v for k, v in given.items() if v is not None},
                       **kwargs)

    for name, settings in reversed(_TRAIN_FLAGS.items()):
        wrapper = _option(name, settings)(wrapper)
    return wrapper


@main.command("embed")
@data_argument
@click.option("--base", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="A local Hugging Face model directory: an encoder, or a decoder LM "
                   "such as Gemma-2.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Parquet file to write: id, prompt_emb, response_a_emb, response_b_emb.")
@click.option("--max-length", type=int, default=512, show_default=True,
              help="Tokens per text; longer texts keep their latest turns.")
@click.option("--batch-size", type=int, default=16, show_default=True,
              help="Texts per forward pass.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help=_HELP["device"])
@click.option("--load-in", type=click.Choice(LOAD_IN), default="16bit", show_default=True,
              help="Weights precision: 16bit, or 8bit/4bit through bitsandbytes (CUDA).")
@input_options
@format_option
@seed_option
@force_option
def embed_command(data: str, base: str, out_path: str, max_length: int, batch_size: int,
                  device: str, load_in: str, input_format: str | None, columns: str | None,
                  output_format: str, seed: int, force: bool) -> None:
    """Embed prompts and responses with a local model: mean-pooled last hidden states,
    for `arenajudge train --embeddings`."""
    from arenajudge.data.embeddings import write_embeddings
    from arenajudge.models.transformer.embed import embed_battles

    check_output(out_path, force, "file")
    battles = read_battles(data, seed=seed, **read_options(input_format, columns))
    vectors, metadata = embed_battles(battles, base, max_length=max_length,
                                      batch_size=batch_size, device=device, load_in=load_in)
    write_embeddings(battles.id, vectors, metadata, out_path, force=force)
    summary = {"out": out_path, "rows": len(battles), **metadata}
    if output_format == "json":
        echo_json(summary)
    else:
        click.echo(f"wrote {len(battles):,} battles x 3 embeddings of {metadata['dim']} "
                   f"dimensions ({metadata['model_type']}) to {out_path}")
