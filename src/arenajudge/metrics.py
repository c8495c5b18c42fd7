"""Scores of (n, 3) probability predictions against hard or soft labels."""

from __future__ import annotations

import numpy as np

from arenajudge.data.schema import LABELS

ECE_BINS = 15


def _as_target(y: np.ndarray) -> np.ndarray:
    """Hard labels (n,) or label probabilities (n, 3) -> probabilities (n, 3)."""
    y = np.asarray(y)
    if y.ndim == 1:
        return np.eye(len(LABELS))[y.astype(int)]
    return y.astype(float)


def log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean 3-class log loss, as ``sklearn.metrics.log_loss`` and Kaggle score it.

    Probabilities are clipped to [eps, 1 - eps] with eps the float64 machine epsilon
    (sklearn's ``eps="auto"``) and rows renormalised. ``y`` may be hard labels (n,)
    or soft labels (n, 3).
    """
    target = _as_target(y)
    eps = np.finfo(np.float64).eps
    p = np.clip(np.asarray(proba, dtype=np.float64), eps, 1 - eps)
    p /= p.sum(axis=1, keepdims=True)
    return float(-(target * np.log(p)).sum(axis=1).mean())


def accuracy(y: np.ndarray, proba: np.ndarray) -> float:
    """Share of rows whose most probable class is the (arg-max) label."""
    return float((np.asarray(proba).argmax(axis=1) == _as_target(y).argmax(axis=1)).mean())


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy - confidence| averaged over equal-width confidence bins."""
    proba = np.asarray(proba)
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == _as_target(y).argmax(axis=1)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    gap = 0.0
    for b in np.unique(bins):
        members = bins == b
        gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap)


def class_prior(y: np.ndarray) -> np.ndarray:
    """Class frequencies of ``y``, shape (3,)."""
    return _as_target(y).mean(axis=0)


def prior_log_loss(y: np.ndarray) -> float:
    """Log loss of predicting the class prior of the same rows for every row."""
    target = _as_target(y)
    return log_loss(target, np.tile(class_prior(target), (len(target), 1)))


def scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """All metrics of one prediction: log loss, its prior baseline, accuracy, ECE, rows."""
    return {
        "rows": len(proba),
        "log_loss": log_loss(y, proba),
        "prior_log_loss": prior_log_loss(y),
        "accuracy": accuracy(y, proba),
        "ece": expected_calibration_error(y, proba),
    }
