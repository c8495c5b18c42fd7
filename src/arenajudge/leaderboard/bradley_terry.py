"""Bradley–Terry maximum likelihood on the pairwise design, for every tie model.

A battle's linear predictor is ``eta = design_row @ beta``: +1 for model A's
log-strength, -1 for model B's, plus style covariates. Battles of the same ordered pair
share one design row when there are no covariates (their outcome counts add up), which
makes every fit and bootstrap refit tiny. The outcome of a battle is a vector over (A
wins, B wins, tie): one-hot for a vote, predicted probabilities to rate from a model,
or signed PPI pseudo-outcomes; the log-likelihood is linear in it, so counts per row
are all a fit needs. Ratings are on the Elo scale (400 points = 10x odds) with the
average model at 1000; a small ridge penalty keeps a model that never wins finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from arenajudge.data.schema import Battles
from arenajudge.errors import DataError
from arenajudge.ties import OutcomeTerms, TieModel

ELO_SCALE = 400.0
ELO_BASE = 10.0
ELO_ANCHOR = 1000.0
LOGIT_TO_ELO = ELO_SCALE / math.log(ELO_BASE)

# Unpenalised style coefficients would be fine, but a zero-variance covariate (no
# markdown anywhere) would leave the Hessian singular; this keeps it invertible.
_COVARIATE_PENALTY = 1e-6
_MAX_NEWTON_STEPS = 100
_TOLERANCE = 1e-9


def model_pairs(battles: Battles) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Battles between two distinct named models: positions, names of A and of B, and
    the counts left out for a missing name and for a model meeting itself."""
    model_a, model_b = battles.model_a, battles.model_b
    if model_a is None or model_b is None:
        raise DataError(
            "has no model_a / model_b columns; a leaderboard needs the names of "
            "the models in each battle",
            file=battles.path,
        )
    a = np.array([str(m).strip() for m in model_a], dtype=np.str_)
    b = np.array([str(m).strip() for m in model_b], dtype=np.str_)
    named = (a != "") & (b != "")
    keep = np.flatnonzero(named & (a != b))
    return keep, a[keep], b[keep], int((~named).sum()), int(named.sum() - len(keep))


@dataclass(frozen=True)
class Comparisons:
    """Battles between named models as a design.

    Attributes
    ----------
    models : ndarray of str, shape (m,)
        Sorted model names; codes index it.
    a, b : ndarray of int, shape (n,)
        Codes of model A and model B per battle.
    design : ndarray, shape (r, m + covariates)
        One row per ordered pair (no covariates) or per battle.
    row_of : ndarray of int, shape (n,)
        The design row of each battle.
    """

    models: np.ndarray
    a: np.ndarray
    b: np.ndarray
    design: np.ndarray
    row_of: np.ndarray

    @property
    def n_models(self) -> int:
        return len(self.models)

    def counts(self, outcomes: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        """Outcome counts per design row, shape (r, 3), of battle ``outcomes`` (n, 3)."""
        weighted = outcomes if weight is None else outcomes * weight[:, None]
        return np.column_stack(
            [
                np.bincount(self.row_of, weights=weighted[:, k], minlength=len(self.design))
                for k in range(3)
            ]
        )


def comparisons(
    names_a: np.ndarray, names_b: np.ndarray, covariates: np.ndarray | None, file: str | None
) -> Comparisons:
    """The design of battles between ``names_a[i]`` and ``names_b[i]`` (distinct names).

    Raises
    ------
    DataError
        Fewer than two models, or a comparison graph in pieces.
    """
    models, codes = np.unique(np.r_[names_a, names_b], return_inverse=True)
    if len(models) < 2:
        raise DataError(
            f"has {len(models)} named model(s) in battles between two different "
            "models; a leaderboard needs at least two",
            file=file,
        )
    n, m = len(names_a), len(models)
    a, b = codes[:n], codes[n:]
    _check_connected(models, a, b, file)
    if covariates is None:
        pairs, row_of = np.unique(a * m + b, return_inverse=True)
        row_a, row_b = pairs // m, pairs % m
    else:
        row_a, row_b, row_of = a, b, np.arange(n)
    design = np.zeros((len(row_a), m + (0 if covariates is None else covariates.shape[1])))
    rows = np.arange(len(row_a))
    design[rows, row_a] = 1.0
    design[rows, row_b] = -1.0
    if covariates is not None:
        design[:, m:] = covariates
    return Comparisons(models, a, b, design, row_of)


def _check_connected(models: np.ndarray, a: np.ndarray, b: np.ndarray, file: str | None) -> None:
    """Refuse a comparison graph in pieces: ratings across pieces mean nothing."""
    m = len(models)
    graph = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(m, m))
    n_parts, part = connected_components(graph, directed=False)
    if n_parts > 1:
        groups = "; ".join(
            "{"
            + ", ".join(models[part == k][:5])
            + (", ..." if (part == k).sum() > 5 else "")
            + "}"
            for k in range(n_parts)
        )
        raise DataError(
            f"the comparison graph is disconnected: {n_parts} groups of models "
            f"never meet ({groups}), so their ratings cannot be compared; add "
            "battles between the groups or rate each group separately",
            file=file,
        )


