"""Writing outputs safely: never clobber without ``force``, never leave half a file.

Every command that writes checks its destination with :func:`check_output` before any
work, so a path that cannot be written fails in a second rather than after training,
and writes through :func:`atomic_path`, which stages the output beside its destination
and moves it into place only once it is complete. Publishing without ``force`` never
replaces a path that appeared meanwhile; with ``force`` a directory is replaced only by
one of the same kind that arenajudge wrote (:data:`MARKER`, or a model's manifest), and
the old one is removed only once the new one is in place (the moves themselves:
:mod:`arenajudge.no_replace`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from arenajudge import __version__, no_replace
from arenajudge.data.schema import LABELS
from arenajudge.errors import OutputError, OutputExistsError
from arenajudge.models.manifest import MANIFEST

Kind = Literal["file", "directory"]

MARKER = ".arenajudge-output"
"""JSON file ``{"package": "arenajudge", "output": <kind>, ...}`` that :func:`atomic_path`
writes into every directory output: what ``--force`` may replace."""

# errno values of a write that failed for want of room or of a writable file system:
# with no file name attached, they concern the output being written
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT, errno.EIO}


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (``/`` exists)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def written_output(path: str | Path) -> str | None:
    """The kind of arenajudge output the directory ``path`` holds ("model", "report",
    "demo", ...), read from its :data:`MARKER` (a model saved before markers existed is
    known by its manifest); ``None`` when arenajudge did not write it."""
    path = Path(path)
    marker = _read_json(path / MARKER)
    if (
        isinstance(marker, dict)
        and marker.get("package") == "arenajudge"
        and isinstance(marker.get("output"), str)
    ):
        return marker["output"]
    manifest = _read_json(path / MANIFEST)
    if isinstance(manifest, dict) and manifest.get("package") == "arenajudge":
        return "model"
    return None


def _check_foreign_directory(path: Path, output: str | None) -> None:
    """Refuse to replace a directory arenajudge did not write, or wrote as another kind:
    ``--force`` must never delete a user's folder."""
    try:
        entries = sorted(entry.name for entry in path.iterdir())
    except OSError as exc:
        raise OutputError(
            f"cannot be read to check what it holds ({exc.strerror})", file=path
        ) from None
    if not entries:  # an empty folder: replacing it loses nothing
        return
    found = written_output(path)
    if found is None:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        count = f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
        raise OutputError(
            f"holds {count} ({shown}) and no arenajudge "
            f"manifest or {MARKER} marker; arenajudge replaces only what it "
            "wrote, even with --force: remove it yourself or choose another "
            "--out",
            file=path,
        )
    if output is not None and found != output:
        raise OutputError(
            f"holds an arenajudge {found}, not a {output}; --force replaces "
            "an output only with one of the same kind: remove it yourself or "
            "choose another --out",
            file=path,
        )


def _check_replaceable(path: Path, force: bool, kind: Kind, output: str | None) -> None:
    if not force:
        raise OutputExistsError("already exists; pass --force to overwrite it", file=path)
    if path.is_symlink():
        # os.replace swaps the link itself, so --force would never reach the target
        raise OutputError(
            f"is a symbolic link (to {os.readlink(path)}); outputs are "
            "replaced atomically, which would replace the link, not what it "
            "points to: give the target's own path or remove the link",
            file=path,
        )
    if kind == "file" and path.is_dir():
        raise OutputError(
            "is a directory, and a file is written here; give a file path "
            "(directories are never deleted to make room for a file)",
            file=path,
        )
    if kind == "directory" and not path.is_dir():
        raise OutputError(
            "is a file, and a directory is written here; give a directory path", file=path
        )
    if kind == "directory":
        _check_foreign_directory(path, output)


def check_output(path: str | Path, force: bool, kind: Kind, *, output: str | None = None) -> Path:
    """Fail early, before any work, if ``path`` cannot receive an output of ``kind``.

    ``output`` names what a directory output is ("model", "report", "demo"): ``force``
    replaces only a directory arenajudge wrote as the same (``None``: as anything).

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is off.
    OutputError
        ``path`` is a symbolic link, a directory where a file goes (or the reverse), a
        directory arenajudge did not write (or wrote as another kind), under a file, or
        in a directory this process cannot write.
    """
    # Path() drops a trailing slash: `--out results/` would become a file named results
    if kind == "file" and (
        os.fspath(path).endswith(tuple(filter(None, (os.sep, os.altsep)))) or os.path.isdir(path)
    ):
        what = "is a directory" if os.path.isdir(path) else "ends with a slash, naming a directory"
        raise OutputError(
            f"{what}, and a file is written here; give a file path (e.g. "
            "DIR/name.csv); directories are never deleted to make room for a "
            "file",
            file=path,
        )
    path = Path(path)
    if os.path.lexists(path):
        _check_replaceable(path, force, kind, output)
    existing = _nearest_existing(path.absolute().parent)
    if not existing.is_dir():
        raise OutputError(f"cannot be created: {existing} is a file, not a directory", file=path)
    # staging writes a sibling and renames it (and --force moves the old output aside):
    # both need write and search permission on the folder that will hold it
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"cannot be written: {existing} is not writable by this user"
            " (or is on a read-only file system)",
            file=path,
        )
    return path


