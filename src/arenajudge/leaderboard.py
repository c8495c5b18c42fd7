"""Bradley–Terry leaderboards of the models in a battles file.

Ratings come from the maximum-likelihood Bradley–Terry model fitted as a logistic
regression on the pairwise design (+1 for model A, -1 for model B), the way the public
arena leaderboards compute theirs: the outcome of a battle is A's *score*, 1 for a win,
0 for a loss and 1/2 for a tie (half a win for each side). Scores may also be predicted,
``p(A wins) + p(tie) / 2``, to rank models whose battles have no votes yet.

Ratings are on the Elo scale (400 points = 10x odds) with the average model at 1000;
a small ridge penalty keeps a model that never wins (or never loses) finite.
Confidence intervals are percentiles of ratings refitted on battles resampled with
replacement. Style control adds differences in length and markdown between the two
responses as covariates, so that a model is not rated up just for being verbose.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import sparse  # for the connectivity check
from scipy.sparse.csgraph import connected_components
from scipy.special import expit
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from arenajudge.data.schema import Battles, join_turns
from arenajudge.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

ELO_SCALE = 400.0
ELO_BASE = 10.0
ELO_ANCHOR = 1000.0
_LOGIT_TO_ELO = ELO_SCALE / math.log(ELO_BASE)
CI_LEVEL = 0.95
COLUMNS = ("model", "rating", "ci_lower", "ci_upper", "battles", "win_rate")

# Each pattern starts with a literal so that the regex engine can skip ahead (4x faster
# than ^-anchored MULTILINE patterns); texts get a leading newline to match line one.
# Bold is **...** only: __x__ is mostly Python dunder names in code answers.
_MARKDOWN = {
    "headers": re.compile(r"\n#{1,6}\s"),
    "lists": re.compile(r"\n[ \t]*(?:[-*+]|\d+[.)])\s"),
    "bold": re.compile(r"\*\*[^*\n]+\*\*"),
}
STYLE_FEATURES = ("length", *_MARKDOWN)
"""Style covariates: each the normalised difference ``(a - b) / (a + b + 1)`` of a count."""

# Unpenalised style coefficients would be fine, but a zero-variance covariate (no
# markdown anywhere) would leave the Hessian singular; this keeps it invertible.
_COVARIATE_PENALTY = 1e-6
_MAX_NEWTON_STEPS = 100
_TOLERANCE = 1e-9


def response_lengths(battles: Battles) -> tuple[np.ndarray, np.ndarray]:
    """Characters of response A and of response B (turns joined), two arrays of shape (n,)."""
    return (np.array([len(join_turns(t)) for t in battles.response_a], dtype=float),
            np.array([len(join_turns(t)) for t in battles.response_b], dtype=float))


def _style_counts(responses: list[tuple[str, ...]]) -> np.ndarray:
    """Length and markdown element counts per response, shape (n, len(STYLE_FEATURES))."""
    texts = ["\n" + join_turns(turns) for turns in responses]
    return np.array([[len(text) - 1, *(len(p.findall(text)) for p in _MARKDOWN.values())]
                     for text in texts], dtype=float).reshape(len(texts), len(STYLE_FEATURES))


def style_covariates(battles: Battles) -> np.ndarray:
    """Standardised style differences of A over B, shape (n, len(STYLE_FEATURES)).

    Each column is ``(a - b) / (a + b + 1)`` for a count (characters, headers, list
    items, bold spans), divided by its standard deviation so that the fitted
    coefficients are comparable; 0 still means "same style".
    """
    count_a, count_b = _style_counts(battles.response_a), _style_counts(battles.response_b)
    diff = (count_a - count_b) / (count_a + count_b + 1)
    spread = diff.std(axis=0)
    return diff / np.where(spread > 0, spread, 1.0)


def win_scores(battles: Battles, proba: np.ndarray | None = None) -> np.ndarray:
    """Score of side A per battle, shape (n,): p(A wins) + p(tie) / 2.

    From the labels (votes), or from predicted probabilities ``proba`` of shape (n, 3)
    when given.
    """
    if proba is None:
        if battles.target is None:
            raise DataError("has no votes (label columns) to rate models from; pass "
                            "--model MODEL_DIR to rate them from predicted probabilities",
                            file=battles.path)
        proba = battles.target
    proba = np.asarray(proba, dtype=float)
    if proba.shape != (len(battles), 3):
        raise ValueError(f"proba must have shape ({len(battles)}, 3), got {proba.shape}")
    return proba[:, 0] + proba[:, 2] / 2


@dataclass(frozen=True)
class Leaderboard:
    """A fitted leaderboard.

    Attributes
    ----------
    table : DataFrame
        One row per model, best first, with columns ``COLUMNS``: Elo-scale ``rating``,
        ``ci_lower`` / ``ci_upper`` (bootstrap 95% interval, NaN without bootstrap),
        ``battles`` and ``win_rate`` (wins plus half the ties, over battles).
    skipped : int
        Rows left out because a model name was missing.
    self_battles : int
        Rows left out because a model met itself (they say nothing about ratings).
    style_coefficients : dict
        With style control, the log-odds effect on A's score of one standard deviation
        of each style difference; empty otherwise.
    n_bootstrap : int
        Bootstrap replicates behind the intervals.
    """

    table: pd.DataFrame
    skipped: int = 0
    self_battles: int = 0
    style_coefficients: dict[str, float] = field(default_factory=dict)
    n_bootstrap: int = 0

    def records(self) -> list[dict[str, Any]]:
        """The table as JSON-ready dicts, best first (NaN intervals become None)."""
        rows = self.table.astype(object).where(self.table.notna(), None)
        return rows.to_dict(orient="records")


def _model_pairs(battles: Battles) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Battles between two distinct named models: positions, names of A and of B, and
    the counts left out for a missing name and for a model meeting itself."""
    if not battles.has_models:
        raise DataError("has no model_a / model_b columns; a leaderboard needs the names of "
                        "the models in each battle", file=battles.path)
    a = np.array([str(m).strip() for m in battles.model_a], dtype=str)
    b = np.array([str(m).strip() for m in battles.model_b], dtype=str)
    named = (a != "") & (b != "")
    keep = np.flatnonzero(named & (a != b))
    return keep, a[keep], b[keep], int((~named).sum()), int(named.sum() - len(keep))


