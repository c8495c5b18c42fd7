"""Matplotlib drawings of report sections and leaderboards, saved as PNG.

Figures are built with the object API (``matplotlib.figure.Figure``) and rendered by
the Agg canvas: no pyplot global state and no display needed. Each ``draw`` function
fills a figure from a section's JSON numbers, so the PNG shows exactly what the JSON says.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from arenajudge.errors import MissingDependencyError

DPI = 110
WIDTH = 7.5
MAX_BARS = 40
_SHORT = ("A wins", "B wins", "tie")
_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#8172B3")


def plain_text(text: Any) -> str:
    """``text`` as matplotlib shows it verbatim: a ``$`` would otherwise start mathtext
    (a model called ``$x_$`` made drawing fail). Every text taken from data goes
    through here."""
    return str(text).replace("$", r"\$")


def _new_figure(height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            "matplotlib is not installed; install it with `pip install arenajudge[report]`"
        ) from None
    return Figure(figsize=(WIDTH, height), layout="constrained")


def save_plot(
    draw: Callable[[Any, dict[str, Any]], None],
    numbers: dict[str, Any],
    path: str | Path,
    height: float = 3.8,
) -> None:
    """Draw ``numbers`` with ``draw(figure, numbers)`` and save the PNG at ``path``."""
    figure = _new_figure(height)
    draw(figure, numbers)
    figure.savefig(path, dpi=DPI)


def _grouped_bars(ax: Any, categories: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / len(series)
    x = np.arange(len(categories))
    for k, (name, values) in enumerate(series.items()):
        bars = ax.bar(
            x + (k - (len(series) - 1) / 2) * width,
            values,
            width,
            label=name,
            color=_COLORS[k % len(_COLORS)],
        )
        ax.bar_label(bars, labels=[f"{v:.1%}" for v in values], fontsize=7, padding=2)
    ax.set_xticks(x, categories)
    ax.set_ylabel("share of battles")
    ax.set_ylim(0, max(max(v) for v in series.values()) * 1.2 or 1)
    if len(series) > 1:
        ax.legend(fontsize=8)


def class_balance(figure: Any, numbers: dict[str, Any]) -> None:
    series = {"labels": numbers["shares"]}
    if "predicted_shares" in numbers:
        series["mean predicted probability"] = numbers["predicted_shares"]
    _grouped_bars(figure.subplots(), list(_SHORT), series)


def battles_per_model(figure: Any, numbers: dict[str, Any]) -> None:
    models, counts = numbers["models"][:MAX_BARS], numbers["battles"][:MAX_BARS]
    figure.set_size_inches(WIDTH, 1.0 + 0.22 * len(models))
    ax = figure.subplots()
    ax.barh([plain_text(m) for m in models[::-1]], counts[::-1], color=_COLORS[0])
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("battles")
    if len(numbers["models"]) > MAX_BARS:
        ax.set_title(f"the {MAX_BARS} models with the most battles", fontsize=9)


def win_rate_by_length(figure: Any, numbers: dict[str, Any]) -> None:
    ax = figure.subplots()
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.axvline(0.0, color="grey", lw=0.8, ls=":")
    ax.plot(numbers["bin_median"], numbers["a_win_rate"], "o-", color=_COLORS[0], label="labels")
    if "predicted_a_win_rate" in numbers:
        ax.plot(
            numbers["bin_median"],
            numbers["predicted_a_win_rate"],
            "s--",
            color=_COLORS[1],
            label="predicted",
        )
    ax.set_xlabel("(len A − len B) / (len A + len B)   [bin median]")
    ax.set_ylabel("A win rate (ties ½)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)


def position_bias(figure: Any, numbers: dict[str, Any]) -> None:
    series = {"labels": numbers["label_shares"]}
    if "predicted_shares" in numbers:
        series["predicted"] = numbers["predicted_shares"]
    if "swapped_back_shares" in numbers:
        series["predicted on A/B swapped, swapped back"] = numbers["swapped_back_shares"]
    _grouped_bars(figure.subplots(), list(_SHORT), series)


def reliability(figure: Any, numbers: dict[str, Any]) -> None:
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="perfect calibration")
    for k, (label, curve) in enumerate(zip(_SHORT, numbers["classes"].values())):
        ax.plot(
            curve["mean_predicted"], curve["observed"], "-", color=_COLORS[k], lw=1, label=label
        )
        # marker area by bin size: a bin of ten rows must not look as solid as 4,000
        ax.scatter(
            curve["mean_predicted"],
            curve["observed"],
            color=_COLORS[k],
            zorder=3,
            s=4 + 400 * np.asarray(curve["rows"]) / numbers["rows"],
        )
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.legend(fontsize=8)


def confusion(figure: Any, numbers: dict[str, Any]) -> None:
    matrix = np.asarray(numbers["matrix"], dtype=float)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax = figure.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            f"{int(count):,}\n{share[i, j]:.0%}",
            ha="center",
            va="center",
            fontsize=9,
            color="white" if share[i, j] > 0.6 else "black",
        )
    ax.set_xticks(range(3), _SHORT)
    ax.set_yticks(range(3), _SHORT)
    ax.set_xlabel("predicted")
    ax.set_ylabel("label")


def log_loss_by(figure: Any, numbers: dict[str, Any]) -> None:
    groups = numbers["groups"]
    figure.set_size_inches(WIDTH, 1.2 + 0.45 * len(groups))
    ax = figure.subplots()
    y = np.arange(len(groups))[::-1]
    ax.barh(y + 0.2, [g["log_loss"] for g in groups], 0.4, label="model", color=_COLORS[0])
    ax.barh(
        y - 0.2, [g["prior_log_loss"] for g in groups], 0.4, label="class prior", color="#BBBBBB"
    )
    ax.set_yticks(y, [plain_text(f"{g['group']} (n={g['rows']:,})") for g in groups], fontsize=8)
    ax.set_xlabel("log loss (lower is better)")
    ax.legend(fontsize=8)


def leaderboard(figure: Any, numbers: dict[str, Any]) -> None:
    """Ratings with their 95% intervals; ``numbers["rows"]`` as in ``Leaderboard.records``."""
    rows = numbers["rows"]
    figure.set_size_inches(WIDTH, 1.0 + 0.28 * len(rows))
    ax = figure.subplots()
    y = np.arange(len(rows))[::-1]
    rating = np.array([r["rating"] for r in rows])
    low = np.array([np.nan if r["ci_lower"] is None else r["ci_lower"] for r in rows])
    high = np.array([np.nan if r["ci_upper"] is None else r["ci_upper"] for r in rows])
    errors = np.nan_to_num(np.vstack([rating - low, high - rating]))
    ax.errorbar(rating, y, xerr=errors, fmt="o", color=_COLORS[0], capsize=3, ms=4)
    ax.set_yticks(y, [plain_text(r["model"]) for r in rows], fontsize=8)
    interval = numbers.get("interval", "bootstrap")
    ax.set_xlabel(
        "rating (Elo scale)" + ("" if interval == "none" else f" with 95% {interval} interval")
    )
    ax.grid(axis="x", alpha=0.3)
    if numbers.get("title"):
        ax.set_title(plain_text(numbers["title"]), fontsize=9)


def win_rates(figure: Any, numbers: dict[str, Any]) -> None:
    """Win rate and LC win rate per model with 95% intervals; ``numbers["rows"]`` as in
    ``WinRates.records``."""
    from arenajudge.leaderboard.intervals import Z

    rows = numbers["rows"]
    figure.set_size_inches(WIDTH, 1.2 + 0.28 * len(rows))
    ax = figure.subplots()
    y = np.arange(len(rows))[::-1]
    for offset, (key, error, label, color) in enumerate(
        (
            ("length_controlled_winrate", "lc_standard_error", "LC win rate", _COLORS[0]),
            ("win_rate", "standard_error", "win rate", _COLORS[1]),
        )
    ):
        values = np.array([r[key] for r in rows], dtype=float)
        spread = Z * np.nan_to_num(
            np.array([np.nan if r[error] is None else r[error] for r in rows], dtype=float)
        )
        ax.errorbar(
            values,
            y + 0.15 - 0.3 * offset,
            xerr=spread,
            fmt="o",
            ms=4,
            capsize=2,
            color=color,
            label=label,
        )
    ax.set_yticks(y, [plain_text(r["model"]) for r in rows], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel(
        plain_text(f"% against {numbers['baseline']} ({numbers['estimate']}; 95% intervals)")
    )
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
