"""How a battle's three outcomes depend on the strength difference: the tie models.

Each model gives, per design row with linear predictor ``eta`` (A's log-strength minus
B's, plus style terms) and tie parameter ``tau``, the log-probabilities of the outcomes
(A wins, B wins, tie), their derivatives in ``(eta, tau)`` and the information of one
battle. Fitting, sandwich intervals and prediction-powered ratings only use these terms,
so they work the same for every model.

* ``half``: the arena convention, a tie is half a win for each side (Bradley–Terry on
  the score ``p(A) + p(tie) / 2``); no tie parameter.
* ``davidson`` (Davidson 1970): ``p(tie) = nu * sqrt(pi_a pi_b) / (pi_a + pi_b + nu
  sqrt(pi_a pi_b))``; ``nu`` is reported; ``nu = 2 t / (1 - t)`` for a tie rate ``t``
  between equal models.
* ``rao-kupper`` (Rao & Kupper 1967): ``p(A) = pi_a / (pi_a + theta pi_b)``, ``theta >= 1``
  is reported; ``theta = (1 + t) / (1 - t)`` for a tie rate ``t`` between equal models.

In both tie models ``p(A wins) / p(B wins) = pi_a / pi_b``, so ratings keep the
Bradley–Terry Elo scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit

TIE_MODELS = ("half", "davidson", "rao-kupper")
_TINY = 1e-300


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
    """One of ``TIE_MODELS``; ``n_extra`` is the number of tie parameters (0 or 1)."""

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
    # An exponential family in (eta, tau) with statistics ((yA - yB) / 2, yT): the
    # information is their covariance, whatever the outcome.
    log_norm = np.logaddexp(np.logaddexp(eta / 2, -eta / 2), tau)
    log_proba = np.column_stack([eta / 2 - log_norm, -eta / 2 - log_norm, tau - log_norm])
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