def _check_connected(models: np.ndarray, a: np.ndarray, b: np.ndarray, file: str | None
                     ) -> None:
    """Refuse a comparison graph in pieces: ratings across pieces mean nothing."""
    m = len(models)
    graph = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(m, m))
    n_parts, part = connected_components(graph, directed=False)
    if n_parts > 1:
        groups = "; ".join("{" + ", ".join(models[part == k][:5])
                           + (", ..." if (part == k).sum() > 5 else "") + "}"
                           for k in range(n_parts))
        raise DataError(f"the comparison graph is disconnected: {n_parts} groups of models "
                        f"never meet ({groups}), so their ratings cannot be compared; add "
                        "battles between the groups or rate each group separately",
                        file=file)


def _design(a: np.ndarray, b: np.ndarray, n_models: int, covariates: np.ndarray | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """The Bradley–Terry design matrix, shape (rows, n_models + covariates), and the
    design row of each battle, shape (n,).

    Without covariates, battles of the same ordered pair share one row (their wins
    and games add up), which makes every fit and bootstrap refit tiny. With them,
    each battle is a row; dense, because BLAS on a few dozen columns beats sparse.
    """
    if covariates is None:
        pairs, row_of = np.unique(a * n_models + b, return_inverse=True)
        a, b = pairs // n_models, pairs % n_models
    else:
        row_of = np.arange(len(a))
    design = np.zeros((len(a), n_models + (0 if covariates is None else covariates.shape[1])))
    rows = np.arange(len(a))
    design[rows, a] = 1.0
    design[rows, b] = -1.0
    if covariates is not None:
        design[:, n_models:] = covariates
    return design, row_of


def _fit_logistic(design: np.ndarray, wins: np.ndarray, games: np.ndarray,
                  penalty: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Ridge-penalised logistic regression with fractional outcomes, by damped Newton.

    Minimises ``sum(games * log(1 + e^eta) - wins * eta) + penalty . beta^2 / 2`` with
    ``eta = design @ beta``; ``wins`` may be fractional (ties, predicted scores).
    """
    def objective(eta: np.ndarray, beta: np.ndarray) -> float:
        return float(games @ np.logaddexp(0, eta) - wins @ eta + penalty @ beta ** 2 / 2)

    beta = np.zeros(design.shape[1]) if start is None else start.copy()
    eta = design @ beta
    current = objective(eta, beta)
    for _ in range(_MAX_NEWTON_STEPS):
        p = expit(eta)
        gradient = design.T @ (games * p - wins) + penalty * beta
        hessian = (design * (games * p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        # Halve the step until the objective falls: plain Newton can overshoot far
        # from the optimum (e.g. for a model that never wins).
        for _ in range(30):
            candidate = beta - step
            eta = design @ candidate
            value = objective(eta, candidate)
            if value <= current:
                break
            step /= 2
        beta, current = candidate, value
        if np.abs(step).max() < _TOLERANCE:
            break
    return beta


def _ratings(beta: np.ndarray, n_models: int) -> np.ndarray:
    """Log-strengths -> Elo-scale ratings with the average model at ``ELO_ANCHOR``."""
    strength = beta[..., :n_models]
    return ELO_ANCHOR + _LOGIT_TO_ELO * (strength - strength.mean(axis=-1, keepdims=True))


def _bootstrap_interval(fit: Callable[[np.ndarray, np.ndarray], np.ndarray],
                        beta: np.ndarray, n: int, n_models: int, n_bootstrap: int, seed: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile ``CI_LEVEL`` intervals of the ratings, two arrays of shape (n_models,),
    from ``fit(weights, start)`` on battles resampled with replacement (as weights)."""
    if n_bootstrap == 0:
        return np.full(n_models, np.nan), np.full(n_models, np.nan)
    rng = np.random.default_rng(seed)
    replicates = np.array([
        _ratings(fit(np.bincount(rng.integers(0, n, n), minlength=n).astype(float), beta),
                 n_models)
        for _ in tqdm(range(n_bootstrap), desc="bootstrap", leave=False, disable=None)])
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail], axis=0)
    return low, high


