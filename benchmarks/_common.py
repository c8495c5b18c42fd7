"""Helpers shared by the benchmarks: where the real data lives."""

from __future__ import annotations

import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_file(name: str) -> Path:
    """The path of a real data file; exit with a clear message when it is absent."""
    path = DATA / name
    if not path.exists():
        sys.exit(f"error: {path} is absent; benchmarks read ../shared/data beside the repo")
    return path
