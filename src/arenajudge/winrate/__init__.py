"""Win rates against a baseline, the AlpacaEval way.

Each model's win rate against one baseline (ties count half), its standard error, the
counts, the discrete win rate, the average length and the length-controlled (LC) win
rate of AlpacaEval 2.0's GLM (``glm``), from votes, from a judge model's predicted
probabilities, or prediction-powered from both (``rates``), of each model's pairs
against the baseline (``pairs``).
"""

from arenajudge.winrate.pairs import BaselinePairs, baseline_pairs
from arenajudge.winrate.rates import (
    COLUMNS,
    ESTIMATES,
    PPI_COLUMNS,
    WinRates,
    ppi_win_rates,
    win_rates,
)

__all__ = [
    "COLUMNS",
    "ESTIMATES",
    "PPI_COLUMNS",
    "BaselinePairs",
    "WinRates",
    "baseline_pairs",
    "ppi_win_rates",
    "win_rates",
]
