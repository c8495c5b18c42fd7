"""The one contract every preference model follows, and its saved-artifact manifest.

Every backend subclasses :class:`PreferenceModel`: ``fit`` returns ``self``,
``predict_proba`` returns an (n, 3) array in ``LABELS`` order whose rows sum to 1,
``save`` writes a MODEL_DIR and ``load`` reads it back after checking its manifest.
"""

from __future__ import annotations

import hashlib
import json
import platform
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from arenajudge import __version__, safe_json
from arenajudge.data.schema import LABELS, Battles
from arenajudge.errors import ConfigError, ModelLoadError, NotFittedError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class PreferenceModel(ABC):
    """Predicts p(A wins), p(B wins), p(tie) for battles.

    Subclasses set ``backend`` (the name written to the manifest), store their
    hyper-parameters in ``__init__`` and end fitted attributes with ``_``.
    """

    backend: ClassVar[str]

    @abstractmethod
    def fit(self, battles: Battles, *, sample_weight: np.ndarray | None = None
            ) -> "PreferenceModel":
        """Learn from labelled ``battles``; returns ``self``."""

    @abstractmethod
    def predict_proba(self, battles: Battles, tie_rate: float | None = None) -> np.ndarray:
        """Probabilities, shape (n, 3), in ``LABELS`` order; rows sum to 1.

        ``tie_rate`` shifts predictions to a target share of ties (a class-prior shift).
        """

    @abstractmethod
    def save(self, path: str | Path, *, force: bool = False) -> None:
        """Write the fitted model to the directory ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> "PreferenceModel":
        """Read a model written by :meth:`save`."""

    @property
    def is_fitted(self) -> bool:
        return any(name.endswith("_") and not name.startswith("_") for name in vars(self))

    def check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; "
                                 "call fit() or load a saved model first")


def check_labelled(battles: Battles) -> None:
    """Raise a clear error when training data has no labels."""
    from arenajudge.errors import DataError

    if not battles.labelled:
        raise DataError("has no label columns; training needs winner_model_a, "
                        "winner_model_b and winner_tie (or a winner column)", file=battles.path)


def schema_hash(feature_names: list[str]) -> str:
    """A short stable hash of the feature schema, to refuse mismatched artifacts."""
    return hashlib.sha256("\n".join(feature_names).encode()).hexdigest()[:16]


def data_summary(battles: Battles) -> dict[str, Any]:
    """Rows, class counts and a content hash of the training data, for the manifest."""
    digest = hashlib.sha256()
    for row_id, prompt, a, b in zip(battles.id, battles.prompt, battles.response_a,
                                    battles.response_b):
        digest.update(json.dumps([str(row_id), prompt, a, b], ensure_ascii=False,
                                 ).encode("utf-8", "surrogatepass"))
    summary: dict[str, Any] = {"rows": len(battles), "file": battles.path,
                               "sha256": digest.hexdigest()}
    if battles.source is not None:
        names, counts = np.unique(battles.source.astype(str), return_counts=True)
        summary["sources"] = dict(zip(names.tolist(), counts.tolist()))
    if battles.labelled:
        summary["class_counts"] = dict(zip(LABELS, map(int, np.bincount(
            battles.label, minlength=len(LABELS)))))
    return summary


def source_weights(source: np.ndarray | None, balance: float
                   ) -> tuple[dict[str, float], np.ndarray] | None:
    """Weights, mean 1 over the battles, in which each source weighs (its battles) ** -balance.

    ``balance`` 0 weighs every battle alike, 1 gives every source the same total weight.
    Returns the weight of one battle of each source and the weight of every battle; None
    when the battles name no source.
    """
    if source is None:
        return None
    names, which, counts = np.unique(source.astype(str), return_inverse=True,
                                     return_counts=True)
    per_source = counts.astype(np.float64) ** -balance
    per_source /= per_source[which].mean()
    return dict(zip(names.tolist(), per_source.tolist())), per_source[which]


def write_manifest(path: Path, *, backend: str, config: dict[str, Any],
                   feature_schema: str | None, training: dict[str, Any],
                   metrics: dict[str, Any] | None = None) -> None:
    """Write ``manifest.json`` into the model directory ``path``."""
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
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False),
                                 encoding="utf-8")


def check_scores_raw_text(manifest: dict[str, Any], path: str | Path, where: str) -> None:
    """Refuse a model trained with outside embeddings (``--embeddings``) in ``where``,
    which only sees battle texts."""
    if "embeddings" in manifest.get("training", {}):
        raise ConfigError(f"was trained with --embeddings, which {where} cannot supply; "
                          "use `arenajudge predict --embeddings EMB.parquet` or a model "
                          "trained without --embeddings", file=path)


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])


def read_manifest(path: str | Path, backend: str | None = None) -> dict[str, Any]:
    """Read and check a model directory's manifest.

    Raises
    ------
    ModelLoadError
        The directory or manifest is missing or corrupt, or it was written by an
        incompatible version, for other labels, or for another backend.
    """
    path = Path(path)
    if not path.is_dir():
        raise ModelLoadError("is not a model directory (train one with `arenajudge train "
                             "DATA --out MODEL_DIR`)", file=path)
    manifest_path = path / MANIFEST
    try:
        manifest = safe_json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"has no {MANIFEST}; it is not an arenajudge model directory",
                             file=path) from None
    except (safe_json.JSONProblem, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"is corrupt ({exc}); retrain the model", file=manifest_path
                             ) from None
    if not isinstance(manifest, dict) or manifest.get("package") != "arenajudge":
        raise ModelLoadError("is not an arenajudge manifest", file=manifest_path)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"has model format {manifest.get('format_version')}, this "
                             f"arenajudge reads format {FORMAT_VERSION}; retrain the model",
                             file=manifest_path)
    saved = str(manifest.get("package_version", "?"))
    if _major_minor(saved) != _major_minor(__version__):
        raise ModelLoadError(f"was saved by arenajudge {saved}, incompatible with this "
                             f"arenajudge {__version__}; retrain it or install "
                             f"arenajudge=={saved}", file=manifest_path)
    if manifest.get("labels") != list(LABELS):
        raise ModelLoadError(f"has label order {manifest.get('labels')}, expected "
                             f"{list(LABELS)}", file=manifest_path)
    if backend is not None and manifest.get("backend") != backend:
        raise ModelLoadError(f"holds a {manifest.get('backend')!r} model, not {backend!r}",
                             file=manifest_path)
    return manifest


def config_from_manifest(manifest: dict[str, Any], config_cls: Any, path: Path) -> Any:
    """The backend's config dataclass rebuilt from a manifest read by :func:`read_manifest`."""
    from arenajudge.errors import ConfigError

    try:
        return config_cls.from_dict(manifest["config"])
    except (ConfigError, TypeError, KeyError) as exc:
        raise ModelLoadError(f"has an unreadable config ({exc}); retrain the model",
                             file=Path(path) / MANIFEST) from None


def load_model(path: str | Path) -> PreferenceModel:
    """Load any saved model, whatever its backend, from its directory."""
    backend = read_manifest(path).get("backend")
    if backend == "gbdt":
        from arenajudge.models.gbdt import GBDTModel

        return GBDTModel.load(path)
    if backend in ("siamese", "cross", "llm"):
        from arenajudge.models.transformer import MODELS

        return MODELS[backend].load(path)
    raise ModelLoadError(f"holds an unknown backend {backend!r}; is this arenajudge too old?",
                         file=Path(path) / MANIFEST)