def fit_leaderboard(battles: Battles, proba: np.ndarray | None = None, *,
                    n_bootstrap: int = 100, seed: int = 0, style_control: bool = False,
                    l2: float = 1.0) -> Leaderboard:
    """Rate the models of ``battles`` by Bradley–Terry maximum likelihood.

    Parameters
    ----------
    battles : Battles
        Battles with ``model_a`` / ``model_b``; rows where a name is missing are
        skipped (and counted), as are rows where a model meets itself.
    proba : ndarray of shape (n, 3), optional
        Predicted probabilities to rate from instead of the votes.
    n_bootstrap : int, default=100
        Bootstrap replicates for the 95% intervals; 0 leaves them NaN.
    seed : int, default=0
        Seed of the bootstrap resampling.
    style_control : bool, default=False
        Adjust ratings for length and markdown differences (``STYLE_FEATURES``).
    l2 : float, default=1.0
        Ridge penalty on the log-strengths, in units of log-likelihood; it keeps
        ratings finite and is negligible next to a few dozen battles per model.

    Raises
    ------
    DataError
        No model names or votes, fewer than two models, or a disconnected comparison
        graph.
    """
    if n_bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 or more, got {n_bootstrap}")
    if l2 <= 0:
        raise ConfigError(f"l2 must be positive (it keeps ratings finite), got {l2}")
    score_all = win_scores(battles, proba)
    keep, names_a, names_b, skipped, self_battles = _model_pairs(battles)
    if skipped:
        logger.warning("%s: skipped %d rows without model names", battles.path, skipped)
    if self_battles:
        logger.warning("%s: skipped %d rows where a model meets itself", battles.path,
                       self_battles)
    score = score_all[keep]
    models, codes = np.unique(np.r_[names_a, names_b], return_inverse=True)
    if len(models) < 2:
        raise DataError(f"has {len(models)} named model(s) in battles between two different "
                        "models; a leaderboard needs at least two", file=battles.path)
    n, m = len(keep), len(models)
    a, b = codes[:n], codes[n:]
    _check_connected(models, a, b, battles.path)

    covariates = style_covariates(battles.take(keep)) if style_control else None
    design, row_of = _design(a, b, m, covariates)
    penalty = np.r_[np.full(m, l2), np.full(design.shape[1] - m, _COVARIATE_PENALTY)]

    def fit(weight: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        wins = np.bincount(row_of, weights=weight * score, minlength=design.shape[0])
        games = np.bincount(row_of, weights=weight, minlength=design.shape[0])
        return _fit_logistic(design, wins, games, penalty, start)

    # The products here are thin (a few dozen columns): threaded BLAS gains nothing and,
    # on a busy machine, its spinning threads made style control 3x slower.
    with threadpool_limits(1, user_api="blas"):
        beta = fit(np.ones(n))
        low, high = _bootstrap_interval(fit, beta, n, m, n_bootstrap, seed)

    games = np.bincount(a, minlength=m) + np.bincount(b, minlength=m)
    points = np.bincount(a, weights=score, minlength=m) + np.bincount(b, weights=1 - score,
                                                                      minlength=m)
    table = pd.DataFrame({"model": models, "rating": _ratings(beta, m), "ci_lower": low,
                          "ci_upper": high, "battles": games, "win_rate": points / games})
    table = table.sort_values(["rating", "model"], ascending=[False, True], ignore_index=True)
    return Leaderboard(
        table=table, skipped=skipped, self_battles=self_battles, n_bootstrap=n_bootstrap,
        style_coefficients=(dict(zip(STYLE_FEATURES, map(float, beta[m:])))
                            if style_control else {}))
