"""Tie models: how likely a tie is, given how far apart the two responses are.

One home for every tie model of the package, below both their users: the calibration
(``--tie-rate``: which tie model reaches a target share of ties) and the leaderboards
(``--ties``: which likelihood a Bradley–Terry rating is fitted with).

* ``davidson`` (Davidson 1970), the one model both use: with ``eta`` A's log-odds of
  winning against B and ``nu`` the tie parameter, ``p(tie) = nu m / (1 + nu m)`` where
  ``m = sqrt(q (1 - q))``, ``q = expit(eta)``, is the :func:`decisive_margin` (0.5 for a
  coin flip, near 0 when one response clearly wins); ``p(A) / p(B) = exp(eta)``.
  Equivalently ``p(tie) = nu sqrt(pi_a pi_b) / (pi_a + pi_b + nu sqrt(pi_a pi_b))``;
  ``nu = 2 t / (1 - t)`` for a tie rate ``t`` between equal models.
  :func:`davidson_log_proba` is its one formula.
* ``prior_shift`` (calibration only): no tie model at all; Bayes' rule moves the
  model's own tie column (:func:`prior_shift`).
* ``half`` (ratings only): the arena convention, a tie is half a win for each side
  (Bradley–Terry on the score ``p(A) + p(tie) / 2``); no tie parameter.
* ``rao-kupper`` (ratings only; Rao & Kupper 1967): ``p(A) = pi_a / (pi_a + theta pi_b)``,
  ``theta >= 1``; ``theta = (1 + t) / (1 - t)`` for a tie rate ``t`` between equal models.

For ratings each model gives, per design row with linear predictor ``eta`` (A's
log-strength minus B's, plus style terms) and tie parameter ``tau``, the log-probabilities
of the outcomes (A wins, B wins, tie), their derivatives in ``(eta, tau)`` and the
information of one battle (:class:`TieModel`). In both tie models ``p(A wins) / p(B wins)
= pi_a / pi_b``, so ratings keep the Bradley–Terry Elo scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit, log_softmax

CALIBRATION_TIE_MODELS = ("prior_shift", "davidson")
"""How a calibration reaches a target tie rate (``Calibration.tie_model``)."""
RATING_TIE_MODELS = ("half", "davidson", "rao-kupper")
"""The likelihoods a leaderboard can be fitted with (``leaderboard --ties``)."""
MAX_NU = 1e6
"""Davidson's nu is never fitted or solved above this."""
_TINY = 1e-300


# ------------------------------------------------------------------ prior shift
def prior_shift(
    proba: np.ndarray, tie_rate: float | np.ndarray, train_prior: tuple[float, float, float]
) -> np.ndarray:
    """``proba`` (n, 3) moved by Bayes' rule from the class balance ``train_prior`` to
    ((1 - r) / 2, (1 - r) / 2, r), rows normalised; ``tie_rate`` r is one rate or one per
    row, shape (n,), anywhere in (0, 1).

    The shift is done in log space and normalised by log-sum-exp: any r from the smallest
    positive float to 1 - 1e-16 gives finite rows summing to 1 (a product of tiny
    factors would underflow to a row of zeros, then NaN)."""
    rate = np.asarray(tie_rate, dtype=float)[..., None]
    # log((1 - r) / 2) by log1p: 1 - r loses every digit of a tiny r, log(r) keeps them
    log_decisive = np.log1p(-rate) - math.log(2)
    log_target = np.concatenate([log_decisive, log_decisive, np.log(rate)], axis=-1)
    with np.errstate(divide="ignore"):  # a zero stays a zero: log 0 = -inf, exp -> 0
        log_proba = np.log(np.asarray(proba, dtype=float))
    shifted = log_proba + log_target - np.log(np.asarray(train_prior, dtype=float))
    return np.exp(log_softmax(shifted, axis=1))


