"""Calibration of (n, 3) probabilities: temperature, a tie model, a class-prior shift.

Everything here is fitted on out-of-sample predictions of a model trained the way the
shipped one is (see :func:`fit_calibration`), after the model, so it serves every
backend. Two ways to reach a target share of ties (``--tie-rate``):

- ``prior_shift``: Bayes' rule moves the model's own tie column to the target balance.
  Sound when the model learnt ties, i.e. its training data held enough of them.
- ``davidson``: Davidson's (1970) tie model (:mod:`arenajudge.ties`): ties grow as the
  two responses draw level, one parameter nu sets how many there are. Used when the
  training data holds too few ties for the tie column to be more than noise (human
  preference sets: about 1%), which a 25-fold prior shift blows up.

When the training rows name their sources, each large source also gets a temperature
and a tie rate of its own, applied to rows of that source (see :class:`Calibration`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from arenajudge import safe_json
from arenajudge.data.schema import LABELS, swap_proba
from arenajudge.errors import ConfigError, ModelLoadError
from arenajudge.metrics import expected_calibration_error, log_loss, prior_log_loss
from arenajudge.ties import (
    CALIBRATION_TIE_MODELS,
    davidson,
    decisive_margin,
    fit_davidson,
    prior_shift,
    solve_davidson,
)

PROBA_FLOOR = 1e-4
"""No output probability is ever below this: one confident mistake costs at most ~9.2."""
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
"""The range every fitted temperature (a model's, a blend's) is searched and loaded in."""
CALIBRATION_FOLDS = 5
"""Cross-fitting folds: the calibration is fitted on the out-of-fold predictions of
this many models, each trained the way the shipped one is on the other folds."""
MIN_TIES = 200
"""Tie votes the training data needs before the model's own tie column is trusted
(and then only when it beats the Davidson tie model out of sample)."""
MARGIN_QUANTILES = 101
MIN_SOURCE_ROWS = 300
"""Out-of-sample rows a source needs before it gets a temperature and a tie rate of its
own."""


def apply_floor(proba: np.ndarray, floor: float = PROBA_FLOOR) -> np.ndarray:
    """Mix with the uniform distribution so every entry is >= ``floor``; rows sum to 1."""
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return floor + (1 - proba.shape[1] * floor) * proba


def smoothed_prior(
    target: np.ndarray, sample_weight: np.ndarray | None = None
) -> tuple[float, float, float]:
    """Class balance, shape (3,), of the battles ``target`` (n, 3) in both A/B orders,
    add-one smoothed (no class has prior 0): the ``train_prior`` of every calibration.

    Each battle counts twice, once per order, with its ``sample_weight`` (default 1):
    (counts + 1) / (2 * total weight + 3). Swap-symmetric, so its two decisive classes
    are equal."""
    weight = np.ones(len(target)) if sample_weight is None else np.asarray(sample_weight)
    counts = (
        np.vstack([target, swap_proba(target)]) * np.concatenate([weight, weight])[:, None]
    ).sum(axis=0)
    prior = (counts + 1) / (counts.sum() + len(LABELS))
    return (float(prior[0]), float(prior[1]), float(prior[2]))


def _tempered(log_proba: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """softmax(log_proba / temperature): one temperature, or one per row (n, 1)."""
    scaled = log_proba / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    proba = np.exp(scaled)
    return proba / proba.sum(axis=1, keepdims=True)


def _log(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(proba, 1e-12, 1))


def fit_temperature(y: np.ndarray, proba: np.ndarray) -> float:
    """The temperature T minimising the log loss of softmax(log(proba) / T) on ``y``."""
    # scipy.optimize is imported where it is used: it adds ~0.2 s to every start-up
    from scipy.optimize import minimize_scalar

    log_proba = _log(proba)
    result = minimize_scalar(
        lambda t: log_loss(y, _tempered(log_proba, t)),
        bounds=(MIN_TEMPERATURE, MAX_TEMPERATURE),
        method="bounded",
    )
    return float(result.x)


def check_tie_rate(tie_rate: float | None) -> None:
    if tie_rate is not None and not 0 < tie_rate < 1:
        raise ConfigError(f"--tie-rate must be strictly between 0 and 1, got {tie_rate}")


# ----------------------------------------------------------------- the calibration
def as_prior(values: Any) -> tuple[float, float, float]:
    """A saved ``train_prior`` as three floats; ValueError unless there are three."""
    first, second, third = (float(v) for v in values)
    return first, second, third


def _by_source(
    values: tuple[tuple[str, float], ...], n: int, source: np.ndarray | None, default: float
) -> np.ndarray:
    """The value of each of ``n`` rows, shape (n,), from its ``source``; ``default``
    for rows of other sources or none."""
    by_source = dict(values)
    if source is None or not by_source:
        return np.full(n, default, dtype=float)
    return np.array([by_source.get(name, default) for name in source], dtype=float)


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration.

    Attributes
    ----------
    temperature : float
        Divides the log-probabilities; > 1 softens overconfident predictions.
    train_prior : tuple of 3 floats
        Class balance of the (swap-augmented) training data, for the prior shift:
        :func:`smoothed_prior` of the training battles.
    tie_model : str
        How ``tie_rate`` is reached: ``"prior_shift"`` or ``"davidson"`` (see the module).
    margins : tuple of floats
        Quantiles of the :func:`decisive_margin` of the calibrated out-of-sample
        predictions; the Davidson nu for a tie rate makes their mean tie probability
        that rate, so a row's prediction never depends on the rows beside it.
    source_temperatures : tuple of (str, float)
        A temperature of its own for each source of the training data with at least
        ``MIN_SOURCE_ROWS`` out-of-sample rows: a model can be sharp on one source and
        overconfident on another. Rows of other sources, or without one, take
        ``temperature``.
    source_tie_rates : tuple of (str, float)
        For each of those sources, the tie rate whose prior shift fits its out-of-sample
        rows best. Without ``tie_rate``, a row of such a source is moved to its source's
        rate: pooled sets differ most in how often their voters may call a tie (PandaLM
        11%, HH-RLHF none).
    """

    temperature: float = 1.0
    train_prior: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    tie_model: str = "prior_shift"
    margins: tuple[float, ...] = ()
    source_temperatures: tuple[tuple[str, float], ...] = ()
    source_tie_rates: tuple[tuple[str, float], ...] = ()

    def temperatures(self, n: int, source: np.ndarray | None = None) -> np.ndarray:
        """The temperature of each of ``n`` rows, shape (n, 1), from their ``source``."""
        return _by_source(self.source_temperatures, n, source, self.temperature)[:, None]

    def tie_rates(self, n: int, source: np.ndarray | None = None) -> np.ndarray:
        """The source tie rate of each of ``n`` rows, shape (n,); NaN for rows of other
        sources or none."""
        return _by_source(self.source_tie_rates, n, source, np.nan)

    def transform(
        self, proba: np.ndarray, tie_rate: float | None = None, source: np.ndarray | None = None
    ) -> np.ndarray:
        """Calibrated probabilities, shape (n, 3), every entry >= ``PROBA_FLOOR``;
        ``source`` (n,) names each row's source, for the source temperatures and tie rates.

        With ``tie_rate`` r, ``davidson`` takes the tie column from Davidson's model, nu
        solved for r; ``prior_shift`` moves the prediction to a class balance of
        ((1 - r) / 2, (1 - r) / 2, r) by Bayes' rule on the tie column. Without it the
        model's own (tempered) tie column is kept, except on rows of a source with a tie
        rate of its own: Bayes' rule moves them to it (whatever ``tie_model``: the rate
        was fitted on that source's rows, and the tie column holds what the model
        learnt of when that source's voters call a tie).
        """
        check_tie_rate(tie_rate)
        proba = _tempered(_log(proba), self.temperatures(len(proba), source))
        if tie_rate is not None and self.tie_model == "davidson":
            return apply_floor(davidson(proba, solve_davidson(np.asarray(self.margins), tie_rate)))
        if tie_rate is not None:
            return apply_floor(prior_shift(proba, tie_rate, self.train_prior))
        rates = self.tie_rates(len(proba), source)
        known = ~np.isnan(rates)
        proba[known] = prior_shift(proba[known], rates[known], self.train_prior)
        return apply_floor(proba)

    def save(self, path: Path) -> None:
        raw = asdict(self)
        raw["source_temperatures"] = dict(self.source_temperatures)
        raw["source_tie_rates"] = dict(self.source_tie_rates)
        path.write_text(json.dumps(raw, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Calibration:
        """Read calibration.json, refusing missing, malformed or non-finite values."""
        try:
            raw = safe_json.loads(path.read_text(encoding="utf-8"))
            calibration = cls(
                temperature=float(raw["temperature"]),
                train_prior=as_prior(raw["train_prior"]),
                tie_model=str(raw.get("tie_model", "prior_shift")),
                margins=tuple(float(v) for v in raw.get("margins", ())),
                source_temperatures=tuple(
                    (str(name), float(value))
                    for name, value in raw.get("source_temperatures", {}).items()
                ),
                source_tie_rates=tuple(
                    (str(name), float(value))
                    for name, value in raw.get("source_tie_rates", {}).items()
                ),
            )
        except FileNotFoundError:
            raise ModelLoadError(
                "is missing; the model directory is incomplete", file=path
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelLoadError(f"is corrupt ({exc}); retrain the model", file=path) from None
        source_temperatures = [value for _, value in calibration.source_temperatures]
        source_tie_rates = [value for _, value in calibration.source_tie_rates]
        numbers = (
            calibration.temperature,
            *calibration.train_prior,
            *calibration.margins,
            *source_temperatures,
            *source_tie_rates,
        )
        if not all(math.isfinite(v) for v in numbers):
            raise ModelLoadError(
                "is corrupt (a value is NaN or infinite); retrain the model", file=path
            )
        if not (
            all(
                MIN_TEMPERATURE <= t <= MAX_TEMPERATURE
                for t in (calibration.temperature, *source_temperatures)
            )
            and min(calibration.train_prior) > 0
            and calibration.tie_model in CALIBRATION_TIE_MODELS
            and (calibration.tie_model != "davidson" or calibration.margins)
            and all(0 < m <= 0.5 for m in calibration.margins)
            and all(0 < r < 1 for r in source_tie_rates)
        ):
            raise ModelLoadError("holds out-of-range values; retrain the model", file=path)
        return calibration


def _choose_tie_model(
    target: np.ndarray, tempered: np.ndarray, nu: float
) -> tuple[str, dict[str, Any]]:
    """``prior_shift`` when the training data has >= MIN_TIES ties and the model's tie
    column beats Davidson's model (``nu`` fitted on the same predictions); else
    ``davidson``. Returns the choice and the evidence for it."""
    ties = float(target[:, 2].sum())
    evidence: dict[str, Any] = {"ties": round(ties, 3), "min_ties": MIN_TIES}
    if ties < MIN_TIES:
        evidence["reason"] = f"{ties:.0f} tie votes < {MIN_TIES}: the tie column is noise"
        return "davidson", evidence
    own, modelled = log_loss(target, tempered), log_loss(target, davidson(tempered, nu))
    evidence.update(log_loss_tie_column=own, log_loss_davidson=modelled)
    if own <= modelled:
        evidence["reason"] = "enough ties, and the learnt tie column beats Davidson's model"
        return "prior_shift", evidence
    evidence["reason"] = "enough ties, but Davidson's model beats the learnt tie column"
    return "davidson", evidence


def _large_sources(source: np.ndarray | None) -> list[str]:
    if source is None:
        return []
    names, counts = np.unique(source, return_counts=True)
    return [str(name) for name, count in zip(names, counts) if count >= MIN_SOURCE_ROWS]


def _source_temperatures(
    target: np.ndarray, oof: np.ndarray, source: np.ndarray | None
) -> tuple[tuple[str, float], ...]:
    return tuple(
        (name, round(fit_temperature(target[source == name], oof[source == name]), 6))
        for name in _large_sources(source)
    )


def _fit_tie_rate(
    target: np.ndarray, tempered: np.ndarray, train_prior: tuple[float, float, float]
) -> float:
    """The tie rate whose :func:`prior_shift` gives the tempered predictions of one
    source their least log loss; never below half a tie in its rows, so a source
    without ties does not claim that they cannot happen."""
    from scipy.optimize import minimize_scalar

    low = math.log(0.5 / (len(target) + 1))
    result = minimize_scalar(
        lambda log_rate: log_loss(
            target, apply_floor(prior_shift(tempered, math.exp(log_rate), train_prior))
        ),
        bounds=(low, math.log(0.5)),
        method="bounded",
    )
    return float(f"{math.exp(result.x):.6g}")


def _source_tie_rates(
    target: np.ndarray,
    tempered: np.ndarray,
    source: np.ndarray | None,
    train_prior: tuple[float, float, float],
) -> tuple[tuple[str, float], ...]:
    return tuple(
        (name, _fit_tie_rate(target[source == name], tempered[source == name], train_prior))
        for name in _large_sources(source)
    )


def _fit(
    target: np.ndarray,
    oof: np.ndarray,
    train_prior: tuple[float, float, float],
    source: np.ndarray | None = None,
) -> tuple[Calibration, dict[str, Any]]:
    tempering = Calibration(
        temperature=fit_temperature(target, oof),
        train_prior=train_prior,
        source_temperatures=_source_temperatures(target, oof, source),
    )
    tempered = _tempered(_log(oof), tempering.temperatures(len(oof), source))
    nu = fit_davidson(target, tempered)
    tie_model, evidence = _choose_tie_model(target, tempered, nu)
    margins = np.quantile(
        np.clip(decisive_margin(tempered), 1e-6, 0.5), np.linspace(0, 1, MARGIN_QUANTILES)
    )
    evidence["davidson_nu"] = nu
    return replace(
        tempering,
        tie_model=tie_model,
        margins=tuple(round(float(m), 6) for m in margins),
        source_tie_rates=_source_tie_rates(target, tempered, source, tempering.train_prior),
    ), evidence


def fit_calibration(
    target: np.ndarray,
    oof: np.ndarray,
    fold: np.ndarray,
    train_prior: tuple[float, float, float],
    source: np.ndarray | None = None,
) -> tuple[Calibration, dict[str, Any]]:
    """Fit the calibration on out-of-sample predictions ``oof`` (n, 3) of labels
    ``target`` (n, 3), with the rows' ``source`` (n,) if known, and score it honestly.

    ``fold`` (n,) numbers the rows' folds: the reported log loss and ECE are those of
    each fold calibrated by a calibration fitted on the other folds alone, so the
    figure is out of sample for the calibration too. Returns the calibration (fitted
    on all rows) and its report: rows, folds, log_loss, prior_log_loss, ece,
    temperature, tie_model and the evidence for it (with Davidson's nu fitted).
    """
    calibration, evidence = _fit(target, oof, train_prior, source)

    def rows(mask: np.ndarray) -> np.ndarray | None:
        return None if source is None else source[mask]

    calibrated = np.empty_like(oof)
    for k in np.unique(fold):
        held = fold == k
        others = (
            _fit(target[~held], oof[~held], train_prior, rows(~held))[0]
            if (~held).any()
            else calibration
        )
        calibrated[held] = others.transform(oof[held], source=rows(held))
    report = {
        "rows": len(target),
        "folds": len(np.unique(fold)),
        "log_loss": log_loss(target, calibrated),
        "prior_log_loss": prior_log_loss(target),
        "ece": expected_calibration_error(target, calibrated),
        "temperature": calibration.temperature,
        "source_temperatures": dict(calibration.source_temperatures),
        "source_tie_rates": dict(calibration.source_tie_rates),
        "tie_model": calibration.tie_model,
        "tie_model_evidence": evidence,
    }
    return calibration, report
