"""MODEL_DIR/manifest.json: what a saved model is and how to check it before loading.

The manifest records the format and package versions, the backend, the resolved config,
the label order, a feature-schema hash, a training-data summary, metrics, and the
sha256 of every other file in the directory. :func:`read_manifest` refuses a model
from an incompatible version, with another label order or of another backend; with
``verify`` it also refuses a missing or changed artifact file *before* any native
loader (LightGBM, safetensors, torch) sees its bytes, so a damaged file is one clear
error, never a crash.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from arenajudge import __version__, safe_json
from arenajudge.data.schema import LABELS, Battles
from arenajudge.errors import ArenaJudgeError, ConfigError, ModelLoadError
from arenajudge.hashing import battle_keys, encode_keys, file_sha256

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
"""2: the manifest lists the sha256 of every artifact file (``artifacts``)."""


def schema_hash(feature_names: list[str]) -> str:
    """A short stable hash of the feature schema, to refuse mismatched artifacts."""
    return hashlib.sha256("\n".join(feature_names).encode()).hexdigest()[:16]


def artifact_hashes(path: Path) -> dict[str, str]:
    """sha256 of every file below the directory ``path`` except the manifest, keyed by
    its POSIX path relative to ``path``."""
    files = (file for file in sorted(path.rglob("*")) if file.is_file())
    return {
        file.relative_to(path).as_posix(): file_sha256(file)
        for file in files
        if file.relative_to(path).as_posix() != MANIFEST
    }


def content_sha256(battles: Battles) -> str:
    """sha256 of the battles' ids and texts, in file order: the manifest's ``sha256`` of
    the training data."""
    digest = hashlib.sha256()
    for row_id, prompt, a, b in zip(
        battles.id, battles.prompt, battles.response_a, battles.response_b
    ):
        digest.update(
            json.dumps(
                [str(row_id), prompt, a, b],
                ensure_ascii=False,
            ).encode("utf-8", "surrogatepass")
        )
    return digest.hexdigest()


def data_summary(battles: Battles) -> dict[str, Any]:
    """Rows, class counts, a content hash (:func:`content_sha256`) and the battle keys
    (:func:`arenajudge.hashing.battle_keys`) of the training data, for the manifest."""
    summary: dict[str, Any] = {
        "rows": len(battles),
        "file": battles.path,
        "sha256": content_sha256(battles),
        # which battles it saw, for `evaluate` and `report` to
        # tell an in-sample score (8 bytes a distinct battle)
        "battle_keys": encode_keys(
            battle_keys(battles.prompt, battles.response_a, battles.response_b)
        ),
    }
    if battles.source is not None:
        names, counts = np.unique(battles.source.astype(str), return_counts=True)
        summary["sources"] = dict(zip(names.tolist(), counts.tolist()))
    if battles.labelled:
        summary["class_counts"] = dict(
            zip(LABELS, map(int, np.bincount(battles.label, minlength=len(LABELS))))
        )
    return summary


def write_manifest(
    path: Path,
    *,
    backend: str,
    config: dict[str, Any],
    feature_schema: str | None,
    training: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    **extra: Any,
) -> None:
    """Write ``manifest.json`` into the model directory ``path``, last: it hashes every
    artifact file already written there. ``extra`` adds backend-specific sections."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "package": "arenajudge",
        "package_version": __version__,
        "python": platform.python_version(),
        "backend": backend,
        "labels": list(LABELS),
        "config": config,
        "feature_schema": feature_schema,
        "training": training,
        "metrics": metrics or {},
        **extra,
        "artifacts": artifact_hashes(path),
    }
    (path / MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8"
    )


