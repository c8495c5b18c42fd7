"""What a command reads besides its options: DATA's battles, with outside embeddings
(``--embeddings``) and sources (``--sources``) attached by id."""

from __future__ import annotations

from collections.abc import Callable

import click

from arenajudge.cli.options import read_options
from arenajudge.data.embeddings import attach_embeddings
from arenajudge.data.readers import read_battles
from arenajudge.data.schema import Battles
from arenajudge.data.sources import attach_sources

embeddings_option = click.option(
    "--embeddings",
    "embeddings_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    metavar="EMB.parquet",
    help="Outside embeddings from `arenajudge embed`, attached by id as extra features of "
    "the CPU model (give the same kind for predict and evaluate).",
)


def sources_option(use: str) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """``--sources FILE``, saying what the sources are ``use``d for on this command."""
    return click.option(
        "--sources",
        "sources_path",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        metavar="FILE",
        help=f"CSV of id,source (else a `source` column in DATA): {use}.",
    )


def read_input(
    data: str,
    input_format: str | None,
    columns: str | None,
    sources_path: str | None = None,
    embeddings_path: str | None = None,
) -> Battles:
    """DATA's battles read with the shared ``--input-format``/``--columns`` options, with
    the embeddings of ``embeddings_path`` and the sources of ``sources_path`` attached."""
    battles = read_battles(data, **read_options(input_format, columns))
    if embeddings_path:
        battles = attach_embeddings(battles, embeddings_path)
    return attach_sources(battles, sources_path) if sources_path else battles
