"""Moving a finished output into place without ever replacing what stands there.

A plain rename silently replaces a file or an empty directory that appeared at the
destination a moment ago (another run writing the same ``--out``). On Linux,
``renameat2(RENAME_NOREPLACE)`` refuses atomically; elsewhere a directory first claims
its name with ``mkdir`` and a file is hard-linked, both of which fail when the name is
taken. :mod:`arenajudge.outputs` decides what may be replaced; this module only moves.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections.abc import Callable
from pathlib import Path

from arenajudge.errors import OutputError


def _libc_renameat2() -> Callable[..., int] | None:
    """glibc's ``renameat2`` (Linux 3.15+, glibc 2.28+), or ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _libc_renameat2()
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def move_no_replace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing with FileExistsError if ``dst`` exists, even if
    it appeared a moment ago: a plain rename would silently replace it (a file, or an
    empty directory)."""
    if _RENAMEAT2 is not None:
        if (
            _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
            == 0
        ):
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # else: unsupported here
            raise OSError(code, os.strerror(code), str(dst))
    if src.is_dir():
        os.mkdir(dst)  # claims the name (FileExistsError if taken) ...
        try:
            os.rename(src, dst)  # ... and a rename replaces only that empty directory
        except BaseException:
            os.rmdir(dst)
            raise
        return
    try:
        os.link(src, dst)  # a link never replaces: FileExistsError if taken
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system: check, then rename
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst)) from None
        os.replace(src, dst)
        return
    os.unlink(src)


def replace_directory(staged: Path, path: Path, aside: Path) -> None:
    """Put ``staged`` in place of the directory ``path``: the old one is moved to
    ``aside`` (in the staging folder, removed with it) and moved back if the new one
    cannot be put in place."""
    os.rename(path, aside)
    try:
        move_no_replace(staged, path)
    except BaseException:
        try:
            move_no_replace(aside, path)
        except OSError:
            raise OutputError(
                f"was not replaced, and its old content could not be moved "
                f"back: it is kept in {aside}",
                file=path,
            ) from None
        raise
