"""An ensemble of saved models, blended with weights fitted on out-of-fold predictions.

``arenajudge ensemble M1 M2 ... --oof OOF1.csv OOF2.csv ...`` fits non-negative
weights summing to 1 and a temperature, minimising the log loss of
softmax(sum_k w_k log p_k / T) on the members' OOF predictions, and writes an
``ensemble`` MODEL_DIR that refers to its members by relative path and pins each by
the sha256 of its manifest. It loads, predicts and serves like any other model.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from arenajudge.config import check_config, option
from arenajudge.data.schema import LABELS, Battles
from arenajudge.errors import ModelLoadError
from arenajudge.metrics import log_loss
from arenajudge.models.composite import (
    Blend,
    held_out_probas,
    load_members,
    member_references,
    require_member_loader,
    uses_outside_embeddings,
)
from arenajudge.models.contract import (
    CompositeModel,
    MemberLoader,
    PreferenceModel,
    check_labelled,
    check_sample_weight,
)
from arenajudge.models.manifest import (
    MANIFEST,
    config_from_manifest,
    data_summary,
    read_manifest,
    write_manifest,
)
from arenajudge.outputs import atomic_path

BLEND_FILE = "blend.json"


@dataclass(frozen=True)
class EnsembleConfig:
    """Settings of :class:`EnsembleModel` (the members are given as model directories)."""

    min_weight: float = option(
        0.0,
        "Members whose fitted weight falls below this are "
        "dropped and the rest refitted (0 keeps every member).",
        low=0,
        high=1,
        high_open=True,
    )


class EnsembleModel(CompositeModel):
    """Members' probabilities blended in log space with weights fitted on held-out rows.

    Parameters
    ----------
    config : EnsembleConfig, optional
    member_dirs : sequence of paths
        Saved MODEL_DIRs of any backend.
    load_member : MemberLoader
        Reads a member MODEL_DIR (:func:`arenajudge.models.registry.load_model`).

    Attributes
    ----------
    members_ : list of PreferenceModel
    blend_ : Blend
        The weights (non-negative, summing to 1) and the calibration.
    scores_ : dict
        Log loss of each member and of the blend on the rows the blend was fitted on.
    """

    backend = "ensemble"
    config_class = EnsembleConfig

    def __init__(
        self,
        config: EnsembleConfig | None = None,
        *,
        member_dirs: Sequence[str | Path] = (),
        load_member: MemberLoader,
        **overrides: object,
    ) -> None:
        super().__init__(config, **overrides)
        self.member_dirs = [Path(path) for path in member_dirs]
        self.load_member = load_member

    def fit(
        self,
        battles: Battles,
        *,
        sample_weight: np.ndarray | None = None,
        oof: Sequence[np.ndarray] | None = None,
    ) -> EnsembleModel:
        """Fit the blend on labelled ``battles``: on the members' ``oof`` predictions of
        them (one (n, 3) array per member) or, without ``oof``, on the members'
        predictions, so ``battles`` must then be rows no member trained on."""
        check_config(self.config)
        check_labelled(battles)
        target = battles.target
        assert target is not None  # check_labelled refused battles without labels
        weight = check_sample_weight(battles, sample_weight)
        self.members_ = [self.load_member(path) for path in self.member_dirs]
        probas = held_out_probas(self.members_, battles, oof)
        keep = list(range(len(probas)))
        blend = Blend.fit(probas, target, weight)
        while len(keep) > 1 and min(blend.weights) < self.config.min_weight:
            keep.pop(int(np.argmin(blend.weights)))
            blend = Blend.fit([probas[k] for k in keep], target, weight)
        full = [0.0] * len(probas)
        for k, share in zip(keep, blend.weights):
            full[k] = share
        self.blend_ = Blend(weights=tuple(full), calibration=blend.calibration)
        self.scores_ = {
            "rows": len(battles),
            "members": [log_loss(target, p) for p in probas],
            "blend": self.blend_.score(probas, target),
        }
        self.training_ = data_summary(battles)
        return self

    def predict_proba(self, battles: Battles, tie_rate: float | None = None) -> np.ndarray:
        """The calibrated blend of the members' probabilities, shape (n, 3)."""
        self.check_fitted()
        if len(battles) == 0:
            return np.zeros((0, len(LABELS)))
        probas = [
            member.predict_proba(battles) if share > 0 else None
            for member, share in zip(self.members_, self.blend_.weights)
        ]
        used = [(p, w) for p, w in zip(probas, self.blend_.weights) if p is not None]
        blend = Blend(weights=tuple(w for _, w in used), calibration=self.blend_.calibration)
        return blend.transform([p for p, _ in used], tie_rate)

    def worker_copy(self) -> EnsembleModel | None:
        """This ensemble with every member's worker copy; None when a member scores only
        in this process."""
        copies = [member.worker_copy() for member in self.members_]
        members = [member for member in copies if member is not None]
        if len(members) < len(copies):
            return None
        clone = copy.copy(self)
        clone.members_ = members
        return clone

    def save(self, path: str | Path, *, force: bool = False) -> None:
        """Write MODEL_DIR: blend.json and a manifest naming the members by path relative
        to ``path`` with the sha256 of their manifests. The members stay where they are."""
        self.check_fitted()
        references = member_references(self.member_dirs, path)
        training = dict(self.training_)
        if uses_outside_embeddings(self.member_dirs):
            training["embeddings"] = "members trained with --embeddings"
        with atomic_path(path, force, kind="directory", output="model") as staged:
            staged.mkdir()
            (staged / BLEND_FILE).write_text(json.dumps(self.blend_.to_dict(), indent=2))
            write_manifest(
                staged,
                backend=self.backend,
                config=asdict(self.config),
                feature_schema=None,
                training=training,
                metrics={"fit_rows": self.scores_},
                members=references,
            )

    @property
    def parts(self) -> list[PreferenceModel]:
        return list(getattr(self, "members_", []))

    @classmethod
    def load(cls, path: str | Path, *, load_member: MemberLoader | None = None) -> EnsembleModel:
        """Read an ensemble and its members (each with ``load_member``, which
        :func:`arenajudge.models.registry.load_model` passes); a member that moved or
        changed is an error."""
        path = Path(path)
        load_member = require_member_loader(load_member, cls.backend)
        manifest = read_manifest(path, backend=cls.backend, verify=True)
        member_dirs, members = load_members(path, manifest.get("members"), load_member)
        model = cls(
            config_from_manifest(manifest, EnsembleConfig, path),
            member_dirs=member_dirs,
            load_member=load_member,
        )
        model.members_ = members
        model.blend_ = _read_blend(path, len(model.members_))
        model.scores_ = manifest.get("metrics", {}).get("fit_rows", {})
        model.training_ = manifest.get("training", {})
        return model


def cross_fitted_blend(
    probas: Sequence[np.ndarray], target: np.ndarray, fold: np.ndarray
) -> np.ndarray:
    """Blend predictions, shape (n, 3), where each fold's rows use weights fitted on the
    other folds only: an honest score for a blend fitted on OOF predictions."""
    out = np.zeros((len(target), len(LABELS)))
    for held in np.unique(fold):
        rows = fold == held
        blend = Blend.fit([p[~rows] for p in probas], target[~rows])
        out[rows] = blend.transform([p[rows] for p in probas])
    return out


def _read_blend(path: Path, n_members: int) -> Blend:
    try:
        raw = json.loads((path / BLEND_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot be read ({exc}); rebuild the ensemble", file=path / BLEND_FILE
        ) from None
    blend = Blend.from_dict(raw, path / BLEND_FILE)
    if len(blend.weights) != n_members:
        raise ModelLoadError(
            f"has {len(blend.weights)} weights for {n_members} members in "
            f"{MANIFEST}; rebuild the ensemble",
            file=path / BLEND_FILE,
        )
    return blend
