"""Cross-validation and evaluation of preference models, overall and per source.

Every score stands beside two baselines fitted on the same rows: the class prior
(``prior_log_loss``) and a length-only model (``length_log_loss``, fitted on the same
folds), so a user sees prior -> length -> model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import log_softmax
from tqdm.auto import tqdm

from arenajudge.data.folds import folds, group_folds, prompt_keys
from arenajudge.data.schema import LABELS, Battles
from arenajudge.hashing import battle_keys, decode_keys
from arenajudge.leaderboard import response_lengths
from arenajudge.metrics import log_loss, scores
from arenajudge.models.contract import CompositeModel, PreferenceModel, check_labelled


@dataclass
class CVResult:
    """Out-of-fold predictions and their scores."""

    oof: np.ndarray
    fold: np.ndarray
    folds: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, float] = field(default_factory=dict)
    by_source: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "folds": self.folds, "by_source": self.by_source}


def relative_length_difference(battles: Battles) -> np.ndarray:
    """(len A - len B) / (len A + len B) in characters, shape (n,), in [-1, 1]; 0 for
    two empty responses."""
    len_a, len_b = response_lengths(battles)
    return (len_a - len_b) / np.maximum(len_a + len_b, 1)


def _length_logits(params: np.ndarray, diff: np.ndarray) -> np.ndarray:
    # (w d, -w d, b + c |d|): swapping A and B (d -> -d) swaps the two outputs
    w, b, c = params
    return np.column_stack([w * diff, -w * diff, b + c * np.abs(diff)])


def fit_length_baseline(diff: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Parameters (3,) of the length-only baseline: a symmetric multinomial logistic
    model of labels ``target`` (n, 3) on ``diff`` (n,), the
    :func:`relative_length_difference`, by maximum likelihood."""
    features = np.column_stack([diff, np.ones_like(diff), np.abs(diff)])

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        log_proba = log_softmax(_length_logits(params, diff), axis=1)
        residual = (np.exp(log_proba) - target) / len(diff)  # d loss / d logits
        gradient = np.array(
            [residual[:, 0] @ diff - residual[:, 1] @ diff, *(residual[:, 2] @ features[:, 1:])]
        )
        return float(-(target * log_proba).sum(axis=1).mean()), gradient

    from scipy.optimize import minimize

    return minimize(loss_and_gradient, np.zeros(3), jac=True, method="L-BFGS-B").x