_STRUCTURE: dict[tuple[str, ...], tuple[type, ...]] = {
    ("format_version",): (int,),
    ("package",): (str,),
    ("package_version",): (str,),
    ("python",): (str,),
    ("backend",): (str,),
    ("labels",): (list,),
    ("config",): (dict,),
    ("feature_schema",): (str, type(None)),
    ("training",): (dict,),
    ("metrics",): (dict,),
    ("artifacts",): (dict,),
}
"""The type of every field :func:`write_manifest` writes, keyed by its path."""
_OPTIONAL: dict[tuple[str, ...], tuple[type, ...]] = {
    ("members",): (list,),
    ("training", "model_style"): (dict,),
    ("training", "model_style", "used"): (bool,),
    ("training", "model_style", "folds"): (int,),
    ("training", "embeddings"): (dict, str),
    ("training", "truncation"): (dict,),
    ("training", "history"): (list,),
    ("training", "teacher"): (dict,),
    ("training", "class_counts"): (dict,),
    ("training", "sources"): (dict,),
    ("training", "source_weight"): (dict,),
    ("training", "rows"): (int,),
    ("training", "battle_keys"): (str,),
    ("metrics", "holdout"): (dict,),
    ("metrics", "validation"): (dict,),
    ("metrics", "fit_rows"): (dict,),
}
"""Sections some backends write and loaders read; their type when present."""
_NAMES = {
    bool: "true or false",
    int: "an integer",
    str: "a string",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def _structure_problem(manifest: dict[str, Any]) -> str | None:
    """What is structurally wrong with a parsed manifest (a field missing or of the wrong
    type: a hand edit), or None. Loaders may then read every known section safely."""
    for table, required in ((_STRUCTURE, True), (_OPTIONAL, False)):
        for keys, kinds in table.items():
            holder: Any = manifest
            for key in keys[:-1]:
                holder = holder.get(key) if isinstance(holder, dict) else None
            if not isinstance(holder, dict) or keys[-1] not in holder:
                if required:
                    return f"it has no {'.'.join(keys)!r} field"
                continue
            value = holder[keys[-1]]
            # bool is an int to Python, never to a manifest
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                return (
                    f"{'.'.join(keys)!r} is {' or '.join(_NAMES[k] for k in kinds)} in "
                    f"a manifest, not {_NAMES.get(type(value), type(value).__name__)}"
                )
    if not all(isinstance(v, str) for v in [*manifest["labels"], *manifest["artifacts"].values()]):
        return "'labels' and 'artifacts' hold strings only"
    members = manifest.get("members", [])
    if not all(
        isinstance(m, dict)
        and all(isinstance(m.get(k), str) for k in ("path", "backend", "manifest_sha256"))
        for m in members
    ):
        return "each of 'members' is an object of path, backend and manifest_sha256 strings"
    return None


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def _parse(manifest_path: Path) -> dict[str, Any]:
    try:
        manifest = safe_json.loads(manifest_path.read_bytes())
    except (safe_json.JSONProblem, OSError) as exc:
        raise ModelLoadError(f"is corrupt ({exc}); retrain the model", file=manifest_path) from None
    if not isinstance(manifest, dict) or manifest.get("package") != "arenajudge":
        if (
            isinstance(manifest, dict)
            and "package" in manifest
            and not isinstance(manifest["package"], str)
        ):
            raise ModelLoadError(
                "is corrupt ('package' is not a string); retrain the model", file=manifest_path
            )
        raise ModelLoadError("is not an arenajudge manifest", file=manifest_path)
    return manifest


def verify_artifacts(path: Path, manifest: dict[str, Any]) -> None:
    """Refuse a model directory whose files are missing or differ from the manifest."""
    listed = manifest.get("artifacts")
    if not isinstance(listed, dict) or not listed:
        raise ModelLoadError("lists no artifact hashes; retrain the model", file=path / MANIFEST)
    for name, expected in listed.items():
        file = path / name
        if not file.is_file():
            raise ModelLoadError("is missing; the model directory is incomplete", file=file)
        if file_sha256(file) != expected:
            raise ModelLoadError(
                "is corrupt (its sha256 differs from the manifest's); "
                "restore the file or retrain the model",
                file=file,
            )


def read_manifest(
    path: str | Path, backend: str | None = None, *, verify: bool = False
) -> dict[str, Any]:
    """Read and check a model directory's manifest.

    ``backend`` additionally requires that backend; ``verify`` checks the sha256 of
    every artifact file (do it once, right before loading them).

    Raises
    ------
    ModelLoadError
        The directory or manifest is missing or corrupt, it was written by an
        incompatible version, for other labels or another backend, or (``verify``) an
        artifact file is missing or changed.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError(
            "is not a model directory (train one with `arenajudge train DATA --out MODEL_DIR`)",
            file=path,
        )
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ModelLoadError(
            f"has no {MANIFEST}; it is not an arenajudge model directory", file=path
        )
    manifest = _parse(manifest_path)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION and isinstance(version, int) and not isinstance(version, bool):
        raise ModelLoadError(
            f"has model format {version}, this arenajudge reads format "
            f"{FORMAT_VERSION}; retrain the model",
            file=manifest_path,
        )
    problem = _structure_problem(manifest)
    if problem is not None:
        raise ModelLoadError(
            f"is corrupt ({problem}; was it edited by hand?); retrain the "
            "model or restore its manifest.json",
            file=manifest_path,
        )
    saved = str(manifest.get("package_version", "?"))
    if _major_minor(saved) != _major_minor(__version__):
        raise ModelLoadError(
            f"was saved by arenajudge {saved}, incompatible with this "
            f"arenajudge {__version__}; retrain it or install "
            f"arenajudge=={saved}",
            file=manifest_path,
        )
    if manifest.get("labels") != list(LABELS):
        raise ModelLoadError(
            f"has label order {manifest.get('labels')}, expected {list(LABELS)}", file=manifest_path
        )
    if backend is not None and manifest.get("backend") != backend:
        raise ModelLoadError(
            f"holds a {manifest.get('backend')!r} model, not {backend!r}", file=manifest_path
        )
    if verify:
        verify_artifacts(path, manifest)
    return manifest


def manifest_sha256(path: str | Path) -> str:
    """Hex sha256 of a model directory's manifest: one hash that pins every artifact."""
    return file_sha256(Path(path) / MANIFEST)


def config_from_manifest(manifest: dict[str, Any], config_cls: Any, path: Path) -> Any:
    """The backend's config dataclass rebuilt from a manifest read by :func:`read_manifest`."""
    from arenajudge.config import config_from_mapping

    try:
        return config_from_mapping(config_cls, manifest["config"], source="the manifest")
    except (ArenaJudgeError, TypeError, KeyError) as exc:
        raise ModelLoadError(
            f"is corrupt (an unreadable config: {exc}); retrain the model",
            file=Path(path) / MANIFEST,
        ) from None


def check_scores_raw_text(manifest: dict[str, Any], path: str | Path, where: str) -> None:
    """Refuse a model trained with outside embeddings (``--embeddings``) in ``where``,
    which only sees battle texts."""
    if "embeddings" in manifest.get("training", {}):
        raise ConfigError(
            f"was trained with --embeddings, which {where} cannot supply; "
            "use `arenajudge predict --embeddings EMB.parquet` or a model "
            "trained without --embeddings",
            file=path,
        )
