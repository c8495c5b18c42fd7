"""Prediction-powered ratings by simulation on arena_bench: coverage and width.

Keeps a random 10% of the battles' labels as the "human" votes and treats the rest as
unlabelled, 200 times; each time fits the prediction-powered board (PPI++) from the
votes plus a judge's predictions, and the human-only board from the votes alone. Prints
one JSON object per judge:

* ``cpu_judge``: the default CPU model's predictions of battles whose prompts it was not
  trained on: out-of-fold predictions from ``arenajudge cv --oof`` for every battle, or
  without ``--oof`` a model trained on half of the prompts, the simulation then running
  on the battles of the other half;
* ``strong_judge``: a simulated judge whose predicted outcome correlates ``--rho`` with
  the vote, the labels drawn from its own probabilities.

Measured: coverage of the full-data ratings by the 95% intervals, the mean width
ratio to the human-only intervals, the correlation ``rho`` of predicted and voted
score (raw, and net of what the ratings already predict: the residual correlation is
what narrows the intervals), ``sqrt(1 - rho^2)``, and the attainable ratio
``sqrt(1 - rho^2 N / (n + N))`` with ``n`` votes and ``N`` unlabelled battles.

    python benchmarks/leaderboard_ppi.py                    # trains on half the prompts
    arenajudge cv ../shared/data/arena_bench_gpt4_pairs.csv.gz --oof /tmp/arena_oof.csv
    python benchmarks/leaderboard_ppi.py --oof /tmp/arena_oof.csv --judges cpu
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from _common import data_file
from arenajudge.data import read_battles
from arenajudge.data.folds import folds
from arenajudge.data.schema import Battles
from arenajudge.data.soft_labels import read_oof
from arenajudge.leaderboard import fit_leaderboard
from arenajudge.leaderboard.bradley_terry import LOGIT_TO_ELO
from arenajudge.leaderboard.ppi import fit_ppi_leaderboard


def _score(outcomes: np.ndarray) -> np.ndarray:
    return outcomes[:, 0] + outcomes[:, 2] / 2


def _fitted_proba(battles: Battles, outcomes: np.ndarray) -> np.ndarray:
    """Per battle, the full-data board's outcome probabilities (ties at their rate)."""
    rating = fit_leaderboard(battles, outcomes, ci="none").table.set_index("model")["rating"]
    p = 1 / (
        1
        + np.exp(
            -(rating[battles.model_a].to_numpy() - rating[battles.model_b].to_numpy())
            / LOGIT_TO_ELO
        )
    )
    room = 2 * np.minimum(p, 1 - p)  # the most tie mass that keeps p(A) + p(tie) / 2 = p
    tie = room * min(outcomes[:, 2].mean() / room.mean(), 1.0)
    return np.column_stack([p - tie / 2, 1 - p - tie / 2, tie])


def _correlations(
    outcomes: np.ndarray, predicted: np.ndarray, fitted: np.ndarray
) -> dict[str, float]:
    raw = float(np.corrcoef(_score(outcomes), _score(predicted))[0, 1])
    residual = float(
        np.corrcoef(_score(outcomes) - _score(fitted), _score(predicted) - _score(fitted))[0, 1]
    )
    return {"rho": raw, "rho_residual": residual}