def to_params_vector(design: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Sum over rows of a per-row vector in (eta, tau), shape (r, q), in parameter space."""
    head = design.T @ local[:, 0]
    return head if local.shape[1] == 1 else np.r_[head, local[:, 1].sum()]


def to_params_matrix(design: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Sum over rows of a per-row matrix in (eta, tau), shape (r, q, q), in parameter
    space, shape (p, p): ``sum_r J_r L_r J_r^T`` with ``J_r = diag(design_r, 1)``."""
    head = (design * local[:, 0, 0][:, None]).T @ design
    if local.shape[1] == 1:
        return head
    cross_right = design.T @ local[:, 0, 1]
    cross_left = design.T @ local[:, 1, 0]
    return np.block(
        [[head, cross_right[:, None]], [cross_left[None, :], np.array([[local[:, 1, 1].sum()]])]]
    )


def outcome_terms(design: np.ndarray, tie_model: TieModel, beta: np.ndarray) -> OutcomeTerms:
    d = design.shape[1]
    return tie_model.terms(design @ beta[:d], beta[d:])


def objective(
    terms: OutcomeTerms, counts: np.ndarray, penalty: np.ndarray, beta: np.ndarray
) -> float:
    """Negative log-likelihood of the outcome counts plus the ridge penalty."""
    return float(-(counts * terms.log_proba).sum() + penalty @ beta**2 / 2)


def hessian(
    design: np.ndarray, terms: OutcomeTerms, counts: np.ndarray, penalty: np.ndarray
) -> np.ndarray:
    """(Expected) Hessian of :func:`objective`, shape (p, p)."""
    total = counts.sum(axis=1)
    return to_params_matrix(design, terms.information * total[:, None, None]) + np.diag(penalty)


def penalties(n_models: int, n_columns: int, n_extra: int, l2: float) -> np.ndarray:
    """Ridge weights: ``l2`` on log-strengths, next to nothing on covariates and ties."""
    return np.r_[np.full(n_models, l2), np.full(n_columns - n_models + n_extra, _COVARIATE_PENALTY)]


def fit_params(
    design: np.ndarray,
    counts: np.ndarray,
    tie_model: TieModel,
    penalty: np.ndarray,
    start: np.ndarray,
) -> np.ndarray:
    """Penalised maximum likelihood by damped Newton (Fisher scoring for Rao–Kupper).

    ``counts`` (r, 3) are outcome counts per design row; they may be fractional or, for
    prediction-powered fits, negative in places. Returns ``beta`` (p,): log-strengths,
    covariate coefficients, then the tie parameter in its unconstrained form.
    """
    beta = start.copy()
    terms = outcome_terms(design, tie_model, beta)
    current = objective(terms, counts, penalty, beta)
    for _ in range(_MAX_NEWTON_STEPS):
        gradient = (
            -to_params_vector(design, np.einsum("rk,rkq->rq", counts, terms.score)) + penalty * beta
        )
        step = np.linalg.solve(hessian(design, terms, counts, penalty), gradient)
        # Halve the step until the objective falls: plain Newton can overshoot far
        # from the optimum (e.g. for a model that never wins).
        for _ in range(30):
            candidate = beta - step
            terms = outcome_terms(design, tie_model, candidate)
            value = objective(terms, counts, penalty, candidate)
            if value <= current:
                break
            step /= 2
        beta, current = candidate, value
        if np.abs(step).max() < _TOLERANCE:
            break
    return beta


def battle_scores(terms: OutcomeTerms, row_of: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """Per battle, d log-likelihood / d(eta, tau) of its outcome vector, shape (n, q)."""
    return np.einsum("nk,nkq->nq", outcomes, terms.score[row_of])


def ratings(beta: np.ndarray, n_models: int) -> np.ndarray:
    """Log-strengths -> Elo-scale ratings with the average model at ``ELO_ANCHOR``."""
    strength = beta[..., :n_models]
    return ELO_ANCHOR + LOGIT_TO_ELO * (strength - strength.mean(axis=-1, keepdims=True))
