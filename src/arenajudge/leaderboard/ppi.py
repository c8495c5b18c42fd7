"""Prediction-powered ratings: a few human votes plus a judge's predictions on many more.

Prediction-powered inference (Angelopoulos et al. 2023) with PPI++ power tuning
(Angelopoulos, Duchi & Zrnic 2024) for the Bradley–Terry M-estimator. With ``n``
human-voted battles (votes ``y``, judge predictions ``f``) and ``N`` unvoted battles
(predictions ``f~``) the ratings minimise

    sum_voted loss(y) + lambda * ((n / N) * sum_unvoted loss(f~) - sum_voted loss(f)),

i.e. the judge's ratings on all battles, corrected by how the judge errs where votes
exist. The loss is linear in the outcome vector, so this is one fit with outcome
vectors ``y - lambda f`` on voted and ``lambda (n / N) f~`` on unvoted battles. The
intervals are the sandwich over the two independent samples: valid however biased
the judge, and narrower the better it predicts the votes. ``lambda`` (in [0, 1]) is
the PPI++ choice minimising the summed variance of the ratings; 0 gives the human-only
board back. :func:`ppi_mean` is the same estimator for a mean (a win rate against a
baseline), where everything has a closed form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from arenajudge.data.schema import Battles
from arenajudge.errors import DataError
from arenajudge.leaderboard import intervals
from arenajudge.leaderboard.board import (
    Leaderboard,
    RatingProblem,
    battle_outcomes,
    check_options,
    kept_battles,
    results_table,
)
from arenajudge.leaderboard.bradley_terry import (
    LOGIT_TO_ELO,
    battle_scores,
    comparisons,
    hessian,
    outcome_terms,
    penalties,
    ratings,
)
from arenajudge.ties import TieModel


def _power_tuning(
    problem: RatingProblem,
    beta: np.ndarray,
    counts: np.ndarray,
    voted: tuple[np.ndarray, np.ndarray, np.ndarray],
    unvoted: tuple[np.ndarray, np.ndarray],
) -> float:
    """PPI++ ``lambda`` minimising the trace of the rating covariance, at ``beta``.

    ``voted`` is (design rows, votes, predictions) and ``unvoted`` (rows, predictions).
    """
    design, m = problem.comparisons.design, problem.comparisons.n_models
    terms = outcome_terms(design, problem.tie_model, beta)
    rows_v, votes, predicted_v = voted
    rows_u, predicted_u = unvoted
    n, big_n = len(rows_v), len(rows_u)
    score_y = battle_scores(terms, rows_v, votes)
    score_f = battle_scores(terms, rows_v, predicted_v)
    cross = intervals.gradient_covariance(design, rows_v, score_y, score_f) / n
    all_rows, all_f = (
        np.r_[rows_v, rows_u],
        np.r_[score_f, battle_scores(terms, rows_u, predicted_u)],
    )
    judge = intervals.gradient_covariance(design, all_rows, all_f, all_f) / (n + big_n)
    inverse = np.linalg.inv(hessian(design, terms, counts, problem.penalty) / n)
    centre = np.zeros((m, len(inverse)))
    centre[:, :m] = np.eye(m) - 1.0 / m
    q = inverse @ centre.T @ centre @ inverse
    numerator = np.trace(q @ (cross + cross.T)) / 2
    denominator = (1 + n / big_n) * np.trace(q @ judge)
    return float(np.clip(numerator / denominator, 0.0, 1.0)) if denominator > 0 else 0.0


@dataclass(frozen=True)
class PoweredMean:
    """A prediction-powered estimate of a mean (see :func:`ppi_mean`).

    Attributes
    ----------
    estimate, standard_error : float
        The estimate and its standard error (normal intervals are valid).
    lam : float
        The PPI++ weight of the predictions, in [0, 1]; 0 is votes only.
    votes_only, votes_only_standard_error : float
        The mean of the votes alone and its standard error, for comparison.
    n_voted, n_unvoted : int
        Voted and predicted items.
    """

    estimate: float
    standard_error: float
    lam: float
    votes_only: float
    votes_only_standard_error: float
    n_voted: int
    n_unvoted: int


def ppi_mean(
    votes: np.ndarray,
    voted_predicted: np.ndarray,
    unvoted_predicted: np.ndarray,
    *,
    power_tuning: bool = True,
) -> PoweredMean:
    """PPI++ estimate of the mean of ``votes`` over a population the predictions cover.

    ``lam * mean(f~) + mean(y - lam f)`` with variance ``lam^2 var(f~) / N +
    var(y - lam f) / n``; ``lam = cov(y, f) / ((1 + n / N) var(f))``, clipped to
    [0, 1], minimises it (Angelopoulos, Duchi & Zrnic 2024). Shapes: ``votes`` and
    ``voted_predicted`` (n,), ``unvoted_predicted`` (N,); n >= 2 and N >= 1.
    """
    y = np.asarray(votes, dtype=float)
    f = np.asarray(voted_predicted, dtype=float)
    f_u = np.asarray(unvoted_predicted, dtype=float)
    n, big_n = len(y), len(f_u)
    if n < 2 or big_n < 1:
        raise ValueError(f"need at least 2 votes and 1 prediction, got {n} and {big_n}")
    lam = 1.0
    if power_tuning:
        spread = np.var(np.r_[f, f_u], ddof=1)
        covariance = np.cov(y, f, ddof=1)[0, 1]
        lam = (
            float(np.clip(covariance / ((1 + n / big_n) * spread), 0.0, 1.0)) if spread > 0 else 0.0
        )
    rectified = y - lam * f
    variance = (
        lam**2 * (np.var(f_u, ddof=1) if big_n > 1 else 0.0) / big_n + np.var(rectified, ddof=1) / n
    )
    return PoweredMean(
        estimate=float(lam * f_u.mean() + rectified.mean()),
        standard_error=float(np.sqrt(variance)),
        lam=lam,
        votes_only=float(y.mean()),
        votes_only_standard_error=intervals.standard_error_of_mean(y),
        n_voted=n,
        n_unvoted=big_n,
    )


def _check_voted_models(
    voted_models: np.ndarray, unvoted_models: np.ndarray, file: str | None
) -> None:
    missing = sorted(set(unvoted_models) - set(voted_models))
    if missing:
        raise DataError(
            f"has no human-voted battles of {len(missing)} model(s) of the "
            f"unlabelled battles ({', '.join(missing[:5])}); prediction-powered "
            "intervals need votes on every model",
            file=file,
        )


def fit_ppi_leaderboard(
    voted: Battles,
    voted_proba: np.ndarray,
    unvoted: Battles,
    unvoted_proba: np.ndarray,
    *,
    ties: str = "half",
    l2: float = 1.0,
    power_tuning: bool = True,
) -> Leaderboard:
    """Prediction-powered ratings with sandwich intervals.

    Parameters
    ----------
    voted : Battles
        Battles with human votes (labels).
    voted_proba, unvoted_proba : ndarray of shape (n, 3) and (N, 3)
        The judge's predicted probabilities on ``voted`` and on ``unvoted``; the judge
        must not have been trained on ``voted`` (its errors there must be typical).
    unvoted : Battles
        Battles without votes (labels, if any, are ignored).
    ties : {"half", "davidson", "rao-kupper"}, default="half"
    l2 : float, default=1.0
        Ridge penalty on the log-strengths.
    power_tuning : bool, default=True
        Choose ``lambda`` by PPI++; False uses plain PPI (``lambda = 1``).

    Returns
    -------
    Leaderboard
        Its ``prediction_powered`` holds ``lambda``, the human-only and prediction-
        powered mean interval widths, their ratio, the effective number of human
        votes (votes a human-only board would need for the same intervals) and
        ``rho``, the correlation of predicted and voted scores on the voted battles.
    """
    check_options("sandwich", 0, ties, l2)
    votes_all = battle_outcomes(voted)
    keep_v, a_v, b_v, skipped, self_battles = kept_battles(voted)
    keep_u, a_u, b_u, _, _ = kept_battles(unvoted)
    if len(keep_u) == 0:
        raise DataError("has no battles between two named models to add", file=unvoted.path)
    voted_models = comparisons(a_v, b_v, None, voted.path).models
    _check_voted_models(voted_models, np.r_[a_u, b_u], unvoted.path)
    votes, f_v = votes_all[keep_v], np.asarray(voted_proba, dtype=float)[keep_v]
    f_u = np.asarray(unvoted_proba, dtype=float)[keep_u]
    n, big_n = len(keep_v), len(keep_u)
    comp = comparisons(np.r_[a_v, a_u], np.r_[b_v, b_u], None, voted.path)
    tie_model = TieModel(ties)
    problem = RatingProblem(
        comp, tie_model, penalties(comp.n_models, comp.design.shape[1], tie_model.n_extra, l2)
    )
    with threadpool_limits(1, user_api="blas"):  # thin products: see board.py
        human_cov, lam, beta, covariance = _fit_rectified(problem, votes, f_v, f_u, power_tuning)
    low, high = intervals.normal_interval(ratings(beta, comp.n_models), covariance)
    d = comp.design.shape[1]
    return Leaderboard(
        table=results_table(problem, beta, np.r_[votes, f_u], low, high),
        battles=n + big_n,
        skipped=skipped,
        self_battles=self_battles,
        interval="sandwich",
        ties=ties,
        tie_parameter=tie_model.parameter(beta[d:]),
        rating_covariance=pd.DataFrame(covariance, index=comp.models, columns=comp.models),
        prediction_powered=_gain(
            lam, n, big_n, np.diag(human_cov), np.diag(covariance), votes, f_v
        ),
    )


def _fit_rectified(
    problem: RatingProblem,
    votes: np.ndarray,
    f_v: np.ndarray,
    f_u: np.ndarray,
    power_tuning: bool,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The human-only ratings' covariance, ``lambda`` and the prediction-powered
    parameters and ratings' covariance, for a design whose first ``len(votes)``
    battles are the voted ones (outcomes ``votes``, predictions ``f_v``) and the rest
    the unvoted ones (predictions ``f_u``)."""
    comp = problem.comparisons
    n, big_n = len(votes), len(f_u)
    on_v, on_u = np.arange(n), np.arange(n, n + big_n)
    rows_v, rows_u = comp.row_of[on_v], comp.row_of[on_u]
    human_counts = comp.counts(np.r_[votes, np.zeros_like(f_u)])
    human = problem.fit(human_counts)
    human_cov = problem.rating_covariance(human, human_counts, [(on_v, votes)])
    lam = (
        _power_tuning(problem, human, human_counts, (rows_v, votes, f_v), (rows_u, f_u))
        if power_tuning
        else 1.0
    )
    rectifier, boost = votes - lam * f_v, lam * n / big_n * f_u
    counts = comp.counts(np.r_[rectifier, boost])
    beta = problem.fit(counts, human)
    covariance = problem.rating_covariance(beta, counts, [(on_v, rectifier), (on_u, boost)])
    return human_cov, lam, beta, covariance