# ------------------------------------------------------------------ Davidson's model
def davidson_log_proba(eta: np.ndarray, log_nu: float) -> np.ndarray:
    """Davidson log-probabilities of (A wins, B wins, tie), shape (n, 3), for A's
    log-odds ``eta`` (n,) against B and ``log_nu`` = log(nu) (``-inf`` for no ties).

    In logs, log p = (eta / 2, -eta / 2, log nu) - log(e^(eta/2) + e^(-eta/2) + nu):
    finite for any ``eta``, where ``q (1 - q)`` in probabilities would round to 0."""
    log_norm = np.logaddexp(np.logaddexp(eta / 2, -eta / 2), log_nu)
    return np.column_stack([eta / 2 - log_norm, -eta / 2 - log_norm, log_nu - log_norm])


def decisive_margin(proba: np.ndarray) -> np.ndarray:
    """sqrt(q (1 - q)) with q = p(A) / (p(A) + p(B)), shape (n,): 0.5 for a coin flip,
    near 0 when one response clearly wins."""
    q = proba[:, 0] / np.maximum(proba[:, 0] + proba[:, 1], 1e-12)
    return np.sqrt(q * (1 - q))


def davidson(proba: np.ndarray, nu: float) -> np.ndarray:
    """Davidson probabilities, shape (n, 3): the A-vs-B odds of ``proba`` (n, 3) kept,
    the tie probability nu * m / (1 + nu * m) with m the :func:`decisive_margin`; the
    tie column of ``proba`` is ignored."""
    # a probability below 1e-300 (or 0) counts as 1e-300: the log-odds stay finite
    log_a, log_b = (np.log(np.maximum(proba[:, k], _TINY)) for k in (0, 1))
    log_nu = math.log(nu) if nu > 0 else -math.inf  # nu = 0 (no ties): p(tie) = 0
    return np.exp(davidson_log_proba(log_a - log_b, log_nu))


def fit_davidson(y: np.ndarray, proba: np.ndarray) -> float:
    """Maximum-likelihood nu of :func:`davidson` for labels ``y`` ((n,) or (n, 3))
    given the A-vs-B odds of ``proba`` (its tie column is ignored)."""
    target = np.eye(3)[np.asarray(y, dtype=int)] if np.ndim(y) == 1 else np.asarray(y, float)
    margin, ties = decisive_margin(proba), target[:, 2]

    def negative_log_likelihood(log_nu: float) -> float:
        # tie vs not: log p(tie) = log(nu m) - log1p(nu m), log p(not) = -log1p(nu m)
        strength = math.exp(log_nu) * margin
        return float(-(ties * np.log(strength + 1e-300) - np.log1p(strength)).sum())

    from scipy.optimize import minimize_scalar

    if ties.sum() == 0:
        return 0.0
    result = minimize_scalar(
        negative_log_likelihood, bounds=(-20, math.log(MAX_NU)), method="bounded"
    )
    return float(math.exp(result.x))


def solve_davidson(margins: np.ndarray, tie_rate: float) -> float:
    """The nu at which the mean Davidson tie probability over ``margins`` is ``tie_rate``,
    for any rate in (0, 1); ``MAX_NU`` when the margins cannot reach the rate.

    Solved in logs, log(mean tie) = log(nu) + log(mean(m / (1 + nu m))) = log(r): stable
    from the smallest positive float up, where the difference mean tie - r is all
    rounding. As nu * mean(m) / (1 + nu max(m)) <= mean tie <= nu * mean(m), the root
    lies at or above r / mean(m), which brackets it from below whatever r is."""
    from scipy.optimize import brentq

    margins = np.asarray(margins, dtype=float)
    log_rate = math.log(tie_rate)

    def excess(log_nu: float) -> float:
        nu = math.exp(log_nu)
        return log_nu + math.log(float(np.mean(margins / (1 + nu * margins)))) - log_rate

    low, high = log_rate - math.log(float(margins.mean())), math.log(MAX_NU)
    if excess(high) < 0:  # the target is beyond what these margins allow
        return MAX_NU
    if excess(low) >= 0:  # the root is at the bracket's end (equality, up to rounding)
        return math.exp(low)
    return float(math.exp(brentq(excess, low, high, xtol=1e-12)))


