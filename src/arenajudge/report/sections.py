"""The numbers behind each section of the report, computed from battles and predictions.

Every section function returns a :class:`Section`: its JSON-ready numbers, the function
that draws them, and optionally a small table shown under the plot.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arenajudge import metrics
from arenajudge.data.schema import LABELS, Battles, join_turns, swap_proba
from arenajudge.errors import ConfigError, DataError
from arenajudge.evaluate import relative_length_difference
from arenajudge.leaderboard import response_lengths
from arenajudge.report import plots

SHORT_LABELS = ("A wins", "B wins", "tie")
LENGTH_BINS = 10
RELIABILITY_BINS = 10
LENGTH_BUCKETS = (0, 500, 1_000, 2_000, 4_000, 8_000)
"""Lower edges, in characters of both responses together, of the log-loss length buckets."""
TURN_BUCKETS = (1, 2, 3, 4, 6)
"""Lower edges of the turn-count buckets."""
WORST_ERRORS = 20
TEXT_LIMIT = 600
"""Characters of each text shown for a worst error."""


@dataclass(frozen=True)
class Evidence:
    """Everything a report is computed from.

    Attributes
    ----------
    battles : Battles
        Labelled battles.
    proba : ndarray of shape (n, 3), or None
        Predictions for ``battles`` (from a model or an OOF file).
    swapped_proba : ndarray of shape (n, 3), or None
        The model's predictions for ``battles.swap()``, in the swapped battles' order
        of columns (column 0 is p(original B wins)).
    """

    battles: Battles
    proba: np.ndarray | None = None
    swapped_proba: np.ndarray | None = None

    @property
    def target(self) -> np.ndarray:
        """``battles.target``, shape (n, 3): a report is of labelled battles."""
        if self.battles.target is None:
            raise DataError(
                "has no labels; a report needs labelled battles", file=self.battles.path
            )
        return self.battles.target

    @property
    def predictions(self) -> np.ndarray:
        """``proba``, shape (n, 3), for the sections drawn only when there are some."""
        if self.proba is None:
            raise ConfigError("this report section needs predictions: pass --model or --oof")
        return self.proba


@dataclass
class Section:
    """One part of the report: numbers, a plot of them and an optional table.

    ``draw(figure, numbers)`` fills a matplotlib figure; ``table`` rows (already
    formatted values, keyed by column header) are escaped when rendered.
    """

    key: str
    title: str
    numbers: dict[str, Any]
    draw: Callable[[Any, dict[str, Any]], None] | None = None
    note: str = ""
    table: list[dict[str, str]] = field(default_factory=list)

    @property
    def has_plot(self) -> bool:
        return self.draw is not None and bool(self.numbers)

    @property
    def image(self) -> str:
        """File name of the plot, relative to the report directory."""
        return f"{self.key}.png"


def _a_score(target: np.ndarray) -> np.ndarray:
    """A's score per row: wins count 1, ties 1/2."""
    return target[:, 0] + target[:, 2] / 2