def refuse_overwriting_inputs(
    outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None]
) -> None:
    """Refuse, before any work, an output that is also an input of the same command, a
    directory output that holds one (``--out`` a member's MODEL_DIR or a parent of DATA)
    or an existing file inside an input directory (a MODEL_DIR's manifest): replacing it
    would destroy what the command reads. Paths are compared resolved (symbolic links
    and ``..`` followed); ``None`` entries are skipped.

    Raises
    ------
    OutputError
        Naming the output and the input it would overwrite.
    """
    sources = [(given, Path(given).resolve()) for given in inputs if given]
    for out in (path for path in outputs if path):
        target = Path(out).resolve()
        for given, source in sources:
            inside = source in target.parents and os.path.lexists(target)
            if source == target or target in source.parents or inside:
                what = (
                    ""
                    if source == target
                    else f" (it is in {given})"
                    if inside
                    else f" (it holds {given})"
                )
                raise OutputError(
                    f"is also an input of this command{what}; writing it "
                    "would destroy what the command reads: choose another "
                    "output path",
                    file=out,
                )


def _aside(staging: Path, path: Path) -> Path:
    """Where a replaced directory waits, in the staging folder, until the new one is in
    place (a name that cannot be the staged output's own)."""
    return staging / f"{path.name}.replaced"


def _publish(staged: Path, path: Path, force: bool, kind: Kind, output: str | None) -> None:
    """Move the complete ``staged`` output to ``path``; what stands at ``path`` now (not
    when the command started) is checked again: without ``force`` nothing is replaced,
    with it only what :func:`check_output` would allow."""
    for _ in range(2):  # a second round when a path appeared between check and rename
        if not os.path.lexists(path):
            try:
                no_replace.move_no_replace(staged, path)
                return
            except FileExistsError:
                continue
        _check_replaceable(path, force, kind, output)
        if kind == "directory":
            no_replace.replace_directory(staged, path, _aside(staged.parent, path))
        else:
            os.replace(staged, path)
        return
    raise OutputExistsError(
        "already exists (written by another process meanwhile); pass --force to overwrite it",
        file=path,
    )


def _write_marker(directory: Path, output: str | None) -> None:
    if directory.is_dir():  # the caller may have written nothing
        (directory / MARKER).write_text(
            json.dumps(
                {"package": "arenajudge", "output": output or "output", "version": __version__}
            ),
            encoding="utf-8",
        )


def _concerns_output(name: str | bytes, path: Path, staging: Path | None) -> bool:
    """Whether the file ``name`` of an OSError is the output ``path``, inside it or its
    staging folder, a folder to be created for it, or its staging folder itself."""
    failed, path = Path(os.fsdecode(name)).absolute(), path.absolute()
    places = [path] + ([staging.absolute()] if staging is not None else [])
    return (
        any(failed == place or place in failed.parents for place in places)
        or failed in path.parents
        or (failed.parent == path.parent and failed.name.startswith(f".{path.name}."))
    )


def _os_error(exc: OSError, path: Path, staging: Path | None) -> Exception:
    """``exc`` as the OutputError of ``path`` when it concerns the output (see
    :func:`_concerns_output`, or a write error without a file name), else ``exc``."""
    if not (
        exc.errno in _WRITE_ERRNOS
        if exc.filename is None
        else _concerns_output(exc.filename, path, staging)
    ):
        return exc
    reason = exc.strerror or str(exc)
    return OutputError(
        f"could not be written ({reason[:1].lower() + reason[1:]}); any "
        "previous output there is kept",
        file=path,
    )


@contextmanager
def atomic_path(
    path: str | Path, force: bool = False, *, kind: Kind = "file", output: str | None = None
) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it into place only on success.

    ``kind`` says what the caller writes there and ``output`` (directories) what it is
    ("model", "report", "demo"): a directory output gets a :data:`MARKER` naming it. The
    old ``path`` is replaced only with ``force``, only once the new one is complete, and
    only by an output of the same kind. An error of the operating system while staging or
    publishing (disk full, file too large, read-only file system) becomes an OutputError
    naming ``path``; the old output is kept.
    """
    path = check_output(path, force, kind, output=output)
    tmp_dir, published = None, False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        staged = tmp_dir / path.name
        yield staged
        if kind == "directory":
            _write_marker(staged, output)
        _publish(staged, path, force, kind, output)
        published = True
    except OSError as exc:
        converted = _os_error(exc, path, tmp_dir)
        if converted is exc:
            raise
        raise converted from exc
    finally:
        # an old output that could not be moved back stays in the staging folder
        if tmp_dir is not None and (published or not _aside(tmp_dir, path).exists()):
            shutil.rmtree(tmp_dir, ignore_errors=True)


def write_csv(frame: pd.DataFrame, path: str | Path, force: bool = False) -> None:
    """Write ``frame`` (no index) to ``path`` atomically."""
    with atomic_path(path, force) as staged:
        frame.to_csv(staged, index=False)


def write_text(text: str, path: str | Path, force: bool = False) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path, force) as staged:
        staged.write_text(text, encoding="utf-8")


def probability_frame(
    ids: Sequence[str] | np.ndarray, proba: np.ndarray, path: str | Path
) -> pd.DataFrame:
    """``id`` + the three ``LABELS`` columns, refusing probabilities that are not finite
    numbers in [0, 1]: a file of empty or NaN cells must never be written."""
    proba = np.asarray(proba, dtype=float)
    bad = ~np.isfinite(proba).all(axis=1) | (proba < 0).any(axis=1) | (proba > 1).any(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise OutputError(
            f"was not written: {int(bad.sum())} row(s) of predictions are not "
            f"probabilities (first: row id {ids[first]}: {proba[first].tolist()});"
            " the model directory may be damaged, retrain it",
            file=path,
        )
    frame = pd.DataFrame(proba, columns=list(LABELS))
    frame.insert(0, "id", ids)
    return frame


def write_submission(
    ids: Sequence[str] | np.ndarray, proba: np.ndarray, path: str | Path, force: bool = False
) -> None:
    """Write a submission ``id,winner_model_a,winner_model_b,winner_tie`` atomically;
    see :func:`probability_frame` for what is refused."""
    write_csv(probability_frame(ids, proba, path), path, force=force)