def simulate(
    battles: Battles,
    outcomes: np.ndarray,
    predicted: np.ndarray,
    repetitions: int,
    share: float,
    seed: int,
) -> dict:
    """Coverage and width of prediction-powered boards over random vote subsets."""
    labelled = replace(battles, target=outcomes)
    full = fit_leaderboard(labelled).table.set_index("model")["rating"]
    rng = np.random.default_rng(seed)
    n = round(share * len(battles))
    covered, ratios, lambdas, gained = [], [], [], []
    for _ in range(repetitions):
        order = rng.permutation(len(battles))
        voted, unvoted = order[:n], order[n:]
        board = fit_ppi_leaderboard(
            labelled.take(voted),
            predicted[voted],
            labelled.take(unvoted).without_labels(),
            predicted[unvoted],
        )
        table = board.table.set_index("model").loc[full.index]
        covered.extend((table["ci_lower"] <= full) & (full <= table["ci_upper"]))
        gain = board.prediction_powered
        ratios.append(gain["width_ratio"])
        lambdas.append(gain["lambda"])
        gained.append(gain["human_votes_gained"])
    rho = _correlations(outcomes, predicted, _fitted_proba(battles, outcomes))
    big_n = len(battles) - n
    return {
        "coverage": float(np.mean(covered)),
        "mean_width_ratio": float(np.mean(ratios)),
        **rho,
        "sqrt_1_minus_rho2": float(np.sqrt(1 - rho["rho"] ** 2)),
        "sqrt_1_minus_rho_residual2": float(np.sqrt(1 - rho["rho_residual"] ** 2)),
        "attainable_ratio": float(np.sqrt(1 - rho["rho_residual"] ** 2 * big_n / (n + big_n))),
        "mean_lambda": float(np.mean(lambdas)),
        "mean_human_votes_gained": float(np.mean(gained)),
    }


def strong_judge(battles: Battles, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Judge probabilities that mix the fitted board's with a guess of each vote, and
    labels drawn from them; the mix is set so that the residual correlation is ``rho``."""
    base = _fitted_proba(battles, battles.target)
    rng = np.random.default_rng(seed)
    draws = rng.random(len(battles))
    guess = np.eye(3)[
        (rng.random(len(battles))[:, None] > np.cumsum(base, axis=1)).sum(1).clip(0, 2)
    ]

    def judge(mix: float) -> tuple[np.ndarray, np.ndarray]:
        proba = (1 - mix) * base + mix * guess
        labels = np.eye(3)[(draws[:, None] > np.cumsum(proba, axis=1)).sum(1).clip(0, 2)]
        return proba, labels

    low, high = 0.0, 1.0
    for _ in range(30):  # bisection: the residual correlation grows with the mix
        mix = (low + high) / 2
        proba, labels = judge(mix)
        if _correlations(labels, proba, base)["rho_residual"] < rho:
            low = mix
        else:
            high = mix
    return judge((low + high) / 2)


def held_out_judge(battles: Battles, seed: int) -> tuple[Battles, np.ndarray]:
    """The battles of half the prompts, predicted by the CPU model trained on the rest."""
    from arenajudge.models.gbdt import GBDTModel

    held = folds(battles, n_folds=2, seed=seed) == 0
    model = GBDTModel().fit(battles.take(~held))
    test = battles.take(held)
    return test, model.predict_proba(test.without_labels())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--oof",
        default=None,
        help="arenajudge cv --oof output for the file; without it the CPU "
        "model is trained on half of the prompts.",
    )
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--labelled-share", type=float, default=0.1)
    parser.add_argument("--rho", type=float, default=0.8, help="The strong judge's rho.")
    parser.add_argument(
        "--judges", default="cpu,strong", help="Comma-separated judges to measure: cpu, strong."
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    battles = read_battles(data_file("arena_bench_gpt4_pairs.csv.gz"))
    result = {
        "file": "arena_bench_gpt4_pairs.csv.gz",
        "battles": len(battles),
        "labelled_share": args.labelled_share,
        "repetitions": args.repetitions,
    }
    judges = args.judges.split(",")
    if "cpu" in judges:
        rows, predicted = (
            (battles, read_oof(args.oof, battles))
            if args.oof
            else held_out_judge(battles, args.seed)
        )
        result["cpu_judge"] = {
            "battles": len(rows),
            "predictions": "out-of-fold"
            if args.oof
            else "model trained on the other half of the prompts",
            **simulate(
                rows, rows.target, predicted, args.repetitions, args.labelled_share, args.seed
            ),
        }
    if "strong" in judges:
        proba, labels = strong_judge(battles, args.rho, args.seed)
        result["strong_judge"] = simulate(
            battles, labels, proba, args.repetitions, args.labelled_share, args.seed
        )
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
