"""``arenajudge serve``."""

from __future__ import annotations

from typing import Any

import click

from arenajudge.cli import main
from arenajudge.cli.options import model_dir_option
from arenajudge.cli.settings import GroupedCommand, predict_settings


@main.command("serve", cls=GroupedCommand)
@model_dir_option
@click.option(
    "--host",
    default="127.0.0.1",
    metavar="HOST",
    show_default=True,
    help="Interface to bind; loopback only unless you name another, e.g. 0.0.0.0 for all.",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, metavar="N", show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    metavar="N",
    show_default=True,
    help="Server processes; each loads its own copy of the model.",
)
@click.option(
    "--max-body",
    type=click.IntRange(min=1),
    metavar="BYTES",
    default=None,
    help="Largest request body in bytes; larger ones get 413.  [default: 1000000]",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    metavar="N",
    default=None,
    help="Most battles in one request; more get 413.  [default: 1000]",
)
@click.option(
    "--show-paths",
    is_flag=True,
    help="GET /v1/model also shows the manifest's file-system paths and Python "
    "version (hidden from clients by default).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Server log detail; debug adds the traceback of a failed scoring (never the texts).",
)
@predict_settings
def serve_command(
    model_dir: str,
    host: str,
    port: int,
    workers: int,
    max_body: int | None,
    max_batch: int | None,
    show_paths: bool,
    log_level: str,
    settings: dict[str, Any],
) -> None:
    """Serve a model over HTTP until interrupted.

    POST /v1/judge scores battles, GET /health says whether the model is loaded,
    GET /v1/model shows its manifest; interactive docs at /docs.
    """
    # Imported here, not at the top: the serve extra (FastAPI) loads only for this command.
    from arenajudge.serve import Settings, serve

    # Unset limits keep the library's defaults, defined once in arenajudge.serve.app.Settings.
    limits = {
        name: value
        for name, value in (("max_body", max_body), ("max_batch", max_batch))
        if value is not None
    }
    serve(
        Settings(model_dir, **limits, runtime=settings or None, show_paths=show_paths),
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
    )