def length_baseline_proba(params: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """Probabilities (n, 3) of the length-only baseline with ``params`` at ``diff``."""
    return np.exp(log_softmax(_length_logits(params, diff), axis=1))


def length_baseline_oof(
    battles: Battles, fold_of: np.ndarray, diff: np.ndarray | None = None
) -> np.ndarray:
    """Out-of-fold probabilities (n, 3) of the length-only baseline on ``fold_of``; with
    a single fold, the in-sample fit. ``diff`` passes the battles'
    :func:`relative_length_difference` when their texts are gone (streamed)."""
    diff = relative_length_difference(battles) if diff is None else diff
    target = check_labelled(battles)
    if len(np.unique(fold_of)) < 2:
        return length_baseline_proba(fit_length_baseline(diff, target), diff)
    oof = np.zeros((len(battles), len(LABELS)))
    for fold in np.unique(fold_of):
        held = fold_of == fold
        oof[held] = length_baseline_proba(
            fit_length_baseline(diff[~held], target[~held]), diff[held]
        )
    return oof


def _scores(target: np.ndarray, proba: np.ndarray, length: np.ndarray) -> dict[str, float]:
    return {**scores(target, proba), "length_log_loss": log_loss(target, length)}


def scores_by_source(
    battles: Battles, proba: np.ndarray, length: np.ndarray
) -> dict[str, dict[str, float]]:
    """Scores of each source's rows (empty when the battles have no source)."""
    if battles.source is None:
        return {}
    target = check_labelled(battles)
    return {
        str(name): _scores(
            target[battles.source == name],
            proba[battles.source == name],
            length[battles.source == name],
        )
        for name in np.unique(battles.source)
    }


TIE_SHARE_NATS = 0.01
"""A labelled file's tie share is "far" from the model's when predicting the model's
share instead of the file's would cost a prior-only predictor more than this (the
binary KL divergence, nats a row: 30% vs 40% ties costs 0.023, 1% vs 5% 0.025, 30% vs
31% 0.0002) ..."""
TIE_SHARE_P_VALUE = 1e-3
"""... and the gap is no sampling accident: a two-sided binomial test of the file's tie
count against the model's share rejects at this level."""


def battle_keys_of(battles: Battles) -> np.ndarray:
    """:func:`arenajudge.hashing.battle_keys` of ``battles``, shape (n,)."""
    return battle_keys(battles.prompt, battles.response_a, battles.response_b)


def trained_sections(model: Any) -> list[Mapping[str, Any]]:
    """The ``training`` sections of ``model`` and of every model it is made of (an
    ensemble's members, a cascade's two stages), recursively: the score of an ensemble
    on its members' training battles is in-sample too."""
    sections = [getattr(model, "training_", None) or {}]
    for part in model.parts if isinstance(model, CompositeModel) else []:
        sections += trained_sections(part)
    return sections


def rows_in_training(
    keys: np.ndarray, training: Mapping[str, Any] | Sequence[Mapping[str, Any]]
) -> int | None:
    """How many battles with ``keys`` (n,) were in a model's training data, by the
    manifest's ``training`` section (or several, :func:`trained_sections`: in any of
    them); None when none records its battles (a model saved before they were
    recorded). A battle counts when its prompt and two responses (either order) were
    trained on: ids are ignored, a renumbered copy is still seen."""
    sections = [training] if isinstance(training, Mapping) else list(training)
    recorded = [section.get("battle_keys") for section in sections]
    try:
        seen = [decode_keys(text) for text in recorded if isinstance(text, str)]
    except ValueError:
        return None
    if not seen:
        return None
    return int(np.isin(keys, np.concatenate(seen)).sum())


def _model_tie_share(training: Mapping[str, Any], tie_rate: float | None) -> float | None:
    """The tie share the model's predictions aim at: ``tie_rate`` when given, else its
    training data's (half a tie added, so a set without ties is not sure of none)."""
    if tie_rate is not None:
        return tie_rate
    counts = training.get("class_counts")
    if not isinstance(counts, Mapping) or not all(
        isinstance(counts.get(label), int) for label in LABELS
    ):
        return None
    return (counts[LABELS[2]] + 0.5) / (sum(counts[label] for label in LABELS) + 1)


def tie_share_gap(
    target: np.ndarray, training: Mapping[str, Any], tie_rate: float | None = None
) -> tuple[float, float] | None:
    """(the labels' tie share, the model's) when they are far apart (``TIE_SHARE_NATS``,
    ``TIE_SHARE_P_VALUE``) for labels ``target`` (n, 3); else None, also when the
    model's share is unknown."""
    from scipy.special import rel_entr
    from scipy.stats import binomtest

    expected = _model_tie_share(training, tie_rate)
    if expected is None or not len(target):
        return None
    ties = float(np.asarray(target, dtype=float)[:, 2].sum())
    share = ties / len(target)
    cost = float(rel_entr(share, expected) + rel_entr(1 - share, 1 - expected))
    if cost <= TIE_SHARE_NATS:
        return None
    if binomtest(round(ties), len(target), expected).pvalue >= TIE_SHARE_P_VALUE:
        return None
    return share, expected


def score_caveats(
    target: np.ndarray,
    keys: np.ndarray,
    training: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    tie_rate: float | None = None,
    where: str | Path = "DATA",
) -> list[str]:
    """What a reader of a model's score on labelled battles must know, one sentence each:
    that some battles (``keys`` (n,), :func:`battle_keys_of`) were in its training data
    (the manifest's ``training``, or :func:`trained_sections`), so the score is
    in-sample; that the labels' (``target`` (n, 3)) tie share is far from the one the
    model predicts (with ``tie_rate``, that rate). Empty when neither holds."""
    caveats = []
    seen = rows_in_training(keys, training)
    training = training if isinstance(training, Mapping) else training[0]
    if seen:
        caveats.append(
            f"{where}: {seen:,} of {len(keys):,} rows were in the model's "
            "training data: this score is in-sample, not an estimate of how it "
            "does on new battles; score it on battles it was not trained on"
        )
    gap = tie_share_gap(target, training, tie_rate)
    if gap is not None:
        share, expected = gap
        aimed = (
            f"--tie-rate {tie_rate:.3g}" if tie_rate is not None else "its training data's share"
        )
        caveats.append(
            f"{where}: {share:.1%} of its votes are ties, the model predicts "
            f"{expected:.1%} ({aimed}): the score mixes the model's skill with "
            f"that gap; if new battles will be like these, pass --tie-rate "
            f"{share:.3g}"
        )
    return caveats


def training_caveats(validation: Mapping[str, Any], teacher: bool = False) -> list[str]:
    """What a reader of ``train``'s out-of-sample score (a model's ``validation_``: its
    ``log_loss`` and the class prior's ``prior_log_loss`` on the same labels) must know:
    that it is worse than the class prior's, and, for a student of a ``teacher``, that it
    is not nested."""
    caveats = []
    score, prior = validation.get("log_loss"), validation.get("prior_log_loss")
    if score is not None and prior is not None and score > prior:
        caveats.append(
            f"the out-of-sample log loss {score:.4f} is worse than the class "
            f"prior's {prior:.4f} on the same labels: the model does worse than "
            "always predicting the class balance; check the labels and the "
            "--columns mapping, or train on more battles"
        )
    if teacher and score is not None:
        caveats.append(
            "--teacher: the out-of-sample score is not nested: the teacher's "
            "probabilities the student learnt from were made by models that saw "
            "the held-out rows' labels, so it flatters the student; score it "
            "with `arenajudge evaluate` on battles neither model saw"
        )
    return caveats


def evaluate_predictions(
    battles: Battles,
    proba: np.ndarray,
    *,
    n_folds: int = 5,
    seed: int = 0,
    length_diff: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[dict[str, float], dict[str, dict]]:
    """Overall and per-source scores of ``proba`` (n, 3) on labelled ``battles``, with the
    length-only baseline fitted by prompt-grouped ``n_folds``-fold CV on the same rows
    (fewer folds when there are fewer prompts; none for a single prompt).

    Battles streamed without their texts pass what the baseline needs instead: each
    row's ``length_diff`` (:func:`relative_length_difference`) and prompt ``groups``
    (:func:`~arenajudge.data.folds.prompt_keys`).
    """
    # whole prompts dealt to folds at random: StratifiedGroupKFold is slow on 50k prompts
    fold_of = group_folds(prompt_keys(battles) if groups is None else groups, n_folds, seed)
    length = length_baseline_oof(battles, fold_of, length_diff)
    target = check_labelled(battles)
    return (_scores(target, proba, length), scores_by_source(battles, proba, length))


def cross_validate(
    make_model: Callable[[], PreferenceModel],
    battles: Battles,
    *,
    n_folds: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> CVResult:
    """Prompt-grouped K-fold CV: fit a fresh model per fold, predict its held-out rows.

    Returns out-of-fold probabilities, shape (n, 3), with per-fold, overall and
    per-source log loss, accuracy, ECE, the class-prior log loss of the same rows and
    the log loss of the length-only baseline fitted on the same folds.
    """
    target = check_labelled(battles)
    fold_of = folds(battles, n_folds=n_folds, seed=seed)
    oof = np.zeros((len(battles), len(LABELS)))
    length = length_baseline_oof(battles, fold_of)
    result = CVResult(oof=oof, fold=fold_of)
    for fold in tqdm(range(n_folds), desc="cv folds", disable=not progress, unit="fold"):
        held = fold_of == fold
        model = make_model().fit(battles.take(~held))
        oof[held] = model.predict_proba(battles.take(held).without_labels())
        result.folds.append({"fold": fold, **_scores(target[held], oof[held], length[held])})
    result.overall = _scores(target, oof, length)
    result.by_source = scores_by_source(battles, oof, length)
    return result


def oof_frame(battles: Battles, result: CVResult) -> pd.DataFrame:
    """OOF.csv rows: ``id, fold, winner_model_a, winner_model_b, winner_tie``."""
    frame = pd.DataFrame(result.oof, columns=list(LABELS))
    frame.insert(0, "fold", result.fold)
    frame.insert(0, "id", battles.id)
    return frame