def _gain(
    lam: float,
    n: int,
    big_n: int,
    human_var: np.ndarray,
    ppi_var: np.ndarray,
    votes: np.ndarray,
    predicted: np.ndarray,
) -> dict[str, Any]:
    """What the judge added: widths, their ratio and the effective human votes."""

    def score(outcomes: np.ndarray) -> np.ndarray:
        return outcomes[:, 0] + outcomes[:, 2] / 2

    voted_score, predicted_score = score(votes), score(predicted)
    # a judge with one constant score has no covariance with the votes: rho 0, not NaN
    rho = (
        float(np.corrcoef(voted_score, predicted_score)[0, 1])
        if voted_score.std() > 0 and predicted_score.std() > 0
        else 0.0
    )
    width = 2 * intervals.Z * np.sqrt(np.stack([human_var, ppi_var]))
    effective = n * float(np.mean(human_var / ppi_var))
    return {
        "lambda": lam,
        "voted_battles": n,
        "unvoted_battles": big_n,
        "rho": rho,
        "human_only_mean_width": float(width[0].mean()),
        "mean_width": float(width[1].mean()),
        "width_ratio": float(np.mean(width[1] / width[0])),
        "effective_human_votes": effective,
        "human_votes_gained": effective - n,
    }


def suggest_battles(
    board: Leaderboard, unvoted: Battles, unvoted_proba: np.ndarray, n_suggest: int
) -> pd.DataFrame:
    """The ``n_suggest`` unvoted battles whose votes would most shrink the variance of the
    rating differences between adjacent-ranked models, best first.

    Greedy: a vote on a battle between A and B is taken to add information ``w`` on
    their strength difference, ``w`` the judge's own uncertainty about that vote (the
    variance of the voted score under its predicted probabilities); each pick updates
    the covariance (Sherman–Morrison) so that later picks go elsewhere. Returns a frame
    ``id, model_a, model_b, variance_reduction`` (Elo^2 summed over adjacent pairs).
    """
    cov = board.rating_covariance
    if cov is None:
        raise ValueError("the board has no covariance to plan votes with")
    index = {model: k for k, model in enumerate(cov.index)}
    keep, names_a, names_b, _, _ = kept_battles(unvoted)
    known = np.array([a in index and b in index for a, b in zip(names_a, names_b)], bool)
    keep, names_a, names_b = keep[known], names_a[known], names_b[known]
    proba = np.asarray(unvoted_proba, dtype=float)[keep]
    expected = proba[:, 0] + proba[:, 2] / 2
    weight = proba[:, 0] + proba[:, 2] / 4 - expected**2
    a = np.array([index[x] for x in names_a], dtype=int)
    b = np.array([index[x] for x in names_b], dtype=int)
    picks, gains = _greedy(
        cov.to_numpy() / LOGIT_TO_ELO**2,
        np.array([index[x] for x in board.table["model"]]),
        a,
        b,
        weight,
        n_suggest,
    )
    chosen = keep[picks]
    return pd.DataFrame(
        {
            "id": unvoted.id[chosen],
            "model_a": names_a[picks],
            "model_b": names_b[picks],
            "variance_reduction": np.asarray(gains) * LOGIT_TO_ELO**2,
        }
    )


