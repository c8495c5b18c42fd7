"""Win rates against a baseline, AlpacaEval's way: from votes, from a judge, or both.

Each battle between a model and the baseline is one pair
(:mod:`arenajudge.winrate.pairs`); the model's share of its win (1 a win, 0 a loss,
1/2 a tie, a probability for soft labels or a judge's prediction) is what every figure
averages. The table has AlpacaEval's leaderboard columns (``COLUMNS``) so that a user
can diff ours against theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from arenajudge.data.schema import Battles
from arenajudge.data.tables import read_table
from arenajudge.errors import DataError
from arenajudge.leaderboard.intervals import standard_error_of_mean
from arenajudge.leaderboard.ppi import ppi_mean
from arenajudge.winrate.glm import (
    LengthControlled,
    fit_difficulty,
    lc_design,
    length_controlled,
    length_controlled_ppi,
)
from arenajudge.winrate.pairs import BaselinePairs, baseline_pairs

COLUMNS = (
    "win_rate",
    "standard_error",
    "n_wins",
    "n_wins_base",
    "n_draws",
    "n_total",
    "discrete_win_rate",
    "avg_length",
    "length_controlled_winrate",
    "lc_standard_error",
)
"""AlpacaEval's leaderboard columns, in its order; the table puts ``model`` first."""
PPI_COLUMNS = ("n_votes", "ppi_lambda", "votes_only_win_rate", "votes_only_standard_error")
ESTIMATES = ("votes", "judge", "prediction-powered")
MIN_MODELS_FOR_DIFFICULTY = 2
# A length coefficient this large (log-odds over the tanh's range; models fit 1 to 3)
# means length separates the model's wins from its losses: its LC win rate is then set
# by the ridge, not by the data (AlpacaEval's gamed models, outputs of a few words).
UNDETERMINED_LENGTH_EFFECT = 10.0


@dataclass(frozen=True)
class WinRates:
    """Win rates of each model against one baseline.

    Attributes
    ----------
    table : DataFrame
        ``model`` then ``COLUMNS`` (percent, AlpacaEval's definitions), then
        ``estimate`` (one of ``ESTIMATES``) and, when prediction-powered,
        ``PPI_COLUMNS``; sorted by LC win rate, best first.
    baseline : str
    estimate : str
        Where the shares come from: the votes, a judge's predictions, or both (PPI).
    difficulty : Series
        Instruction difficulty used by the LC GLM (empty when it had none).
    difficulty_source : str
        ``fitted from N models``, the file it was read from, or ``none``.
    notes : list of str
        What a reader should know about single rows (an LC win rate the data does not
        determine).
    """

    table: pd.DataFrame
    baseline: str
    estimate: str
    difficulty: pd.Series
    difficulty_source: str
    notes: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        """The table as JSON-ready rows (NaN as None)."""
        frame = self.table.astype(object).where(self.table.notna(), None)
        return frame.to_dict(orient="records")

    def summary(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "estimate": self.estimate,
            "difficulty": self.difficulty_source,
            "notes": self.notes,
            "models": self.records(),
        }


DIFFICULTY_COLUMNS = ("instruction", "instruction_difficulty")


def read_difficulty(path: str) -> pd.Series:
    """Instruction difficulties from a file with ``DIFFICULTY_COLUMNS`` (as ``winrate
    --save-difficulty`` writes), indexed by instruction text.

    Raises
    ------
    DataError
        A missing column, a value that is not a finite number, or an instruction
        listed twice.
    """
    frame = read_table(path)
    absent = [name for name in DIFFICULTY_COLUMNS if name not in frame.columns]
    if absent:
        raise DataError(
            f"has no column(s) {', '.join(absent)}; a difficulty file has "
            f"{', '.join(DIFFICULTY_COLUMNS)} (one row per instruction text, as "
            "`arenajudge winrate --save-difficulty` writes)",
            file=path,
        )
    values = pd.to_numeric(frame["instruction_difficulty"], errors="coerce").to_numpy(float)
    texts = frame["instruction"].astype(str).to_numpy(dtype=object)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"row {first + 1} holds "
            f"{frame['instruction_difficulty'].iat[first]!r}, not a finite number",
            file=path,
            column="instruction_difficulty",
        )
    twice = pd.Series(texts).duplicated()
    if twice.any():
        raise DataError(
            f"lists the instruction {texts[int(np.flatnonzero(twice)[0])][:60]!r} twice",
            file=path,
            column="instruction",
        )
    return pd.Series(values, index=texts, name="instruction_difficulty")


def _difficulty_of(
    pairs: BaselinePairs, difficulty: pd.Series | None, difficulty_file: str | None
) -> tuple[pd.Series, str]:
    if difficulty is not None:
        known = set(difficulty.index)
        for name in sorted(set(pairs.model)):
            missing = [text for text in pairs.of(name).instruction if text not in known]
            if missing:
                raise DataError(
                    f"has no difficulty for {len(missing)} instruction(s) of "
                    f"model {name!r} (first: {missing[0][:60]!r})",
                    file=difficulty_file,
                )
        return difficulty, difficulty_file or "given"
    models = len(set(pairs.model))
    if models < MIN_MODELS_FOR_DIFFICULTY:
        return pd.Series(dtype=float, name="instruction_difficulty"), "none"
    fitted = fit_difficulty(pairs.model, pairs.instruction, pairs.share, pairs.delta)
    return fitted, f"fitted from {models} models"


