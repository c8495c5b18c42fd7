"""Leaderboards of the models in a battles file.

Bradley–Terry ratings on the Elo scale (``bradley_terry``), with sandwich or bootstrap
intervals (``intervals``), ties as half wins or as ties (:mod:`arenajudge.ties`:
Davidson, Rao–Kupper), style control (``style``), one board per category (``categories``) and
prediction-powered ratings from a few human votes plus a judge model's predictions on
many more battles (``ppi``), with the battles worth labelling next.
"""

from arenajudge.leaderboard.board import COLUMNS, Leaderboard, fit_leaderboard
from arenajudge.leaderboard.style import STYLE_FEATURES, response_lengths, style_covariates

__all__ = [
    "COLUMNS",
    "STYLE_FEATURES",
    "Leaderboard",
    "fit_leaderboard",
    "response_lengths",
    "style_covariates",
]
