"""LightGBM training of the CPU model (:class:`arenajudge.models.gbdt.GBDTModel`).

Every battle is trained on in both orders (the swapped copy with its label swapped),
and soft labels become one weighted row per class, so LightGBM's multiclass loss is
the soft-label cross-entropy. Training goes through ``lightgbm.train``; prediction
does not (:mod:`arenajudge.models.booster`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from arenajudge.data.schema import swap_proba
from arenajudge.features.builder import PairFeatures
from arenajudge.models.gbdt_config import GBDTConfig

# (features, class, weight): the rows lightgbm.Dataset is built from
TrainingRows = tuple[np.ndarray, np.ndarray, np.ndarray]


def expand_targets(features: np.ndarray, target: np.ndarray, weight: np.ndarray) -> TrainingRows:
    """One row per (battle, class with probability > 0), weighted by that probability,
    so LightGBM's multiclass loss equals the soft-label cross-entropy."""
    rows, classes = np.nonzero(target > 0)
    return features[rows], classes, weight[rows] * target[rows, classes]


def augmented(pair: PairFeatures, target: np.ndarray, weight: np.ndarray) -> TrainingRows:
    """Both orders of every battle: (features, class, weight)."""
    X = np.vstack([pair.matrix(), pair.matrix(swapped=True)])
    return expand_targets(
        X, np.vstack([target, swap_proba(target)]), np.concatenate([weight, weight])
    )


def train_booster(
    config: GBDTConfig, train: TrainingRows, valid: TrainingRows | None, rounds: int
) -> Any:  # lightgbm.Booster: lightgbm is imported here only, as training needs it
    """A LightGBM model of ``rounds`` rounds on ``train``, early-stopped on ``valid``
    when given."""
    import lightgbm as lgb

    dataset = lgb.Dataset(train[0], label=train[1], weight=train[2], free_raw_data=True)
    kwargs: dict[str, Any] = {"num_boost_round": rounds}
    if valid is not None:
        kwargs["valid_sets"] = [
            lgb.Dataset(valid[0], label=valid[1], weight=valid[2], reference=dataset)
        ]
        kwargs["callbacks"] = [lgb.early_stopping(config.early_stopping_rounds, verbose=False)]
    return lgb.train(config.lightgbm_params(), dataset, **kwargs)


def best_rounds(
    config: GBDTConfig,
    pair: PairFeatures,
    target: np.ndarray,
    weight: np.ndarray,
    holdout: np.ndarray,
) -> int:
    """Boosting rounds picked by early stopping on the prompt-grouped ``holdout``."""
    fit_rows, held_rows = np.flatnonzero(~holdout), np.flatnonzero(holdout)
    booster = train_booster(
        config,
        augmented(pair.take(fit_rows), target[fit_rows], weight[fit_rows]),
        augmented(pair.take(held_rows), target[held_rows], weight[held_rows]),
        config.n_estimators,
    )
    return int(booster.best_iteration) or config.n_estimators
