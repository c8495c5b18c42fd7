"""Prompt-grouped folds: one notion of "the same prompt", and the ways to deal prompts to
folds that cross-validation, the length baseline and the calibrations use."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd

from arenajudge.data.folds import (
    group_folds,
    holdout_mask,
    prompt_groups,
    prompt_keys,
)
from tiny import make_battles

# one prompt written five ways, two distinct prompts, and one written two ways
PROMPTS = [
    ("tell me a joke",),
    ("tell me a joke  ",),
    ("\ntell me a joke",),
    ("tell me", "a joke"),
    ("tell me\n\na joke",),
    ("tell me a joke, please",),
    ("why?",),
    (" why?",),
]
SAME = [0, 0, 0, 1, 1, 2, 3, 3]  # which rows share a prompt


def _battles(prompts: list[tuple[str, ...]]):
    return replace(make_battles(len(prompts)), prompt=prompts)


def _partition(values: np.ndarray) -> list[int]:
    """Each row's group numbered by first appearance: equal lists, equal partitions."""
    return list(pd.factorize(values)[0])


def test_prompt_groups_and_prompt_keys_split_rows_the_same_way():
    # in-memory folds (prompt_groups) and streamed ones (prompt_keys) must agree on
    # which rows share a prompt, or a streamed evaluate groups differently from cv
    battles = _battles(PROMPTS)
    assert _partition(prompt_groups(battles)) == _partition(np.array(SAME))
    assert _partition(prompt_keys(battles)) == _partition(np.array(SAME))
    # stable across processes: a key of a known text never changes
    assert prompt_keys(_battles([("why?",)]))[0] == prompt_keys(_battles([("  why?\n",)]))[0]


def test_group_folds_keeps_groups_whole_and_the_seed_decides():
    groups = np.repeat(np.arange(40), 3)[np.random.default_rng(0).permutation(120)]
    fold = group_folds(groups, 5, seed=3)
    assert (pd.Series(fold).groupby(groups).nunique() == 1).all()
    assert np.bincount(fold).tolist() == [24] * 5  # 8 whole groups of 3 rows per fold
    assert np.array_equal(fold, group_folds(groups, 5, seed=3))
    assert not np.array_equal(fold, group_folds(groups, 5, seed=4))


def test_group_folds_without_a_seed_deal_sorted_groups_round_robin():
    assert group_folds(np.array([9, 5, 5, 7, 11]), 3).tolist() == [2, 0, 0, 1, 0]
    # fewer groups than folds: a fold per group, never an empty fold number in between
    assert sorted(set(group_folds(np.array([4, 8, 4]), 5, seed=1))) == [0, 1]
    assert group_folds(np.array([], dtype=np.int64), 5, seed=0).tolist() == []


def test_holdout_counts_prompts_the_way_folds_do(caplog):
    # 12 prompt tuples, but only 6 prompts: too few for a holdout (MIN_HOLDOUT_PROMPTS);
    # counting raw tuples would have held out one fold of 6 prompts
    prompts = [(f"prompt {i}",) for i in range(6)] + [(f"prompt {i} ",) for i in range(6)]
    with caplog.at_level(logging.WARNING, logger="arenajudge.data.folds"):
        assert holdout_mask(_battles(prompts), 0.2, seed=0, without="without a holdout") is None
    assert "only 6 distinct prompts" in caplog.text
