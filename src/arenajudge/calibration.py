"""Calibration of (n, 3) probabilities: temperature scaling, class-prior shift, a floor.

Temperature is fitted on held-out predictions; the prior shift moves predictions
made under the training class balance to a target tie rate (Kaggle's arena data has
about 31% ties, most public human sets about 1%).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from arenajudge import safe_json
from arenajudge.errors import ConfigError, ModelLoadError
from arenajudge.metrics import log_loss

PROBA_FLOOR = 1e-4
"""No output probability is ever below this: one confident mistake costs at most ~9.2."""
_MIN_T, _MAX_T = 0.05, 20.0


def apply_floor(proba: np.ndarray, floor: float = PROBA_FLOOR) -> np.ndarray:
    """Mix with the uniform distribution so every entry is >= ``floor``; rows sum to 1."""
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return floor + (1 - proba.shape[1] * floor) * proba


def _tempered(log_proba: np.ndarray, temperature: float) -> np.ndarray:
    scaled = log_proba / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    proba = np.exp(scaled)
    return proba / proba.sum(axis=1, keepdims=True)


def fit_temperature(y: np.ndarray, proba: np.ndarray) -> float:
    """The temperature T minimising the log loss of softmax(log(proba) / T) on ``y``."""
    log_proba = np.log(np.clip(proba, 1e-12, 1))
    result = minimize_scalar(lambda t: log_loss(y, _tempered(log_proba, t)),
                             bounds=(_MIN_T, _MAX_T), method="bounded")
    return float(result.x)


def check_tie_rate(tie_rate: float | None) -> None:
    if tie_rate is not None and not 0 < tie_rate < 1:
        raise ConfigError(f"--tie-rate must be strictly between 0 and 1, got {tie_rate}")


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration.

    Attributes
    ----------
    temperature : float
        Divides the log-probabilities; > 1 softens overconfident predictions.
    train_prior : tuple of 3 floats
        Class balance of the (swap-augmented) training data, for the prior shift.
    """

    temperature: float = 1.0
    train_prior: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)

    def transform(self, proba: np.ndarray, tie_rate: float | None = None) -> np.ndarray:
        """Calibrated probabilities, shape (n, 3).

        ``tie_rate`` moves the prediction to a target class balance of
        ((1 - r) / 2, (1 - r) / 2, r) by Bayes' rule (a class-prior shift).
        """
        check_tie_rate(tie_rate)
        proba = _tempered(np.log(np.clip(proba, 1e-12, 1)), self.temperature)
        if tie_rate is not None:
            target = np.array([(1 - tie_rate) / 2, (1 - tie_rate) / 2, tie_rate])
            proba = proba * (target / np.asarray(self.train_prior))
        return apply_floor(proba)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        try:
            raw = safe_json.loads(path.read_text(encoding="utf-8"))
            calibration = cls(temperature=float(raw["temperature"]),
                              train_prior=tuple(float(v) for v in raw["train_prior"]))
        except FileNotFoundError:
            raise ModelLoadError("is missing; the model directory is incomplete",
                                 file=path) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"is corrupt ({exc}); retrain the model", file=path) from None
        if not (_MIN_T <= calibration.temperature <= _MAX_T and len(calibration.train_prior) == 3
                and min(calibration.train_prior) > 0):
            raise ModelLoadError("holds out-of-range values; retrain the model", file=path)
        return calibration