def row_log_loss(target: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Log loss of each row, shape (n,), clipped like :func:`arenajudge.metrics.log_loss`."""
    eps = np.finfo(np.float64).eps
    p = np.clip(proba, eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    return -(target * np.log(p)).sum(axis=1)


# --------------------------------------------------------------------------- data only
def class_balance(evidence: Evidence) -> Section:
    target = evidence.target
    numbers: dict[str, Any] = {
        "labels": list(LABELS),
        "counts": np.bincount(evidence.battles.label, minlength=3).tolist(),
        "shares": target.mean(axis=0).tolist(),
    }
    if evidence.proba is not None:
        numbers["predicted_shares"] = evidence.proba.mean(axis=0).tolist()
    table = [
        {"class": short, "battles": f"{count:,}", "share": f"{share:.1%}"}
        for short, count, share in zip(SHORT_LABELS, numbers["counts"], numbers["shares"])
    ]
    return Section("class_balance", "Class balance", numbers, plots.class_balance, table=table)


def battles_per_model(evidence: Evidence) -> Section:
    battles = evidence.battles
    names = (
        np.r_[battles.model_a, battles.model_b].astype(str)
        if battles.has_models
        else np.array([], dtype=str)
    )
    names = names[np.char.strip(names) != ""]
    if not len(names):
        return Section(
            "battles_per_model", "Battles per model", {}, note="The file has no model names."
        )
    models, counts = np.unique(names, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    numbers = {"models": models[order].tolist(), "battles": counts[order].tolist()}
    return Section(
        "battles_per_model",
        "Battles per model",
        numbers,
        plots.battles_per_model,
        note=f"{len(models)} models; each battle counts for both of its models.",
    )


def win_rate_by_length(evidence: Evidence) -> Section:
    diff = relative_length_difference(evidence.battles)
    # Quantile bins: most battles have similar lengths, fixed-width bins would leave
    # a few crowded bins in the middle and empty ones at the ends.
    edges = np.unique(np.quantile(diff, np.linspace(0, 1, LENGTH_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, diff, side="right") - 1, 0, max(len(edges) - 2, 0))
    present = np.unique(bins)
    score = _a_score(evidence.target)
    numbers: dict[str, Any] = {
        "x": "relative length difference (len A - len B) / (len A + len B)",
        "bin_median": [float(np.median(diff[bins == k])) for k in present],
        "rows": [int((bins == k).sum()) for k in present],
        "a_win_rate": [float(score[bins == k].mean()) for k in present],
    }
    if evidence.proba is not None:
        predicted = _a_score(evidence.proba)
        numbers["predicted_a_win_rate"] = [float(predicted[bins == k].mean()) for k in present]
    return Section(
        "win_rate_by_length",
        "Win rate vs response-length difference",
        numbers,
        plots.win_rate_by_length,
        note=f"A's win rate (ties count half) in {LENGTH_BINS} equal-count bins of "
        "the relative length difference; right means A is longer.",
    )


def position_bias(evidence: Evidence) -> Section:
    labels = evidence.battles.label
    a_wins, b_wins = int((labels == 0).sum()), int((labels == 1).sum())
    decisive = a_wins + b_wins
    share = a_wins / decisive if decisive else float("nan")
    half_width = 1.96 * np.sqrt(share * (1 - share) / decisive) if decisive else float("nan")
    numbers: dict[str, Any] = {
        "label_shares": evidence.target.mean(axis=0).tolist(),
        "a_share_of_decisive": share,
        "a_share_ci95": [share - half_width, share + half_width],
        "decisive_battles": decisive,
    }
    table = [
        {
            "measure": "A-win share of decisive votes",
            "value": f"{share:.1%} (95% CI {share - half_width:.1%} to "
            f"{share + half_width:.1%}, {decisive:,} votes)",
        }
    ]
    note = "A-win share 50% means no position bias in the labels."
    if evidence.proba is not None:
        numbers["predicted_shares"] = evidence.proba.mean(axis=0).tolist()
    if evidence.swapped_proba is not None:
        swapped_back = swap_proba(evidence.swapped_proba)
        flips = evidence.predictions.argmax(axis=1) != swapped_back.argmax(axis=1)
        numbers["swapped_back_shares"] = swapped_back.mean(axis=0).tolist()
        numbers["flip_rate"] = float(flips.mean())
        numbers["mean_abs_change"] = float(np.abs(evidence.predictions - swapped_back).mean())
        table.append(
            {
                "measure": "predictor flip rate",
                "value": f"{flips.mean():.2%} of battles change predicted winner when "
                "A and B are swapped",
            }
        )
        table.append(
            {
                "measure": "mean |Δp| after swapping back",
                "value": f"{numbers['mean_abs_change']:.4f}",
            }
        )
    elif evidence.proba is not None:
        note += (
            " The predictor's flip rate under an A/B swap is omitted: it needs the "
            "model (--model), not out-of-fold predictions."
        )
    return Section(
        "position_bias", "Position bias", numbers, plots.position_bias, note=note, table=table
    )


# --------------------------------------------------------------------------- predictions
def reliability(evidence: Evidence) -> Section:
    target, proba = evidence.target, evidence.predictions
    bins = np.minimum((proba * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    curves = {}
    for column, label in enumerate(LABELS):
        present = np.unique(bins[:, column])
        members = [bins[:, column] == k for k in present]
        curves[label] = {
            "mean_predicted": [float(proba[m, column].mean()) for m in members],
            "observed": [float(target[m, column].mean()) for m in members],
            "rows": [int(m.sum()) for m in members],
        }
    ece = metrics.expected_calibration_error(target, proba)
    numbers = {"classes": curves, "ece": ece, "rows": len(proba)}
    return Section(
        "reliability",
        "Reliability diagram",
        numbers,
        plots.reliability,
        note=f"Per class, predicted probability in {RELIABILITY_BINS} equal-width "
        "bins against how often the class happened; marker area shows how "
        f"many battles a bin holds. Top-label ECE {ece:.4f}.",
    )


def confusion(evidence: Evidence) -> Section:
    true, predicted = evidence.battles.label, evidence.predictions.argmax(axis=1)
    matrix = np.zeros((3, 3), dtype=int)
    np.add.at(matrix, (true, predicted), 1)
    return Section(
        "confusion",
        "Confusion matrix",
        {"labels": list(LABELS), "matrix": matrix.tolist()},
        plots.confusion,
        note="Rows: the label; columns: the most probable predicted class.",
    )


def _log_loss_by(
    key: str, title: str, evidence: Evidence, groups: np.ndarray, order: list[str]
) -> Section:
    target, proba = evidence.target, evidence.predictions
    rows: list[dict[str, Any]] = []
    for group in order:
        members = groups == group
        if members.any():
            rows.append({"group": group, **metrics.scores(target[members], proba[members])})
    table = [
        {
            "group": str(r["group"]),
            "rows": f"{r['rows']:,}",
            "log loss": f"{r['log_loss']:.4f}",
            "prior log loss": f"{r['prior_log_loss']:.4f}",
            "accuracy": f"{r['accuracy']:.1%}",
        }
        for r in rows
    ]
    return Section(
        key,
        title,
        {"groups": rows},
        plots.log_loss_by,
        table=table,
        note="Prior log loss: predicting each group's own class balance for "
        "every row; the model should beat it.",
    )


def log_loss_by_source(evidence: Evidence) -> Section:
    source = evidence.battles.source
    if source is None:
        return Section(
            "log_loss_by_source",
            "Log loss by source",
            {},
            note="The file has no source column; pass --sources FILE (id,source).",
        )
    names, counts = np.unique(source.astype(str), return_counts=True)
    return _log_loss_by(
        "log_loss_by_source",
        "Log loss by source",
        evidence,
        source.astype(str),
        names[np.argsort(-counts, kind="stable")].tolist(),
    )


def _bucket_names(edges: tuple[int, ...], unit: str) -> list[str]:
    names = [
        f"{low:,}–{high - 1:,}{unit}" if high - low > 1 else f"{low:,}{unit}"
        for low, high in itertools.pairwise(edges)
    ]
    return names + [f"{edges[-1]:,}+{unit}"]


def _bucketed(
    values: np.ndarray, edges: tuple[int, ...], unit: str
) -> tuple[np.ndarray, list[str]]:
    names = _bucket_names(edges, unit)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 1)
    return np.array(names, dtype=object)[index], names


def log_loss_by_length(evidence: Evidence) -> Section:
    len_a, len_b = response_lengths(evidence.battles)
    groups, order = _bucketed(len_a + len_b, LENGTH_BUCKETS, " chars")
    return _log_loss_by(
        "log_loss_by_length", "Log loss by length (both responses)", evidence, groups, order
    )


def log_loss_by_turns(evidence: Evidence) -> Section:
    turns = np.array([max(len(p), 1) for p in evidence.battles.prompt])
    groups, order = _bucketed(turns, TURN_BUCKETS, "")
    return _log_loss_by(
        "log_loss_by_turns", "Log loss by turn count (prompt turns)", evidence, groups, order
    )


def _clip_text(turns: tuple[str, ...]) -> str:
    text = join_turns(turns)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + f" … [{len(text):,} chars]"


def worst_errors(evidence: Evidence) -> Section:
    battles, proba = evidence.battles, evidence.predictions
    loss = row_log_loss(evidence.target, proba)
    worst = np.argsort(-loss, kind="stable")[:WORST_ERRORS]
    rows = [
        {
            "id": str(battles.id[i]),
            "source": None if battles.source is None else str(battles.source[i]),
            "label": LABELS[battles.label[i]],
            "proba": proba[i].tolist(),
            "log_loss": float(loss[i]),
            "prompt": _clip_text(battles.prompt[i]),
            "response_a": _clip_text(battles.response_a[i]),
            "response_b": _clip_text(battles.response_b[i]),
        }
        for i in worst
    ]
    table = [
        {
            "id": r["id"] + ("" if r["source"] is None else f" ({r['source']})"),
            "label · predicted A/B/tie · loss": f"{SHORT_LABELS[LABELS.index(r['label'])]} · "
            + "/".join(f"{p:.2f}" for p in r["proba"])
            + f" · {r['log_loss']:.2f}",
            "prompt": r["prompt"],
            "response A": r["response_a"],
            "response B": r["response_b"],
        }
        for r in rows
    ]
    return Section(
        "worst_errors",
        f"The {len(rows)} worst errors",
        {"rows": rows},
        table=table,
        note=f"Battles with the highest log loss; texts cut at {TEXT_LIMIT} characters.",
    )


def all_sections(evidence: Evidence) -> list[Section]:
    """The report's sections in page order; prediction sections only with predictions."""
    data_only = [class_balance, battles_per_model, win_rate_by_length, position_bias]
    with_predictions = [
        reliability,
        confusion,
        log_loss_by_source,
        log_loss_by_length,
        log_loss_by_turns,
        worst_errors,
    ]
    chosen = data_only + (with_predictions if evidence.proba is not None else [])
    return [section(evidence) for section in chosen]