def _greedy(
    cov: np.ndarray,
    order: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    weight: np.ndarray,
    n_suggest: int,
) -> tuple[list[int], list[float]]:
    """Greedy picks among battles grouped by unordered pair, most weight first."""
    m = len(cov)
    contrast = np.zeros((m - 1, m))
    contrast[np.arange(m - 1), order[:-1]] = 1.0
    contrast[np.arange(m - 1), order[1:]] = -1.0
    key = np.minimum(a, b) * m + np.maximum(a, b)
    sorted_battles = np.lexsort((-weight, key))
    pairs, start, size = np.unique(key[sorted_battles], return_index=True, return_counts=True)
    pair_a, pair_b = pairs // m, pairs % m
    taken = np.zeros(len(pairs), dtype=int)
    picks, gains = [], []
    for _ in range(min(n_suggest, len(a))):
        spread = contrast @ cov
        left = taken < size
        w = np.where(left, weight[sorted_battles[start + np.minimum(taken, size - 1)]], 0.0)
        var_x = cov[pair_a, pair_a] + cov[pair_b, pair_b] - 2 * cov[pair_a, pair_b]
        gain = w * ((spread[:, pair_a] - spread[:, pair_b]) ** 2).sum(axis=0) / (1 + w * var_x)
        best = int(np.argmax(np.where(left, gain, -np.inf)))
        direction = cov[:, pair_a[best]] - cov[:, pair_b[best]]
        cov = cov - w[best] * np.outer(direction, direction) / (1 + w[best] * var_x[best])
        picks.append(int(sorted_battles[start[best] + taken[best]]))
        gains.append(float(gain[best]))
        taken[best] += 1
    return picks, gains
