"""Launching the judge service: uvicorn, one process or ``--workers`` processes."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from arenajudge.errors import MissingDependencyError
from arenajudge.serve.app import Settings, create_app, load_ready_model
from arenajudge.serve.limits import check_can_listen

if TYPE_CHECKING:
    from fastapi import FastAPI

WORKER_START_TIMEOUT_S = 60
"""Seconds a ``--workers`` process may take to start before uvicorn replaces it."""
CONFIG_ENV = "ARENAJUDGE_SERVE_CONFIG"
"""Environment variable that hands the settings to ``--workers`` processes."""


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
) -> None:
    """Run the service until interrupted.

    The port is checked and the model loaded (and checked) here first, so a busy port
    or a bad model directory fails with one error before uvicorn starts. With
    ``workers`` > 1 each uvicorn worker process loads its own copy and micro-batches
    its own requests. ``log_level`` (debug, info, warning or error) applies to uvicorn's
    log and the service's own; at ``debug`` a scoring failure logs its traceback
    (without any exception message, which could quote the texts).
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError(
            "uvicorn is not installed; install it with `pip install arenajudge[serve]`"
        ) from exc
    log_config = _log_config(uvicorn.config.LOGGING_CONFIG, log_level)
    check_can_listen(host, port)
    model = load_ready_model(settings.model_dir, settings.runtime)
    if workers == 1:
        uvicorn.run(
            create_app(settings, model),
            host=host,
            port=port,
            log_config=log_config,
            log_level=log_level,
        )
        return
    del model
    os.environ[CONFIG_ENV] = json.dumps(asdict(settings))
    # A worker answers uvicorn's health pings only once its imports are done, which
    # takes longer than uvicorn's default 5 s on a busy machine.
    uvicorn.run(
        f"{__name__}:app_from_env",
        factory=True,
        workers=workers,
        timeout_worker_healthcheck=WORKER_START_TIMEOUT_S,
        host=host,
        port=port,
        log_config=log_config,
        log_level=log_level,
    )


def app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes: settings come from ``CONFIG_ENV``."""
    return create_app(Settings(**json.loads(os.environ[CONFIG_ENV])))


def _log_config(uvicorn_default: dict[str, Any], log_level: str) -> dict[str, Any]:
    """uvicorn's logging config, its request log sent to stderr (stdout is for data) and
    ``arenajudge``'s loggers at ``log_level``: configured here, not only by the CLI, so
    that ``--workers`` processes log alike."""
    log_config = copy.deepcopy(uvicorn_default)
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"
    log_config["loggers"]["arenajudge"] = {
        "handlers": ["default"],
        "propagate": False,
        "level": log_level.upper(),
    }
    return log_config
