"""Fitting a leaderboard: ratings, intervals, tie parameter, style coefficients."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from arenajudge.data.schema import Battles
from arenajudge.errors import ConfigError, DataError
from arenajudge.leaderboard import intervals
from arenajudge.leaderboard.bradley_terry import (
    Comparisons,
    battle_scores,
    comparisons,
    fit_params,
    hessian,
    model_pairs,
    outcome_terms,
    penalties,
    ratings,
)
from arenajudge.leaderboard.style import STYLE_FEATURES, style_covariates
from arenajudge.ties import RATING_TIE_MODELS, TieModel

logger = logging.getLogger(__name__)

COLUMNS = ("model", "rating", "ci_lower", "ci_upper", "battles", "win_rate")


@dataclass(frozen=True)
class Leaderboard:
    """A fitted leaderboard.

    Attributes
    ----------
    table : DataFrame
        One row per model, best first, with columns ``COLUMNS``: Elo-scale ``rating``,
        ``ci_lower`` / ``ci_upper`` (95% interval, NaN without one), ``battles`` and
        ``win_rate`` (wins plus half the ties, over battles).
    battles : int
        Battles rated (between two distinct named models).
    skipped, self_battles : int
        Rows left out because a model name was missing / a model met itself.
    interval : str
        How the intervals were made: one of ``intervals.INTERVALS``.
    n_bootstrap : int
        Bootstrap replicates behind bootstrap intervals.
    ties : str
        The tie model, one of ``RATING_TIE_MODELS``; ``tie_parameter`` is its fitted
        parameter (Davidson's nu, Rao–Kupper's theta; None for ``half``), and
        ``both_bad_share`` the share of ties voted "both bad", where the file says.
    style_coefficients : dict
        With style control, the log-odds effect of one standard deviation of each
        style difference; empty otherwise.
    rating_covariance : DataFrame or None
        Sandwich covariance of the ratings (Elo^2), indexed by model both ways.
    prediction_powered : dict
        For prediction-powered ratings, what the judge added (see ``ppi``); else empty.
    """

    table: pd.DataFrame
    battles: int = 0
    skipped: int = 0
    self_battles: int = 0
    interval: str = "sandwich"
    n_bootstrap: int = 0
    ties: str = "half"
    tie_parameter: float | None = None
    both_bad_share: float | None = None
    style_coefficients: dict[str, float] = field(default_factory=dict)
    rating_covariance: pd.DataFrame | None = None
    prediction_powered: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        """The table as JSON-ready dicts, best first (NaN intervals become None)."""
        rows = self.table.astype(object).where(self.table.notna(), None)
        return rows.to_dict(orient="records")

    def summary(self) -> dict[str, Any]:
        """Everything but the covariance, JSON-ready."""
        summary = {
            "models": self.records(),
            "battles": self.battles,
            "skipped": self.skipped,
            "self_battles": self.self_battles,
            "interval": self.interval,
            "ties": self.ties,
        }
        if self.interval == "bootstrap":
            summary["n_bootstrap"] = self.n_bootstrap
        if self.tie_parameter is not None:
            summary["tie_parameter"] = self.tie_parameter
        if self.both_bad_share is not None:
            summary["both_bad_share_of_ties"] = self.both_bad_share
        if self.style_coefficients:
            summary["style_coefficients"] = self.style_coefficients
        if self.prediction_powered:
            summary["prediction_powered"] = self.prediction_powered
        return summary


@dataclass(frozen=True)
class RatingProblem:
    """A design, a tie model and a penalty: what every fit of one leaderboard shares."""

    comparisons: Comparisons
    tie_model: TieModel
    penalty: np.ndarray

    def fit(self, counts: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        if start is None:
            ties = counts[:, 2].sum() / max(counts.sum(), 1e-12)
            start = np.r_[np.zeros(self.comparisons.design.shape[1]), self.tie_model.start(ties)]
        return fit_params(self.comparisons.design, counts, self.tie_model, self.penalty, start)

    def rating_covariance(
        self, beta: np.ndarray, counts: np.ndarray, samples: list[tuple[np.ndarray, np.ndarray]]
    ) -> np.ndarray:
        """Sandwich covariance of the ratings (m, m) at ``beta`` for the objective with
        ``counts``; ``samples`` lists the independent samples as (battle positions,
        their outcome vectors as weighted in the objective)."""
        design, row_of = self.comparisons.design, self.comparisons.row_of
        terms = outcome_terms(design, self.tie_model, beta)
        meat = functools.reduce(
            np.add,
            [
                intervals.gradient_covariance(design, row_of[where], scores, scores)
                for where, outcomes in samples
                for scores in [battle_scores(terms, row_of[where], outcomes)]
            ],
        )
        bread = hessian(design, terms, counts, self.penalty)
        return intervals.rating_covariance(
            intervals.strength_covariance(bread, meat, self.comparisons.n_models)
        )


def battle_outcomes(battles: Battles, proba: np.ndarray | None = None) -> np.ndarray:
    """Outcome vectors (n, 3) in ``LABELS`` order: the votes, or ``proba`` when given."""
    if proba is None:
        if battles.target is None:
            raise DataError(
                "has no votes (label columns) to rate models from; pass "
                "--model MODEL_DIR to rate them from predicted probabilities",
                file=battles.path,
            )
        proba = battles.target
    proba = np.asarray(proba, dtype=float)
    if proba.shape != (len(battles), 3):
        raise ValueError(f"proba must have shape ({len(battles)}, 3), got {proba.shape}")
    return proba


def check_options(ci: str, n_bootstrap: int, ties: str, l2: float) -> None:
    if ci not in intervals.INTERVALS:
        raise ConfigError(f"--ci must be one of {', '.join(intervals.INTERVALS)}, got {ci!r}")
    if ties not in RATING_TIE_MODELS:
        raise ConfigError(f"--ties must be one of {', '.join(RATING_TIE_MODELS)}, got {ties!r}")
    if n_bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 or more, got {n_bootstrap}")
    if ci == "bootstrap" and n_bootstrap < intervals.MIN_BOOTSTRAP:
        raise ConfigError(
            f"--bootstrap {n_bootstrap} replicates cannot give a 95% interval: "
            f"give at least {intervals.MIN_BOOTSTRAP}, or --ci none for no "
            "intervals"
        )
    if l2 <= 0:
        raise ConfigError(f"l2 must be positive (it keeps ratings finite), got {l2}")


def kept_battles(battles: Battles) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """:func:`model_pairs`, logging what it leaves out."""
    keep, names_a, names_b, skipped, self_battles = model_pairs(battles)
    if skipped:
        logger.warning("%s: skipped %d rows without model names", battles.path, skipped)
    if self_battles:
        logger.warning("%s: skipped %d rows where a model meets itself", battles.path, self_battles)
    return keep, names_a, names_b, skipped, self_battles


def results_table(
    problem: RatingProblem,
    beta: np.ndarray,
    outcomes: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
) -> pd.DataFrame:
    """The ``COLUMNS`` table, best first, of battles with ``outcomes`` (n, 3)."""
    comp = problem.comparisons
    m, score = comp.n_models, outcomes[:, 0] + outcomes[:, 2] / 2
    games = np.bincount(comp.a, minlength=m) + np.bincount(comp.b, minlength=m)
    points = np.bincount(comp.a, weights=score, minlength=m) + np.bincount(
        comp.b, weights=1 - score, minlength=m
    )
    table = pd.DataFrame(
        {
            "model": comp.models,
            "rating": ratings(beta, m),
            "ci_lower": low,
            "ci_upper": high,
            "battles": games,
            "win_rate": points / games,
        }
    )
    return table.sort_values(["rating", "model"], ascending=[False, True], ignore_index=True)


def _both_bad_share(battles: Battles, outcomes: np.ndarray) -> float | None:
    if battles.both_bad is None:
        return None
    ties = outcomes[:, 2].sum()
    return float(outcomes[battles.both_bad, 2].sum() / ties) if ties else None


def _fit_with_intervals(
    problem: RatingProblem, outcomes: np.ndarray, ci: str, n_bootstrap: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The parameters, the ratings' sandwich covariance (m, m) and the 95% interval
    bounds (m,) of each rating, sandwich or bootstrap (NaN with ``ci="none"``)."""
    comp = problem.comparisons
    n, m = len(outcomes), comp.n_models
    counts = comp.counts(outcomes)
    # The products here are thin (a few dozen columns): threaded BLAS gains nothing and,
    # on a busy machine, its spinning threads made style control 3x slower.
    with threadpool_limits(1, user_api="blas"):
        beta = problem.fit(counts)
        covariance = problem.rating_covariance(beta, counts, [(np.arange(n), outcomes)])
        if ci == "sandwich":
            low, high = intervals.normal_interval(ratings(beta, m), covariance)
        else:
            low, high = intervals.bootstrap_interval(
                lambda weight: problem.fit(comp.counts(outcomes, weight), beta),
                n,
                m,
                n_bootstrap if ci == "bootstrap" else 0,
                seed,
                ratings(beta, m),
            )
    return beta, covariance, low, high


