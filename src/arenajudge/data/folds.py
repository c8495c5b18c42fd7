"""Cross-validation folds grouped by prompt, so that no prompt leaks across folds, or by
the pair of models, so that no model pair does (a judge for models it has not seen).

"The same prompt" is defined here once (:func:`prompt_text`): :func:`prompt_groups`
numbers the distinct prompts of a file in memory, :func:`prompt_keys` hashes them for
battles streamed block by block; both split rows the same way. Two ways to deal groups
to folds: :func:`folds` (stratified by label, seeded: cross-validation, holdouts, the CPU
model's calibration) and :func:`group_folds` (whole groups dealt round-robin, in a seeded
shuffled order or the groups' own: fast on 50k prompts, and defined for any number of
groups).
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from arenajudge.data.schema import Battles, Turns, join_turns
from arenajudge.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

MIN_HOLDOUT_PROMPTS = 10
FOLD_GROUPS = ("prompt", "model")
"""What folds keep together: rows of one prompt, or rows of one pair of models."""


def prompt_text(turns: Turns) -> str:
    """The text that says whether two battles share a prompt: the turns joined by blank
    lines, stripped, so whitespace at the ends or a split into turns makes no new prompt."""
    return join_turns(turns).strip()


def prompt_groups(battles: Battles) -> np.ndarray:
    """Group number per row, shape (n,), 0..n_groups-1 in the order of the sorted prompt
    texts: rows with the same :func:`prompt_text` share one."""
    _, groups = np.unique(
        np.array([prompt_text(p) for p in battles.prompt], dtype=object), return_inverse=True
    )
    return groups


def prompt_keys(battles: Battles) -> np.ndarray:
    """A stable 64-bit key of each battle's :func:`prompt_text`, shape (n,): equal
    prompts, equal keys, in every process (unlike ``hash``), so streamed blocks group
    like the whole file."""
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(
                    prompt_text(p).encode("utf-8", "surrogatepass"), digest_size=8
                ).digest(),
                "little",
                signed=True,
            )
            for p in battles.prompt
        ],
        dtype=np.int64,
    )


def group_folds(groups: np.ndarray, n_folds: int, seed: int | None = None) -> np.ndarray:
    """Fold of each row, shape (n,): the distinct values of ``groups`` (n,) dealt to
    ``min(n_folds, n_groups)`` folds round-robin, whole groups together.

    With a ``seed`` the groups are dealt in a shuffled order (the same seed, the same
    folds); without one in their sorted order, which for :func:`prompt_groups` is the
    prompts' alphabetical order: deterministic, and as balanced in groups. Not
    stratified by label, unlike :func:`folds`, and never an error: one group gives one
    fold, none gives none.
    """
    dense = np.unique(groups, return_inverse=True)[1].reshape(-1)
    n_groups = int(dense.max()) + 1 if len(dense) else 0
    order = dense if seed is None else np.random.default_rng(seed).permutation(n_groups)[dense]
    return order % max(1, min(n_folds, n_groups))


def model_pair_groups(battles: Battles) -> np.ndarray:
    """Group number per row, shape (n,): rows between the same two models (in either
    order) share one; against one baseline, that is one group per model.

    Raises
    ------
    DataError
        A row without both model names.
    """
    if battles.model_a is None or battles.model_b is None:
        raise DataError(
            "has no model_a / model_b columns; folds grouped by model need the "
            "names of the models in each battle",
            file=battles.path,
        )
    a = np.array([str(m).strip() for m in battles.model_a], dtype=object)
    b = np.array([str(m).strip() for m in battles.model_b], dtype=object)
    unnamed = np.flatnonzero((a == "") | (b == ""))
    if len(unnamed):
        raise DataError(
            f"has {len(unnamed)} row(s) without both model names; folds grouped "
            "by model need them on every row",
            file=battles.path,
            row_id=str(battles.id[unnamed[0]]),
        )
    pairs = np.array([f"{min(x, y)}\n{max(x, y)}" for x, y in zip(a, b)], dtype=object)
    _, groups = np.unique(pairs, return_inverse=True)
    return groups


def _groups(battles: Battles, by: str) -> np.ndarray:
    """Group number per row for ``by`` ("prompt" or "model"), shape (n,)."""
    if by not in FOLD_GROUPS:
        raise ConfigError(f"folds group by one of {', '.join(FOLD_GROUPS)}, not {by!r}")
    return prompt_groups(battles) if by == "prompt" else model_pair_groups(battles)


def folds(battles: Battles, n_folds: int = 5, seed: int = 0, by: str = "prompt") -> np.ndarray:
    """Assign each battle to one of ``n_folds`` folds, shape (n,), values 0..n_folds-1.

    Folds are grouped by prompt (the same prompt text never lands in two folds), or with
    ``by="model"`` by the pair of models (:func:`model_pair_groups`), and stratified by
    label where labels exist. The same seed gives the same folds.
    """
    if n_folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {n_folds}")
    return _stratified_group_folds(battles, _groups(battles, by), n_folds, seed, by)


def _stratified_group_folds(
    battles: Battles, groups: np.ndarray, n_folds: int, seed: int, by: str
) -> np.ndarray:
    """:func:`folds` of ``battles`` whose group numbers ``groups`` are already known."""
    n_groups = int(groups.max()) + 1
    if n_groups < n_folds:
        kind = "distinct prompts" if by == "prompt" else "distinct pairs of models"
        raise ConfigError(
            f"{n_folds} folds need at least {n_folds} {kind}; "
            f"the data has {n_groups}. Use fewer --folds"
        )
    # imported here: scikit-learn adds ~0.7 s to the start of every command, predict too
    from sklearn.model_selection import StratifiedGroupKFold

    strata = battles.label if battles.labelled else np.zeros(len(battles), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(battles), dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(battles)), strata, groups)):
        fold_of[held_out] = fold
    return fold_of


def holdout_mask(
    battles: Battles, share: float, seed: int, without: str, by: str = "prompt"
) -> np.ndarray | None:
    """Mask, shape (n,), of a fold (grouped ``by`` as :func:`folds`) of about ``share``
    of the rows, for early stopping and calibration; None when ``share`` is 0 or there
    are too few groups, in which case a warning says the model goes on ``without``
    (what it loses).
    """
    if share == 0:
        return None
    n_folds = max(2, round(1 / share))
    groups = _groups(battles, by)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups < max(n_folds, MIN_HOLDOUT_PROMPTS):
        what = "prompts" if by == "prompt" else "pairs of models"
        logger.warning("only %d distinct %s: training %s", n_groups, what, without)
        return None
    # the groups just counted are the ones the folds keep together: computed once
    return _stratified_group_folds(battles, groups, n_folds, seed, by) == 0
