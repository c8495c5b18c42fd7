"""Writing outputs safely: never clobber without ``force``, never leave half a file.

Every command that writes checks its destination with :func:`check_output` before any
work, so a path that cannot be written fails in a second rather than after training,
and writes through :func:`atomic_path`, which stages the output beside its destination
and moves it into place only once it is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from arenajudge.data.schema import LABELS
from arenajudge.errors import OutputError, OutputExistsError

Kind = Literal["file", "directory"]


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (``/`` exists)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def _check_replaceable(path: Path, force: bool, kind: Kind) -> None:
    if not force:
        raise OutputExistsError("already exists; pass --force to overwrite it", file=path)
    if path.is_symlink():
        # os.replace swaps the link itself, so --force would never reach the target
        raise OutputError(f"is a symbolic link (to {os.readlink(path)}); outputs are "
                          "replaced atomically, which would replace the link, not what it "
                          "points to: give the target's own path or remove the link",
                          file=path)
    if kind == "file" and path.is_dir():
        raise OutputError("is a directory, and a file is written here; give a file path "
                          "(directories are never deleted to make room for a file)",
                          file=path)
    if kind == "directory" and not path.is_dir():
        raise OutputError("is a file, and a directory is written here; give a directory "
                          "path", file=path)


def check_output(path: str | Path, force: bool, kind: Kind) -> Path:
    """Fail early, before any work, if ``path`` cannot receive an output of ``kind``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is off.
    OutputError
        ``path`` is a symbolic link, a directory where a file goes (or the reverse),
        under a file, or in a directory this process cannot write.
    """
    path = Path(path)
    if os.path.lexists(path):
        _check_replaceable(path, force, kind)
    existing = _nearest_existing(path.absolute().parent)
    if not existing.is_dir():
        raise OutputError(f"cannot be created: {existing} is a file, not a directory",
                          file=path)
    # staging writes a sibling and renames it (and --force removes the old output): both
    # need write and search permission on the folder that will hold it
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot be written: {existing} is not writable by this user"
                          " (or is on a read-only file system)", file=path)
    return path


@contextmanager
def atomic_path(path: str | Path, force: bool = False, *, kind: Kind = "file"
                ) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it into place only on success.

    ``kind`` says what the caller writes there; the old ``path`` is replaced only once
    the new one is complete, and only by an output of the same kind.
    """
    path = check_output(path, force, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staged = tmp_dir / path.name
    try:
        yield staged
        if kind == "directory" and path.is_dir():
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


def probability_frame(ids: Sequence[str] | np.ndarray, proba: np.ndarray, path: str | Path
                      ) -> pd.DataFrame:
    """``id`` + the three ``LABELS`` columns, refusing probabilities that are not finite
    numbers in [0, 1]: a file of empty or NaN cells must never be written."""
    proba = np.asarray(proba, dtype=float)
    bad = ~np.isfinite(proba).all(axis=1) | (proba < 0).any(axis=1) | (proba > 1).any(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise OutputError(f"was not written: {int(bad.sum())} row(s) of predictions are not "
                          f"probabilities (first: row id {ids[first]}: {proba[first].tolist()});"
                          " the model directory may be damaged, retrain it", file=path)
    frame = pd.DataFrame(proba, columns=list(LABELS))
    frame.insert(0, "id", ids)
    return frame


def write_submission(ids: Sequence[str] | np.ndarray, proba: np.ndarray, path: str | Path,
                     force: bool = False) -> None:
    """Write a submission ``id,winner_model_a,winner_model_b,winner_tie`` atomically;
    see :func:`probability_frame` for what is refused."""
    write_csv(probability_frame(ids, proba, path), path, force=force)
