"""A budgeted cascade: a fast model scores every battle, a slow one only the uncertain.

The first model's entropy decides which rows the second model rescores: the share F
of the first model's out-of-fold predictions it was least sure of fixes an entropy
threshold at fit time (or ``max_entropy`` gives it), so a row's prediction never
depends on the other rows of its batch. On rescored rows the two are blended in log
space with weights and a temperature fitted on the OOF predictions of those rows.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from arenajudge.config import check_config, option
from arenajudge.data.schema import LABELS, Battles, swap_proba
from arenajudge.errors import ConfigError, ModelLoadError
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
    config_from_manifest,
    data_summary,
    read_manifest,
    write_manifest,
)
from arenajudge.outputs import atomic_path

logger = logging.getLogger(__name__)

CASCADE_FILE = "cascade.json"
MIN_BLEND_ROWS = 20
"""Fewer rescored OOF rows than this: the blend is fitted on every row instead."""


@dataclass(frozen=True)
class CascadeConfig:
    """Settings of :class:`CascadeModel` (the two stages are given as model directories)."""

    share: float = option(
        0.3,
        "Share of rows the second model rescores: the first model's "
        "least sure (highest entropy) share F of its OOF predictions "
        "sets the entropy threshold.",
        low=0,
        high=1,
    )
    max_entropy: float | None = option(
        None,
        "Rescore rows whose first-stage entropy (nats) is at least this, instead of a share.",
        low=0,
        high=math.log(3),
    )
    swap_tta: bool = option(
        False,
        "Score the second stage in both A/B orders and average "
        "(for a second model that is not swap-symmetric).",
    )


def entropy(proba: np.ndarray) -> np.ndarray:
    """Entropy in nats of each row of an (n, 3) probability array, shape (n,)."""
    proba = np.clip(proba, 1e-12, 1)
    return -(proba * np.log(proba)).sum(axis=1)


def combine_stages(
    first: np.ndarray,
    rescore: np.ndarray,
    second: np.ndarray | None,
    blend: Blend,
    tie_rate: float | None = None,
) -> np.ndarray:
    """``first`` (n, 3) with the rows at positions ``rescore`` replaced by the blend of
    the first stage and ``second`` (the second stage's probabilities of those rows)."""
    out = first.copy()
    if len(rescore):
        if second is None:
            raise ValueError("rows to rescore need the second stage's probabilities")
        out[rescore] = blend.transform([first[rescore], second], tie_rate)
    return out


def cross_fitted_cascade(
    first: np.ndarray, then: np.ndarray, target: np.ndarray, fold: np.ndarray, config: CascadeConfig
) -> np.ndarray:
    """Cascade predictions from two stages' OOF predictions, shape (n, 3), where each
    fold's rows use a threshold and blend fitted on the other folds only."""
    out = np.zeros_like(first)
    for held in np.unique(fold):
        rows = fold == held
        threshold, blend = _fit_gate(first[~rows], then[~rows], target[~rows], None, config)
        rescore = np.flatnonzero(entropy(first[rows]) >= threshold)
        out[rows] = combine_stages(first[rows], rescore, then[rows][rescore], blend)
    return out


def _fit_gate(
    first: np.ndarray,
    then: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None,
    config: CascadeConfig,
) -> tuple[float, Blend]:
    """The entropy threshold and the blend fitted on held-out predictions of both stages."""
    first_entropy = entropy(first)
    if config.max_entropy is not None:
        threshold = float(config.max_entropy)
    elif config.share in (0, 1):
        threshold = math.inf if config.share == 0 else -math.inf
    else:
        threshold = float(np.quantile(first_entropy, 1 - config.share))
    rows = first_entropy >= threshold
    if rows.sum() < MIN_BLEND_ROWS:
        rows = np.ones(len(target), dtype=bool)
    blend = Blend.fit(
        [first[rows], then[rows]], target[rows], None if weight is None else weight[rows]
    )
    return threshold, blend


class CascadeModel(CompositeModel):
    """``first`` on every row; ``then`` blended in on the rows ``first`` is least sure of.

    Attributes
    ----------
    first_, then_ : PreferenceModel
    threshold_ : float
        Rows whose first-stage entropy is >= this are rescored (inf: none, -inf: all).
    blend_ : Blend
        Weights of (first, then) on rescored rows and their calibration.
    """

    backend = "cascade"
    config_class = CascadeConfig

    def __init__(
        self,
        config: CascadeConfig | None = None,
        *,
        first_dir: str | Path | None = None,
        then_dir: str | Path | None = None,
        load_member: MemberLoader,
        **overrides: object,
    ) -> None:
        super().__init__(config, **overrides)
        self.first_dir, self.then_dir = first_dir, then_dir
        self.load_member = load_member

    def fit(
        self,
        battles: Battles,
        *,
        sample_weight: np.ndarray | None = None,
        oof: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> CascadeModel:
        """Fit the threshold and the blend on labelled ``battles``: on ``oof`` = (first's,
        then's) out-of-fold predictions of them, or, without, on the two models'
        predictions, so ``battles`` must then be rows neither trained on."""
        check_config(self.config)
        check_labelled(battles)
        if self.first_dir is None or self.then_dir is None:
            raise ConfigError("a cascade needs a first and a then model directory")
        weight = check_sample_weight(battles, sample_weight)
        self.first_ = self.load_member(Path(self.first_dir))
        self.then_ = self.load_member(Path(self.then_dir))
        first, then = held_out_probas([self.first_, self.then_], battles, oof)
        target = battles.target
        assert target is not None  # check_labelled refused battles without labels
        self.threshold_, self.blend_ = _fit_gate(first, then, target, weight, self.config)
        self.training_ = data_summary(battles)
        return self

    def _second_stage(self, battles: Battles) -> np.ndarray:
        proba = self.then_.predict_proba(battles)
        if self.config.swap_tta:
            proba = (proba + swap_proba(self.then_.predict_proba(battles.swap()))) / 2
        return proba

    def predict_proba(self, battles: Battles, tie_rate: float | None = None) -> np.ndarray:
        """Shape (n, 3): the first model's probabilities, replaced by the calibrated blend
        on rows whose first-stage entropy reaches the threshold."""
        self.check_fitted()
        if len(battles) == 0:
            return np.zeros((0, len(LABELS)))
        first = self.first_.predict_proba(battles)
        rescore = np.flatnonzero(entropy(first) >= self.threshold_)
        keep = np.setdiff1d(np.arange(len(battles)), rescore)
        if tie_rate is not None and len(keep):
            first[keep] = self.first_.predict_proba(battles.take(keep), tie_rate=tie_rate)
        second = self._second_stage(battles.take(rescore)) if len(rescore) else None
        out = combine_stages(first, rescore, second, self.blend_, tie_rate)
        logger.info(
            "cascade: first stage scored %d rows, second stage %d (%.1f%%)",
            len(battles),
            len(rescore),
            100 * len(rescore) / len(battles),
        )
        return out

    def save(self, path: str | Path, *, force: bool = False) -> None:
        """Write MODEL_DIR: cascade.json (threshold, blend) and a manifest naming the
        two stages by relative path with the sha256 of their manifests."""
        self.check_fitted()
        if self.first_dir is None or self.then_dir is None:
            raise ConfigError("a cascade needs a first and a then model directory")
        stages = [self.first_dir, self.then_dir]
        references = member_references(stages, path)
        training = dict(self.training_)
        if uses_outside_embeddings(stages):
            training["embeddings"] = "members trained with --embeddings"
        with atomic_path(path, force, kind="directory", output="model") as staged:
            staged.mkdir()
            (staged / CASCADE_FILE).write_text(
                json.dumps({"threshold": self.threshold_, **self.blend_.to_dict()}, indent=2)
            )
            write_manifest(
                staged,
                backend=self.backend,
                config=asdict(self.config),
                feature_schema=None,
                training=training,
                members=references,
            )

    @property
    def parts(self) -> list[PreferenceModel]:
        return [self.first_, self.then_] if hasattr(self, "then_") else []

    @classmethod
    def load(cls, path: str | Path, *, load_member: MemberLoader | None = None) -> CascadeModel:
        """Read a cascade and its two stages (each with ``load_member``, which
        :func:`arenajudge.models.registry.load_model` passes); a stage that moved or
        changed is an error."""
        path = Path(path)
        load_member = require_member_loader(load_member, cls.backend)
        manifest = read_manifest(path, backend=cls.backend, verify=True)
        references = manifest.get("members")
        if not isinstance(references, list) or len(references) != 2:
            raise ModelLoadError("must list exactly two members; rebuild the cascade", file=path)
        (first_dir, then_dir), (first, then) = load_members(path, references, load_member)
        model = cls(
            config_from_manifest(manifest, CascadeConfig, path),
            first_dir=first_dir,
            then_dir=then_dir,
            load_member=load_member,
        )
        model.first_, model.then_ = first, then
        try:
            raw = json.loads((path / CASCADE_FILE).read_text(encoding="utf-8"))
            model.threshold_ = float(raw["threshold"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(
                f"cannot be read ({exc}); rebuild the cascade", file=path / CASCADE_FILE
            ) from None
        model.blend_ = Blend.from_dict(raw, path / CASCADE_FILE)
        model.training_ = manifest.get("training", {})
        return model
