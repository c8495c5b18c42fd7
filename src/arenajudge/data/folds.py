"""Cross-validation folds grouped by prompt, so that no prompt leaks across folds."""

from __future__ import annotations

import logging

import numpy as np

from arenajudge.data.schema import Battles, join_turns
from arenajudge.errors import ConfigError

logger = logging.getLogger(__name__)

MIN_HOLDOUT_PROMPTS = 10


def prompt_groups(battles: Battles) -> np.ndarray:
    """Group number per row, shape (n,): rows with the same prompt text share one."""
    _, groups = np.unique(np.array([join_turns(p).strip() for p in battles.prompt],
                                   dtype=object), return_inverse=True)
    return groups


def folds(battles: Battles, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Assign each battle to one of ``n_folds`` folds, shape (n,), values 0..n_folds-1.

    Folds are grouped by prompt (the same prompt text never lands in two folds) and
    stratified by label where labels exist. The same seed gives the same folds.
    """
    if n_folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {n_folds}")
    groups = prompt_groups(battles)
    n_groups = int(groups.max()) + 1
    if n_groups < n_folds:
        raise ConfigError(f"{n_folds} folds need at least {n_folds} distinct prompts; "
                          f"the data has {n_groups}. Use fewer --folds")
    # imported here: scikit-learn adds ~0.7 s to the start of every command, predict too
    from sklearn.model_selection import StratifiedGroupKFold

    strata = battles.label if battles.labelled else np.zeros(len(battles), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(battles), dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(battles)), strata, groups)):
        fold_of[held_out] = fold
    return fold_of


def holdout_mask(battles: Battles, share: float, seed: int, without: str) -> np.ndarray | None:
    """Mask, shape (n,), of a prompt-grouped fold of about ``share`` of the rows, for
    early stopping and calibration; None when ``share`` is 0 or there are too few
    prompts, in which case a warning says the model goes on ``without`` (what it loses).
    """
    if share == 0:
        return None
    n_folds = max(2, round(1 / share))
    n_prompts = len(set(battles.prompt))
    if n_prompts < max(n_folds, MIN_HOLDOUT_PROMPTS):
        logger.warning("only %d distinct prompts: training %s", n_prompts, without)
        return None
    return folds(battles, n_folds=n_folds, seed=seed) == 0
