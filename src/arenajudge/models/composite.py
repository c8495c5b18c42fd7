"""What the composite models (``ensemble``, ``cascade``) share: a blend of members'
probabilities fitted on out-of-fold predictions, and members kept as references to
their own MODEL_DIRs, pinned by the sha256 of each member's manifest.

Composites are the one place a model loads other models of any backend. They never
import the registry (which imports them): whoever builds or loads a composite hands it
a :data:`~arenajudge.models.contract.MemberLoader`
(:func:`arenajudge.models.registry.load_model`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arenajudge.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    Calibration,
    as_prior,
    smoothed_prior,
)
from arenajudge.data.schema import LABELS, Battles
from arenajudge.errors import ConfigError, ModelLoadError
from arenajudge.metrics import log_loss
from arenajudge.models.contract import MemberLoader, PreferenceModel
from arenajudge.models.manifest import MANIFEST, manifest_sha256, read_manifest

_LOG_FLOOR = 1e-12


def _log(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, dtype=float), _LOG_FLOOR, 1))


def geometric_blend(probas: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """softmax(sum_k w_k log p_k), shape (n, 3): the weighted blend in log-probability
    space. It commutes with swapping A and B, so symmetric members give a symmetric blend."""
    mixed = functools.reduce(np.add, [w * _log(p) for w, p in zip(weights, probas)])
    mixed = mixed - mixed.max(axis=1, keepdims=True)
    proba = np.exp(mixed)
    return proba / proba.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Blend:
    """Members' probabilities blended as softmax(sum_k w_k log p_k / T).

    ``weights`` are non-negative and sum to 1; the temperature ``T`` and the class
    prior live in ``calibration`` (so a blend takes ``--tie-rate`` like any model).
    """

    weights: tuple[float, ...]
    calibration: Calibration

    @classmethod
    def fit(
        cls,
        probas: Sequence[np.ndarray],
        target: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> Blend:
        """Weights and temperature minimising the log loss of the blend of ``probas``
        (each (n, 3), e.g. members' OOF predictions) on ``target`` (n, 3)."""
        if len(probas) == 0 or len(target) == 0:
            raise ConfigError("a blend needs at least one member and one labelled row")
        logs = np.stack([_log(p) for p in probas])  # (members, n, 3)
        weight = np.ones(len(target)) if sample_weight is None else np.asarray(sample_weight)

        def loss(params: np.ndarray) -> float:
            # weights = softmax(params[:-1]) keeps them non-negative and summing to 1
            shares = np.exp(params[:-1] - params[:-1].max())
            shares /= shares.sum()
            mixed = np.tensordot(shares, logs, axes=1) / np.exp(params[-1])
            mixed -= mixed.max(axis=1, keepdims=True)
            log_proba = mixed - np.log(np.exp(mixed).sum(axis=1, keepdims=True))
            return float(-(weight * (target * log_proba).sum(axis=1)).sum() / weight.sum())

        from scipy.optimize import minimize

        bounds = [(-30, 30)] * len(probas) + [(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE))]
        start = np.zeros(len(probas) + 1)
        result = minimize(loss, start, method="L-BFGS-B", bounds=bounds)
        shares = np.exp(result.x[:-1] - result.x[:-1].max())
        shares /= shares.sum()
        return cls(
            weights=tuple(float(w) for w in shares),
            calibration=Calibration(
                temperature=float(np.exp(result.x[-1])),
                train_prior=smoothed_prior(target, sample_weight),
            ),
        )

    def transform(self, probas: Sequence[np.ndarray], tie_rate: float | None = None) -> np.ndarray:
        """The calibrated blend, shape (n, 3)."""
        return self.calibration.transform(geometric_blend(probas, self.weights), tie_rate)

    def score(self, probas: Sequence[np.ndarray], target: np.ndarray) -> float:
        return log_loss(target, self.transform(probas))

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "temperature": self.calibration.temperature,
            "train_prior": list(self.calibration.train_prior),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: Path) -> Blend:
        try:
            weights = tuple(float(w) for w in raw["weights"])
            calibration = Calibration(
                temperature=float(raw["temperature"]),
                train_prior=as_prior(raw["train_prior"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(
                f"has an unreadable blend ({exc}); rebuild the model", file=where
            ) from None
        if min(weights, default=-1) < 0 or abs(sum(weights) - 1) > 1e-6:
            raise ModelLoadError(
                "has blend weights that are not non-negative and summing to 1; rebuild the model",
                file=where,
            )
        return cls(weights=weights, calibration=calibration)


# ------------------------------------------------------------------------- members
def member_references(
    member_dirs: Sequence[str | Path], model_dir: str | Path
) -> list[dict[str, str]]:
    """Each member as {path relative to ``model_dir``, backend, manifest_sha256}."""
    destination = Path(model_dir).resolve()
    references = []
    for member in member_dirs:
        manifest = read_manifest(member)
        references.append(
            {
                "path": Path(os.path.relpath(Path(member).resolve(), destination)).as_posix(),
                "backend": str(manifest["backend"]),
                "manifest_sha256": manifest_sha256(member),
            }
        )
    return references


def load_members(
    model_dir: Path, references: Any, load_member: MemberLoader
) -> tuple[list[Path], list[PreferenceModel]]:
    """The directories of the members a composite's manifest lists (``references``) and
    the members, each read with ``load_member``, refusing one that moved or changed."""
    if not isinstance(references, list) or not references:
        raise ModelLoadError("lists no members; rebuild the model", file=model_dir / MANIFEST)
    member_dirs, members = [], []
    for reference in references:
        member = model_dir / str(reference.get("path", ""))
        if not (member / MANIFEST).is_file():
            raise ModelLoadError(
                f"member {reference.get('path')!r} is missing (moved or "
                f"deleted; looked in {member}); put it back or rebuild the "
                "model",
                file=model_dir,
            )
        if manifest_sha256(member) != reference.get("manifest_sha256"):
            raise ModelLoadError(
                f"member {reference.get('path')!r} has changed since this "
                "model was built (its manifest sha256 differs); rebuild "
                "the model",
                file=model_dir,
            )
        member_dirs.append(member)
        members.append(load_member(member))
    return member_dirs, members


def require_member_loader(load_member: MemberLoader | None, backend: str) -> MemberLoader:
    """``load_member``, or a ConfigError saying how to load a composite with one."""
    if load_member is None:
        raise ConfigError(
            f"a {backend} model loads its members with a loader: use "
            "arenajudge.models.registry.load_model(path), or pass load_member=load_model"
        )
    return load_member


def uses_outside_embeddings(member_dirs: Sequence[str | Path]) -> bool:
    """Whether any member was trained with ``--embeddings`` (so needs them to predict)."""
    return any("embeddings" in read_manifest(member).get("training", {}) for member in member_dirs)


def held_out_probas(
    members: Sequence[PreferenceModel], battles: Battles, oof: Sequence[np.ndarray] | None
) -> list[np.ndarray]:
    """The members' probabilities to fit a blend on: ``oof`` (one (n, 3) array per member,
    rows aligned with ``battles``) when given, else the members' predictions of
    ``battles``, which must then be rows the members never trained on."""
    if oof is None:
        return [member.predict_proba(battles.without_labels()) for member in members]
    if len(oof) != len(members):
        raise ConfigError(
            f"got {len(oof)} OOF files for {len(members)} members; give one "
            "per member, in the same order"
        )
    for array in oof:
        if np.shape(array) != (len(battles), len(LABELS)):
            raise ConfigError(
                f"an OOF array has shape {np.shape(array)}, expected "
                f"({len(battles)}, {len(LABELS)}) like the labelled data"
            )
    return [np.asarray(array, dtype=float) for array in oof]
