"""95% intervals of the ratings: the sandwich (robust) estimate or the bootstrap.

The sandwich is ``H^-1 B H^-1``: ``H`` the Hessian of the penalised negative
log-likelihood at the fit, ``B`` the sum of outer products of the per-battle gradients
(centred within each independent sample), as LMArena's ``arena-rank`` computes it. It
needs one fit, stays valid when the model is misspecified (e.g. ties as half wins),
and gives prediction-powered intervals the same way. The bootstrap refits on battles
resampled with replacement and takes percentiles; it needs ``MIN_BOOTSTRAP`` replicates,
and an interval whose percentiles miss the fitted rating is widened to reach it.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist

import numpy as np
from tqdm.auto import tqdm

from arenajudge.leaderboard.bradley_terry import (
    LOGIT_TO_ELO,
    ratings,
    to_params_matrix,
    to_params_vector,
)

CI_LEVEL = 0.95
INTERVALS = ("sandwich", "bootstrap", "none")
Z = NormalDist().inv_cdf(0.5 + CI_LEVEL / 2)
"""Half-width of the normal ``CI_LEVEL`` interval, in standard deviations."""
MIN_BOOTSTRAP = 39
"""Fewest replicates that give a ``CI_LEVEL`` percentile interval: the range of N
replicates holds a fresh one with probability (N - 1) / (N + 1), which reaches 95% at
N = 39; with fewer, even the widest interval they allow is narrower than 95%."""


def standard_error_of_mean(values: np.ndarray) -> float:
    """``std(values, ddof=1) / sqrt(n)``, as pandas' ``sem``; NaN for fewer than 2."""
    if len(values) < 2:
        return float("nan")
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def _per_row(row_of: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    return np.bincount(row_of, weights=values, minlength=n_rows)


def gradient_covariance(
    design: np.ndarray, row_of: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """``sum_i (g_i - mean g)(h_i - mean h)^T`` in parameter space, shape (p, p), for the
    per-battle gradients whose (eta, tau) parts are ``first`` and ``second`` (n, q) on
    design rows ``row_of`` (n,)."""
    n_rows, q = len(design), first.shape[1]
    local = np.empty((n_rows, q, q))
    for i in range(q):
        for j in range(q):
            local[:, i, j] = _per_row(row_of, first[:, i] * second[:, j], n_rows)
    totals = [
        to_params_vector(
            design, np.column_stack([_per_row(row_of, s[:, i], n_rows) for i in range(q)])
        )
        for s in (first, second)
    ]
    return to_params_matrix(design, local) - np.outer(*totals) / max(len(row_of), 1)


def strength_covariance(bread: np.ndarray, meat: np.ndarray, n_models: int) -> np.ndarray:
    """Sandwich covariance of the log-strengths, shape (m, m): ``H^-1 B H^-1``."""
    inverse = np.linalg.inv(bread)
    return (inverse @ meat @ inverse)[:n_models, :n_models]


def rating_covariance(strength_cov: np.ndarray) -> np.ndarray:
    """Covariance of the Elo ratings (strengths centred on their mean), shape (m, m)."""
    m = len(strength_cov)
    centre = np.eye(m) - 1.0 / m
    return LOGIT_TO_ELO**2 * centre @ strength_cov @ centre


def normal_interval(rating: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rating -/+ z * sd``, the two-sided ``CI_LEVEL`` normal interval."""
    half = Z * np.sqrt(np.clip(np.diag(covariance), 0, None))
    return rating - half, rating + half


def bootstrap_interval(
    refit: Callable[[np.ndarray], np.ndarray],
    n: int,
    n_models: int,
    n_bootstrap: int,
    seed: int,
    estimate: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile ``CI_LEVEL`` intervals of the ratings, two arrays of shape (n_models,),
    from ``refit(weights)`` (-> beta) on battles resampled with replacement; NaN for
    ``n_bootstrap`` 0.

    An interval always holds its ``estimate`` (the fitted ratings, (n_models,)): the
    percentiles of a biased bootstrap distribution (the ridge penalty pulls every refit
    towards the mean) can miss it, and then the interval is widened to reach it. Of the
    percentile, basic and bias-corrected intervals, none contains the estimate when all
    replicates fall on one side of it; the union with the estimate only makes the
    interval more conservative.
    """
    if n_bootstrap == 0:
        return np.full(n_models, np.nan), np.full(n_models, np.nan)
    rng = np.random.default_rng(seed)
    replicates = np.array(
        [
            ratings(refit(np.bincount(rng.integers(0, n, n), minlength=n).astype(float)), n_models)
            for _ in tqdm(range(n_bootstrap), desc="bootstrap", leave=False, disable=None)
        ]
    )
    tail = (1 - CI_LEVEL) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail], axis=0)
    if estimate is not None:
        low, high = np.minimum(low, estimate), np.maximum(high, estimate)
    return low, high