def fit_leaderboard(
    battles: Battles,
    proba: np.ndarray | None = None,
    *,
    ci: str = "sandwich",
    n_bootstrap: int = 100,
    ties: str = "half",
    seed: int = 0,
    style_control: bool = False,
    l2: float = 1.0,
) -> Leaderboard:
    """Rate the models of ``battles`` by Bradley–Terry maximum likelihood.

    Parameters
    ----------
    battles : Battles
        Battles with ``model_a`` / ``model_b``; rows where a name is missing are
        skipped (and counted), as are rows where a model meets itself.
    proba : ndarray of shape (n, 3), optional
        Predicted probabilities to rate from instead of the votes.
    ci : {"sandwich", "bootstrap", "none"}, default="sandwich"
        How to make the 95% intervals.
    n_bootstrap : int, default=100
        Bootstrap replicates with ``ci="bootstrap"``: at least
        ``intervals.MIN_BOOTSTRAP`` (fewer cannot make a 95% interval).
    ties : {"half", "davidson", "rao-kupper"}, default="half"
        The tie model (see ``ties``).
    seed : int, default=0
        Seed of the bootstrap resampling.
    style_control : bool, default=False
        Adjust ratings for length and markdown differences (``STYLE_FEATURES``).
    l2 : float, default=1.0
        Ridge penalty on the log-strengths (log-likelihood units): keeps ratings
        finite, negligible next to a few dozen battles per model.

    Raises
    ------
    DataError
        No model names or votes, fewer than two models, a disconnected comparison
        graph, or a tie model asked of battles without ties.
    """
    check_options(ci, n_bootstrap, ties, l2)
    outcomes_all = battle_outcomes(battles, proba)
    keep, names_a, names_b, skipped, self_battles = kept_battles(battles)
    outcomes = outcomes_all[keep]
    if ties != "half" and not outcomes[:, 2].any():
        raise DataError(
            f"has no ties, so --ties {ties} has nothing to fit; use --ties half", file=battles.path
        )
    covariates = style_covariates(battles.take(keep)) if style_control else None
    comp = comparisons(names_a, names_b, covariates, battles.path)
    tie_model, m, d = TieModel(ties), comp.n_models, comp.design.shape[1]
    problem = RatingProblem(comp, tie_model, penalties(m, d, tie_model.n_extra, l2))
    beta, covariance, low, high = _fit_with_intervals(problem, outcomes, ci, n_bootstrap, seed)
    return Leaderboard(
        table=results_table(problem, beta, outcomes, low, high),
        battles=len(keep),
        skipped=skipped,
        self_battles=self_battles,
        interval=ci,
        n_bootstrap=n_bootstrap if ci == "bootstrap" else 0,
        ties=ties,
        tie_parameter=tie_model.parameter(beta[d:]),
        both_bad_share=None if ties == "half" else _both_bad_share(battles.take(keep), outcomes),
        style_coefficients=(
            dict(zip(STYLE_FEATURES, map(float, beta[m:d]))) if style_control else {}
        ),
        rating_covariance=pd.DataFrame(covariance, index=comp.models, columns=comp.models),
    )
