"""The length-controlled win rate: AlpacaEval 2.0's GLM (Dubois et al. 2024).

For one model against the baseline, the probability that the model's output is
preferred on instruction ``x`` is modelled as

    logistic(theta + phi * tanh(delta_len / std(delta_len)) + psi * difficulty_x),

``delta_len`` the model's output length minus the baseline's (characters) and ``std``
its standard deviation over the model's pairs. The length-controlled (LC) win rate is
the model's predicted win rate had its outputs been as long as the baseline's: the mean
over its instructions of ``logistic(theta + psi * difficulty_x)``.

The instruction difficulty comes from a file (``--difficulty``) or is fitted from the
data by one joint GLM over every model's pairs: ``logistic(theta_m + phi_m * tanh(...)
- difficulty_x)``, the difficulties shrunk towards 0 by a ridge (an instruction that
every model loses would otherwise be infinitely hard). One model alone cannot tell
difficulty from its length effect, so with one model and no file the GLM has no
difficulty term.

All fits are Newton's method on the (soft-label) logistic loss with a small ridge, so
the outputs are finite whatever the data: a model that wins every pair, or outputs of
one length (``std`` 0 drops the length term; AlpacaEval divides by it and gets NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import expit, log_expit

from arenajudge.leaderboard.intervals import standard_error_of_mean

# Ridge (in units of log-likelihood) on the per-model coefficients: negligible next to
# hundreds of pairs, enough to keep a model that wins (or loses) everything finite.
MODEL_RIDGE = 1e-3
# Ridge on the fitted instruction difficulties: a standard normal prior on each.
DIFFICULTY_RIDGE = 1.0
_MAX_NEWTON_STEPS = 100
_TOLERANCE = 1e-10


def _objective(
    design: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    ridge: np.ndarray,
    beta: np.ndarray,
) -> float:
    eta = design @ beta
    return -(positive @ log_expit(eta) + negative @ log_expit(-eta)) + 0.5 * ridge @ beta**2


def fit_logistic(
    design: np.ndarray | sparse.spmatrix,
    positive: np.ndarray,
    negative: np.ndarray,
    ridge: np.ndarray,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """Coefficients minimising the ridge-penalised logistic loss with class masses.

    ``-sum(positive * log p + negative * log(1 - p)) + ridge / 2 * |beta|^2``, ``p =
    logistic(design @ beta)``. Soft labels are ``(share, 1 - share)``; a row's masses
    may be negative (prediction-powered rectifiers) as long as ``positive + negative``
    is not, which keeps the loss convex. Shapes: design (n, p), masses (n,), ridge (p,).
    """
    total = positive + negative
    beta = np.zeros(design.shape[1]) if start is None else start.copy()
    loss = _objective(design, positive, negative, ridge, beta)
    for _ in range(_MAX_NEWTON_STEPS):
        p = expit(design @ beta)
        gradient = design.T @ (total * p - positive) + ridge * beta
        weight = total * p * (1 - p)
        if sparse.issparse(design):
            hessian = (design.T @ sparse.diags(weight) @ design + sparse.diags(ridge)).tocsc()
            step = sparse.linalg.spsolve(hessian, gradient)
        else:
            hessian = design.T @ (weight[:, None] * design) + np.diag(ridge)
            step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while True:  # step halving: Newton can overshoot where p saturates
            candidate = beta - size * step
            new_loss = _objective(design, positive, negative, ridge, candidate)
            if new_loss <= loss + 1e-12 or size < 1e-6:
                break
            size /= 2
        beta, loss = candidate, new_loss
        if np.max(np.abs(size * step)) < _TOLERANCE:
            break
    return beta


def length_feature(delta: np.ndarray, spread_of: np.ndarray | None = None) -> np.ndarray:
    """``tanh(delta / std)``, the std of ``spread_of`` (default ``delta`` itself, so that
    other rows of the same model can share its scale); zeros where the lengths never
    differ (std 0)."""
    reference = delta if spread_of is None else spread_of
    spread = float(np.std(reference, ddof=1)) if len(reference) > 1 else 0.0
    if not np.isfinite(spread) or spread == 0:
        return np.zeros(len(delta))
    return np.tanh(np.asarray(delta, dtype=float) / spread)


def fit_difficulty(
    model: np.ndarray, instruction: np.ndarray, share: np.ndarray, delta: np.ndarray
) -> pd.Series:
    """Instruction difficulties from every model's pairs, one joint GLM (module doc).

    Parameters
    ----------
    model, instruction : ndarray of str, shape (n,)
        Each pair's model and instruction text.
    share : ndarray of float, shape (n,)
        The model's share of the win on each pair (votes or predictions).
    delta : ndarray of float, shape (n,)
        Model output length minus the baseline's.

    Returns
    -------
    Series
        Difficulty per instruction (logit scale, mean about 0; higher is harder for the
        models to beat the baseline), indexed by instruction text.
    """
    models, model_code = np.unique(model, return_inverse=True)
    texts, text_code = np.unique(instruction, return_inverse=True)
    m, k, n = len(models), len(texts), len(model)
    lengths = np.zeros(n)
    for code in range(m):
        rows = model_code == code
        lengths[rows] = length_feature(delta[rows])
    rows = np.arange(n)
    design = sparse.hstack(
        [
            sparse.csr_matrix((np.ones(n), (rows, model_code)), shape=(n, m)),
            sparse.csr_matrix((lengths, (rows, model_code)), shape=(n, m)),
            sparse.csr_matrix((np.ones(n), (rows, text_code)), shape=(n, k)),
        ]
    ).tocsr()
    ridge = np.r_[np.full(2 * m, MODEL_RIDGE), np.full(k, DIFFICULTY_RIDGE)]
    beta = fit_logistic(design, share, 1 - share, ridge)
    return pd.Series(-beta[2 * m :], index=texts, name="instruction_difficulty")


@dataclass(frozen=True)
class LengthControlled:
    """One model's LC fit.

    Attributes
    ----------
    coef : dict
        ``model`` (theta), ``length`` (phi), ``difficulty`` (psi): 0 for a term left out.
    predicted : ndarray, shape (n,)
        Its predicted preference per pair at equal length (what LC averages).
    win_rate, standard_error : float
        LC win rate in percent and its standard error in points.
    """

    coef: dict[str, float]
    predicted: np.ndarray
    win_rate: float
    standard_error: float


TERMS = ("model", "length", "difficulty")


def lc_design(
    delta: np.ndarray, difficulty: np.ndarray | None, spread_of: np.ndarray | None = None
) -> np.ndarray:
    """Design (n, 3): 1, :func:`length_feature`, difficulty (zeros where absent)."""
    length = length_feature(delta, spread_of)
    hardness = np.zeros(len(delta)) if difficulty is None else np.asarray(difficulty, float)
    return np.column_stack([np.ones(len(delta)), length, hardness])


def _active(design: np.ndarray) -> np.ndarray:
    """Columns with information: the intercept, and terms that vary."""
    return np.r_[True, design[:, 1:].std(axis=0) > 0]


def equal_length(design: np.ndarray) -> np.ndarray:
    """``design`` with the length column at 0: the pair as if both outputs were as long."""
    return np.column_stack([design[:, 0], np.zeros(len(design)), design[:, 2]])


def length_controlled(
    share: np.ndarray, delta: np.ndarray, difficulty: np.ndarray | None
) -> LengthControlled:
    """One model's LC win rate from its pairs' shares of the win (see module doc).

    ``lc_standard_error`` is AlpacaEval's: the standard error of the mean of the
    per-instruction predictions (it does not count the uncertainty of the fit).
    """
    design = lc_design(delta, difficulty)
    active = _active(design)
    beta = np.zeros(3)
    beta[active] = fit_logistic(
        design[:, active], share, 1 - share, np.full(active.sum(), MODEL_RIDGE)
    )
    predicted = expit(equal_length(design) @ beta)
    return LengthControlled(
        dict(zip(TERMS, map(float, beta))),
        predicted,
        100 * float(predicted.mean()),
        100 * standard_error_of_mean(predicted),
    )


def length_controlled_ppi(
    voted_design: np.ndarray,
    votes: np.ndarray,
    voted_predicted: np.ndarray,
    unvoted_design: np.ndarray,
    unvoted_predicted: np.ndarray,
    lam: float,
) -> LengthControlled:
    """Prediction-powered LC fit: the GLM's loss on the judge's predictions for every
    pair, corrected by how the judge errs where votes exist (as the leaderboard's
    :mod:`arenajudge.leaderboard.ppi` does for ratings):

        sum_voted loss(y) + lam * ((n / N) * sum_unvoted loss(f~) - sum_voted loss(f)).

    The loss is linear in the label, so this is one fit with masses ``y - lam f`` on
    voted and ``lam (n / N) f~`` on unvoted pairs. The standard error is the sandwich
    over the two samples, carried to the LC win rate by the delta method: valid
    however biased the judge (it counts the fit's uncertainty, not AlpacaEval's
    spread of per-instruction predictions). Designs come from :func:`lc_design`.
    """
    n, big_n = len(votes), len(unvoted_predicted)
    design = np.vstack([voted_design, unvoted_design])
    positive = np.r_[votes - lam * voted_predicted, lam * n / big_n * unvoted_predicted]
    negative = np.r_[
        (1 - votes) - lam * (1 - voted_predicted), lam * n / big_n * (1 - unvoted_predicted)
    ]
    active = _active(design)
    x = design[:, active]
    ridge = np.full(active.sum(), MODEL_RIDGE)
    coef = fit_logistic(x, positive, negative, ridge)
    p = expit(x @ coef)
    total = positive + negative
    gradients = x * (total * p - positive)[:, None]
    meat = sum(
        np.cov(part, rowvar=False, bias=True).reshape(len(coef), len(coef)) * len(part)
        for part in (gradients[:n], gradients[n:])
    )
    inverse = np.linalg.inv(x.T @ ((total * p * (1 - p))[:, None] * x) + np.diag(ridge))
    covariance = inverse @ meat @ inverse
    at_equal_length = equal_length(unvoted_design)[:, active]
    predicted = expit(at_equal_length @ coef)
    direction = (predicted * (1 - predicted)) @ at_equal_length / big_n
    beta = np.zeros(3)
    beta[active] = coef
    return LengthControlled(
        dict(zip(TERMS, map(float, beta))),
        predicted,
        100 * float(predicted.mean()),
        100 * float(np.sqrt(max(direction @ covariance @ direction, 0.0))),
    )