# ------------------------------------------------------- the ratings' likelihoods
@dataclass(frozen=True)
class OutcomeTerms:
    """Per design row: ``log_proba`` (r, 3), ``score`` (r, 3, q) = d log p(outcome) /
    d(eta, tau), ``information`` (r, q, q) of one battle (the Hessian of its negative
    log-likelihood, or its expectation); ``q`` is 1 without a tie parameter, else 2."""

    log_proba: np.ndarray
    score: np.ndarray
    information: np.ndarray


@dataclass(frozen=True)
class TieModel:
    """One of ``RATING_TIE_MODELS``; ``n_extra`` is the number of tie parameters (0 or 1)."""

    name: str

    @property
    def n_extra(self) -> int:
        return 0 if self.name == "half" else 1

    def start(self, tie_rate: float) -> np.ndarray:
        """The tie parameter(s) matching ``tie_rate`` between equal models."""
        if self.name == "half":
            return np.zeros(0)
        t = min(max(tie_rate, 1e-3), 0.9)
        if self.name == "davidson":
            return np.array([np.log(2 * t / (1 - t))])
        return np.array([np.log(np.log((1 + t) / (1 - t)))])

    def parameter(self, tau: np.ndarray) -> float | None:
        """The reported tie parameter: Davidson's nu or Rao–Kupper's theta."""
        if self.name == "half":
            return None
        if self.name == "davidson":
            return float(np.exp(tau[0]))
        return float(np.exp(np.exp(tau[0])))

    def terms(self, eta: np.ndarray, tau: np.ndarray) -> OutcomeTerms:
        if self.name == "half":
            return _half(eta)
        if self.name == "davidson":
            return _davidson(eta, float(tau[0]))
        return _rao_kupper(eta, float(tau[0]))


def _half(eta: np.ndarray) -> OutcomeTerms:
    p = expit(eta)
    log_a, log_b = log_expit(eta), log_expit(-eta)
    log_proba = np.column_stack([log_a, log_b, (log_a + log_b) / 2])
    score = np.column_stack([1 - p, -p, 0.5 - p])[:, :, None]
    return OutcomeTerms(log_proba, score, (p * (1 - p))[:, None, None])


def _davidson(eta: np.ndarray, tau: float) -> OutcomeTerms:
    # tau = log(nu). An exponential family in (eta, tau) with statistics
    # ((yA - yB) / 2, yT): the information is their covariance, whatever the outcome.
    log_proba = davidson_log_proba(eta, tau)
    p_a, p_b, p_t = np.exp(log_proba).T
    half_diff = (p_a - p_b) / 2
    score = np.empty((len(eta), 3, 2))
    score[:, :, 0] = np.column_stack([0.5 - half_diff, -0.5 - half_diff, -half_diff])
    score[:, :, 1] = np.column_stack([-p_t, -p_t, 1 - p_t])
    information = np.empty((len(eta), 2, 2))
    information[:, 0, 0] = (p_a + p_b) / 4 - half_diff**2
    information[:, 1, 1] = p_t * (1 - p_t)
    information[:, 0, 1] = information[:, 1, 0] = -half_diff * p_t
    return OutcomeTerms(log_proba, score, information)


def _rao_kupper(eta: np.ndarray, tau: float) -> OutcomeTerms:
    # kappa = log(theta) = e^tau keeps theta > 1; information is the expected one
    # (Fisher scoring), which is what the sandwich's bread needs.
    kappa = np.exp(tau)
    p_a, p_b = expit(eta - kappa), expit(-eta - kappa)
    p_t = np.maximum(expit(kappa - eta) - expit(-kappa - eta), _TINY)
    var_a, var_b = p_a * (1 - p_a), p_b * (1 - p_b)
    log_proba = np.column_stack([log_expit(eta - kappa), log_expit(-eta - kappa), np.log(p_t)])
    score = np.empty((len(eta), 3, 2))
    score[:, :, 0] = np.column_stack([1 - p_a, -(1 - p_b), (var_b - var_a) / p_t])
    score[:, :, 1] = kappa * np.column_stack([-(1 - p_a), -(1 - p_b), (var_a + var_b) / p_t])
    proba = np.column_stack([p_a, p_b, p_t])
    information = np.einsum("rk,rkq,rks->rqs", proba, score, score)
    return OutcomeTerms(log_proba, score, information)