def _lookup(difficulty: pd.Series, instruction: np.ndarray) -> np.ndarray | None:
    return None if difficulty.empty else difficulty.reindex(instruction).to_numpy(float)


def _undetermined(name: str, lc: LengthControlled) -> str | None:
    if abs(lc.coef["length"]) <= UNDETERMINED_LENGTH_EFFECT:
        return None
    return (
        f"the LC win rate of {name} is not determined by its pairs: length alone "
        f"separates its wins from its losses (length coefficient "
        f"{lc.coef['length']:.0f}); read its raw win rate"
    )


def _counts(name: str, part: BaselinePairs) -> dict[str, Any]:
    """A table row without its LC columns."""
    share = part.share
    wins, losses = int((share > 0.5).sum()), int((share < 0.5).sum())
    draws = len(share) - wins - losses
    return {
        "model": name,
        "win_rate": 100 * float(share.mean()),
        "standard_error": 100 * standard_error_of_mean(share),
        "n_wins": wins,
        "n_wins_base": losses,
        "n_draws": draws,
        "n_total": len(share),
        "discrete_win_rate": 100 * (wins + draws / 2) / len(share),
        "avg_length": int(part.model_length.mean()),
    }


def _row(name: str, part: BaselinePairs, difficulty: pd.Series, notes: list[str]) -> dict[str, Any]:
    lc = length_controlled(part.share, part.delta, _lookup(difficulty, part.instruction))
    notes += filter(None, [_undetermined(name, lc)])
    return {
        **_counts(name, part),
        "length_controlled_winrate": lc.win_rate,
        "lc_standard_error": lc.standard_error,
    }


def _table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows).sort_values(
        ["length_controlled_winrate", "model"], ascending=[False, True], ignore_index=True
    )


def win_rates(
    battles: Battles,
    baseline: str,
    proba: np.ndarray | None = None,
    *,
    difficulty: pd.Series | None = None,
    difficulty_file: str | None = None,
) -> WinRates:
    """Each model's win rate against ``baseline`` from the votes of ``battles``, or from
    a judge's predicted probabilities ``proba`` (n, 3).

    ``difficulty`` (indexed by instruction text) is the LC GLM's instruction difficulty;
    by default it is fitted from the pairs of every model (none with one model).
    """
    pairs = baseline_pairs(battles, baseline, proba)
    used, source = _difficulty_of(pairs, difficulty, difficulty_file)
    notes: list[str] = []
    rows = [_row(name, pairs.of(name), used, notes) for name in sorted(set(pairs.model))]
    estimate = "votes" if proba is None else "judge"
    return WinRates(_table(rows).assign(estimate=estimate), baseline, estimate, used, source, notes)


def ppi_win_rates(
    unvoted: Battles,
    unvoted_proba: np.ndarray,
    voted: Battles,
    voted_proba: np.ndarray,
    baseline: str,
    *,
    difficulty: pd.Series | None = None,
    difficulty_file: str | None = None,
) -> WinRates:
    """Prediction-powered win rates: a judge's predictions on every pair of
    ``unvoted`` corrected by its errors on the voted pairs of ``voted`` (PPI++, see
    :func:`arenajudge.leaderboard.ppi.ppi_mean`); the intervals stay valid however
    biased the judge. The judge must not have been trained on ``voted``.

    Raises
    ------
    DataError
        A model of ``unvoted`` with fewer than 2 voted pairs against the baseline.
    """
    predicted = baseline_pairs(unvoted, baseline, unvoted_proba)
    votes = baseline_pairs(voted, baseline)
    judged = baseline_pairs(voted, baseline, voted_proba)
    used, source = _difficulty_of(predicted, difficulty, difficulty_file)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for name in sorted(set(predicted.model)):
        part, voted_part, judged_part = predicted.of(name), votes.of(name), judged.of(name)
        if len(voted_part.share) < 2:
            raise DataError(
                f"has {len(voted_part.share)} voted pair(s) of model {name!r} "
                f"against {baseline!r}; prediction-powered win rates need at "
                "least 2 per model",
                file=voted.path,
            )
        row = _counts(name, part)
        powered = ppi_mean(voted_part.share, judged_part.share, part.share)
        hard = _lookup(used, voted_part.instruction)
        if hard is not None and np.isnan(hard).any():
            raise DataError(
                f"has voted pairs of model {name!r} on instructions that are "
                "not among its predicted pairs; vote on pairs of DATA",
                file=voted.path,
            )
        lc = length_controlled_ppi(
            lc_design(voted_part.delta, hard, part.delta),
            voted_part.share,
            judged_part.share,
            lc_design(part.delta, _lookup(used, part.instruction)),
            part.share,
            powered.lam,
        )
        notes += filter(None, [_undetermined(name, lc)])
        row.update(
            win_rate=100 * powered.estimate,
            standard_error=100 * powered.standard_error,
            length_controlled_winrate=lc.win_rate,
            lc_standard_error=lc.standard_error,
            n_votes=powered.n_voted,
            ppi_lambda=powered.lam,
            votes_only_win_rate=100 * powered.votes_only,
            votes_only_standard_error=100 * powered.votes_only_standard_error,
        )
        rows.append(row)
    table = _table(rows).assign(estimate="prediction-powered")
    table = table[["model", *COLUMNS, "estimate", *PPI_COLUMNS]]
    return WinRates(table, baseline, "prediction-powered", used, source, notes)
