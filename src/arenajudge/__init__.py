"""arenajudge: predict which of two chatbot responses a person prefers.

``LABELS``, ``Battles`` and ``read_battles`` are imported on first use, so that
``import arenajudge`` (and the console script's start) stays cheap.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("arenajudge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["LABELS", "Battles", "__version__", "read_battles"]


def __getattr__(name: str) -> Any:
    if name in ("LABELS", "Battles", "read_battles"):
        import arenajudge.data

        return getattr(arenajudge.data, name)
    raise AttributeError(f"module 'arenajudge' has no attribute {name!r}")
