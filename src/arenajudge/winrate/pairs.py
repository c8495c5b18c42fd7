"""A model's battles against the baseline, as pairs: what every win rate averages.

Each battle between a model and the baseline becomes one pair oriented model-first,
with the model's share of the win (1 a win, 0 a loss, 1/2 a tie, a probability for soft
labels or a judge's prediction) and both outputs' lengths; a pair voted on twice is one
observation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from arenajudge.data.schema import Battles, join_turns
from arenajudge.errors import DataError
from arenajudge.leaderboard.board import battle_outcomes, kept_battles

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselinePairs:
    """The battles of each model against the baseline, oriented model-first: one pair
    per distinct (model, instruction, model output, baseline output).

    Attributes
    ----------
    model, instruction : ndarray of str, shape (n,)
        The model (never the baseline) and the instruction (the prompt's turns joined).
    share : ndarray of float, shape (n,)
        The model's share of the win: its win probability plus half the tie's.
    model_length, baseline_length : ndarray of float, shape (n,)
        Characters of each side's output.
    """

    model: np.ndarray
    instruction: np.ndarray
    share: np.ndarray
    model_length: np.ndarray
    baseline_length: np.ndarray

    @property
    def delta(self) -> np.ndarray:
        return self.model_length - self.baseline_length

    def of(self, name: str) -> BaselinePairs:
        rows = self.model == name
        return BaselinePairs(
            *(
                values[rows]
                for values in (
                    self.model,
                    self.instruction,
                    self.share,
                    self.model_length,
                    self.baseline_length,
                )
            )
        )


def baseline_pairs(
    battles: Battles, baseline: str, outcomes: np.ndarray | None = None
) -> BaselinePairs:
    """The pairs of ``battles`` that involve ``baseline``, with the model's share of the
    win from ``outcomes`` (n, 3) in ``LABELS`` order (default: the votes).

    Raises
    ------
    DataError
        No model names or votes, no battle of the baseline, or a model in the data
        without a battle against it.
    """
    outcomes = battle_outcomes(battles, outcomes)
    keep, names_a, names_b, _, _ = kept_battles(battles)
    models = sorted(map(str, set(names_a) | set(names_b)))
    if baseline not in models:
        shown = ", ".join(models[:10]) + (" ..." if len(models) > 10 else "")
        raise DataError(
            f"has no battles of the baseline {baseline!r}; models found: {shown or '(none)'}",
            file=battles.path,
        )
    base_is_a, base_is_b = names_a == baseline, names_b == baseline
    involved = base_is_a | base_is_b
    paired = set(names_b[base_is_a]) | set(names_a[base_is_b])
    unpaired = [name for name in models if name != baseline and name not in paired]
    if unpaired:
        raise DataError(
            f"model(s) {', '.join(map(repr, unpaired[:5]))} have no battles "
            f"against the baseline {baseline!r}; drop their rows or choose "
            "another --baseline",
            file=battles.path,
        )
    if (~involved).any():
        logger.warning(
            "%s: ignored %d battles without the baseline %s",
            battles.path,
            int((~involved).sum()),
            baseline,
        )
    rows = keep[involved]
    base_is_a = base_is_a[involved]
    chosen = outcomes[rows]
    share = np.where(base_is_a, chosen[:, 1], chosen[:, 0]) + chosen[:, 2] / 2
    # object arrays: np.where on lists of str would build fixed-width arrays as wide as
    # the longest answer (gigabytes for a few thousand long answers)
    text_a = np.array([join_turns(battles.response_a[i]) for i in rows], dtype=object)
    text_b = np.array([join_turns(battles.response_b[i]) for i in rows], dtype=object)
    pairs = pd.DataFrame(
        {
            "model": np.where(base_is_a, names_b[involved], names_a[involved]).astype(object),
            "instruction": [join_turns(battles.prompt[i]) for i in rows],
            "model_text": np.where(base_is_a, text_b, text_a),
            "baseline_text": np.where(base_is_a, text_a, text_b),
            "share": np.clip(share, 0.0, 1.0),
        }
    )
    return _merge_repeats(pairs, battles.path)


def _merge_repeats(pairs: pd.DataFrame, path: str | None) -> BaselinePairs:
    """One pair per (model, instruction, both outputs), its share the mean of its votes:
    a pair annotated twice (or stored twice) is one observation, not two, or its
    standard error would shrink by the square root of the repeats."""
    keys = ["model", "instruction", "model_text", "baseline_text"]
    merged = pairs.groupby(keys, sort=False, as_index=False)["share"].mean()
    if len(merged) < len(pairs):
        repeats = pairs.groupby("model").size() - merged.groupby("model").size()
        shown = ", ".join(f"{name} ({count:,})" for name, count in repeats[repeats > 0].items())
        logger.warning(
            "%s: merged repeated pairs (same instruction and outputs; their votes averaged): %s",
            path,
            shown,
        )
    return BaselinePairs(
        model=merged["model"].to_numpy(dtype=object),
        instruction=merged["instruction"].to_numpy(dtype=object),
        share=merged["share"].to_numpy(dtype=float),
        model_length=merged["model_text"].str.len().to_numpy(dtype=float),
        baseline_length=merged["baseline_text"].str.len().to_numpy(dtype=float),
    )
