"""The HTTP judge service behind ``arenajudge serve`` (FastAPI + uvicorn, the serve extra).

Split by concern, after vLLM's ``entrypoints/openai``:

- :mod:`~arenajudge.serve.schema`: request and response models, validators, error formats
  (pydantic only);
- :mod:`~arenajudge.serve.batcher`: the micro-batcher (plain asyncio, no web framework);
- :mod:`~arenajudge.serve.model_info`: what ``/v1/model`` tells about the model;
- :mod:`~arenajudge.serve.app`: settings, the model's state, routes, lifespan;
- :mod:`~arenajudge.serve.run`: launching uvicorn;
- :mod:`~arenajudge.serve.limits`: body limits and the port check (plain ASGI, sockets).

The public names below load lazily, so that ``import arenajudge.serve`` (and the CLI,
which imports it) does not import FastAPI; using one without the serve extra raises
:class:`~arenajudge.errors.MissingDependencyError` naming the extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arenajudge.serve.app import Settings, create_app, load_ready_model
    from arenajudge.serve.run import serve

__all__ = ["Settings", "create_app", "load_ready_model", "serve"]

_HOMES = {
    "Settings": "arenajudge.serve.app",
    "create_app": "arenajudge.serve.app",
    "load_ready_model": "arenajudge.serve.app",
    "serve": "arenajudge.serve.run",
}


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
