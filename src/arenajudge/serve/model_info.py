"""What the judge service tells clients about its model: its identity (name, backend,
version, manifest hash) and its manifest as ``GET /v1/model`` shows it, without the
server's file-system paths, interpreter details or the trained battles' keys.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arenajudge.models.manifest import manifest_sha256, read_manifest
from arenajudge.serve.schema import ModelInfo

INTERPRETER_KEYS = frozenset(
    {"python", "python_version", "executable", "platform", "interpreter", "hostname"}
)
"""Manifest keys, at any depth, that describe the machine rather than the model."""
HIDDEN_PATH = "(hidden; start the service with --show-paths to show it)"
_PATH_KEYS = frozenset({"file", "path", "dir", "directory", "folder"})
_PATH_KEY_ENDINGS = ("_file", "_path", "_dir", "_directory", "_folder")
# absolute POSIX or Windows, home-relative or dot-relative
_PATH_SHAPE = re.compile(r"^(?:[/\\~]|[A-Za-z]:[/\\]|\.\.?(?:[/\\]|$))")


def model_info(model_dir: str | Path) -> tuple[ModelInfo, dict[str, Any]]:
    """Name, backend, version and manifest hash of a model directory, and its manifest.

    The hash is :func:`~arenajudge.models.manifest.manifest_sha256`, the one an ensemble
    or cascade records for its members, so a client can match the two.
    """
    manifest = read_manifest(model_dir)
    info = ModelInfo(
        name=Path(model_dir).resolve().name,
        backend=str(manifest["backend"]),
        version=str(manifest.get("package_version", "")),
        manifest_sha256=manifest_sha256(model_dir),
    )
    return info, manifest


def shown_manifest(manifest: dict[str, Any], *, show_paths: bool) -> dict[str, Any]:
    """``manifest`` as ``GET /v1/model`` sends it: never the trained battles' keys, and
    paths and interpreter details only with ``show_paths`` (``--show-paths``)."""
    return without_battle_keys(manifest if show_paths else public_manifest(manifest))


def public_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` as ``/v1/model`` shows it by default: interpreter details left out and
    every file-system path replaced by ``HIDDEN_PATH`` (training files, a base model's
    directory, member and checkpoint directories), so clients learn nothing of the
    server's disk. Hub ids and the model's own file names (``artifacts``) stay.

    A string is a path when its key says so (``file``, ``path``, ``*_dir``, ...), when it
    looks like one (absolute, ``~``, ``./``), when a model source the manifest records
    is a local directory or file (its ``given`` name, wherever it appears), or when it
    names an existing file or directory with a separator in it.
    """
    local = {
        str(source[name])
        for source in _dicts(manifest)
        if source.get("kind") in ("directory", "gguf")
        for name in ("given", "name")
        if name in source
    }

    def clean(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: clean(v, str(k)) for k, v in value.items() if k not in INTERPRETER_KEYS}
        if isinstance(value, list):
            return [clean(item, key) for item in value]
        if isinstance(value, str) and value and (value in local or _is_path(key, value)):
            return HIDDEN_PATH
        return value

    return clean(manifest, "")


def without_battle_keys(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` without the keys of the battles the model was trained on: 8 bytes a
    battle (600 KB for the Kaggle set) that would let a client test whether a battle
    was in the training data; ``evaluate`` and ``report`` read them from the disk."""
    training = manifest.get("training")
    if not isinstance(training, dict) or "battle_keys" not in training:
        return manifest
    return {**manifest, "training": {k: v for k, v in training.items() if k != "battle_keys"}}


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    """Every mapping nested in ``value``, itself included."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _dicts(item)


def _is_path(key: str, value: str) -> bool:
    if key in _PATH_KEYS or key.endswith(_PATH_KEY_ENDINGS) or _PATH_SHAPE.match(value):
        return True
    try:
        return ("/" in value or os.sep in value) and Path(value).exists()
    except (OSError, ValueError):  # too long or not a valid name: not a path here
        return False
