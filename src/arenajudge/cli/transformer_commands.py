"""``arenajudge embed``.

Nothing here imports torch: the library functions called do, once they run. (The
transformer flags of ``train`` and ``cv`` come from TransformerConfig's fields, see
:func:`arenajudge.cli.settings.config_options`.)
"""

from __future__ import annotations

import click

from arenajudge.cli import main
from arenajudge.cli.options import (
    data_argument,
    echo_json,
    force_option,
    format_option,
    input_options,
    out_file_option,
    read_options,
    retired_seed_option,
)
from arenajudge.config import field_help
from arenajudge.data.readers import read_battles
from arenajudge.features.pooling import EMBED_COMMAND
from arenajudge.models.transformer.config import DEVICES, LOAD_IN, TransformerConfig
from arenajudge.outputs import check_output, refuse_overwriting_inputs


@main.command("embed")
@data_argument
@click.option(
    "--base",
    required=True,
    metavar="MODEL",
    help="An encoder, or a decoder LM such as Gemma-2: a local Hugging Face model "
    "directory, a hub id (org/name[@revision]) or a .gguf file.",
)
@out_file_option("Parquet file to write: id, prompt_emb, response_a_emb, response_b_emb.")
@click.option(
    "--max-length",
    type=click.IntRange(min=8),
    default=EMBED_COMMAND.max_length,
    metavar="N",
    show_default=True,
    help="Tokens per text; longer texts keep their latest turns.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=16,
    metavar="N",
    show_default=True,
    help="Texts per forward pass.",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help=field_help(TransformerConfig, "device"),
)
@click.option(
    "--load-in",
    type=click.Choice(LOAD_IN),
    default="16bit",
    show_default=True,
    help="Weights precision: 16bit, or 8bit/4bit through bitsandbytes (on the GPU, "
    "else on the CPU).",
)
@input_options
@format_option
@retired_seed_option
@force_option
def embed_command(
    data: str,
    base: str,
    out_path: str,
    max_length: int,
    batch_size: int,
    device: str,
    load_in: str,
    input_format: str | None,
    columns: str | None,
    output_format: str,
    force: bool,
) -> None:
    """Embed prompts and responses with a Hugging Face model: mean-pooled last hidden states,
    for `arenajudge train --embeddings`."""
    from arenajudge.models.transformer.embed import embed_battles, write_embeddings

    refuse_overwriting_inputs([out_path], [data, base])
    check_output(out_path, force, "file")
    battles = read_battles(data, **read_options(input_format, columns))
    vectors, metadata = embed_battles(
        battles, base, max_length=max_length, batch_size=batch_size, device=device, load_in=load_in
    )
    write_embeddings(battles.id, vectors, metadata, out_path, force=force)
    summary = {"out": out_path, "rows": len(battles), **metadata}
    if output_format == "json":
        echo_json(summary)
    else:
        click.echo(
            f"wrote {len(battles):,} battles x 3 embeddings of {metadata['dim']} "
            f"dimensions ({metadata['model_type']}) to {out_path}"
        )
