"""Writing outputs safely: never clobber without ``force``, never leave half a file."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd

from arenajudge.errors import OutputExistsError


def check_output(path: str | Path, force: bool) -> Path:
    """Fail early, before any work, if ``path`` exists and ``force`` is off."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError("already exists; pass --force to overwrite it", file=path)
    return path


@contextmanager
def atomic_path(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it into place only on success.

    Works for files and directories alike; the old ``path`` is replaced only once
    the new one is complete.
    """
    path = check_output(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staged = tmp_dir / path.name
    try:
        yield staged
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(staged, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_csv(frame: pd.DataFrame, path: str | Path, force: bool = False) -> None:
    """Write ``frame`` (no index) to ``path`` atomically."""
    with atomic_path(path, force) as staged:
        frame.to_csv(staged, index=False)


def write_text(text: str, path: str | Path, force: bool = False) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path, force) as staged:
        staged.write_text(text, encoding="utf-8")
