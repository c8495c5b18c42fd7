"""Calibration under shift and honest training figures of the default CPU model.

Prints one JSON object, per seed:
- shift: train on human_dev.csv (with its sources), predict arena_bench_gpt4_pairs
  with --tie-rate 0.227: log loss against the class prior of those rows;
- cv: prompt-grouped 5-fold CV of human_dev (per source) and of arena_bench: log loss
  beside the class prior and the length-only baseline, and top-label ECE;
- names_only (arena_bench): the same folds scored by a Davidson Bradley–Terry fit of the
  model names alone (`arenajudge leaderboard --ties davidson`), no text: how much of
  the labels is which model answered, which a text model can only infer;
- train_vs_cv: the out-of-sample calibrated figure `train` prints for the whole set
  minus the CV figure of the same data.

    python benchmarks/calibration_shift.py [--seeds 0 1 2] [--only human_dev|arena_bench]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from _common import data_file
from arenajudge.data import read_battles
from arenajudge.data.folds import folds
from arenajudge.data.sources import attach_sources
from arenajudge.evaluate import cross_validate
from arenajudge.leaderboard import fit_leaderboard
from arenajudge.leaderboard.bradley_terry import ELO_ANCHOR, LOGIT_TO_ELO
from arenajudge.metrics import log_loss, prior_log_loss
from arenajudge.models.gbdt import GBDTModel
from arenajudge.ties import TieModel

SETS = {"human_dev": "human_dev.csv", "arena_bench": "arena_bench_gpt4_pairs.csv.gz"}
ARENA_TIE_RATE = 0.227


def _read(name: str):
    battles = read_battles(data_file(SETS[name]))
    if name == "human_dev":
        battles = attach_sources(battles, data_file("human_dev_sources.csv"))
    return battles


def _round(values: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def train_figure(battles, seed: int) -> tuple[GBDTModel, dict]:
    started = time.perf_counter()
    model = GBDTModel(seed=seed).fit(battles)
    report = model.validation_
    return model, {
        "seconds": round(time.perf_counter() - started, 1),
        "log_loss": round(report["log_loss"], 4),
        "ece": round(report["ece"], 4),
        "tie_model": report["tie_model"],
        "nu": round(report["tie_model_evidence"]["davidson_nu"], 4),
        "temperature": round(report["temperature"], 4),
    }


def cv_figure(battles, seed: int) -> dict:
    started = time.perf_counter()
    result = cross_validate(lambda: GBDTModel(seed=seed), battles, seed=seed, progress=False)
    out = {"seconds": round(time.perf_counter() - started, 1), "overall": _round(result.overall)}
    if result.by_source:
        out["by_source"] = {s: _round(v) for s, v in result.by_source.items()}
        out["sources_above_prior"] = sorted(
            s for s, v in result.by_source.items() if v["log_loss"] > v["prior_log_loss"]
        )
    return out


def names_only_figure(battles, seed: int, n_folds: int = 5) -> float:
    """Prompt-grouped CV log loss (the folds of :func:`cv_figure`) of a Davidson
    Bradley–Terry leaderboard fitted on each fold's other rows, from model names alone."""
    fold_of = folds(battles, n_folds=n_folds, seed=seed)
    proba = np.empty((len(battles), 3))
    davidson = TieModel("davidson")
    for fold in range(n_folds):
        held = fold_of == fold
        board = fit_leaderboard(battles.take(~held), ties="davidson", ci="none")
        rating = dict(zip(board.table.model, board.table.rating))
        a, b = (
            [rating.get(name, ELO_ANCHOR) for name in names[held]]
            for names in (battles.model_a, battles.model_b)
        )
        eta = (np.asarray(a) - np.asarray(b)) / LOGIT_TO_ELO
        proba[held] = np.exp(davidson.terms(eta, np.log([board.tie_parameter])).log_proba)
    return round(log_loss(battles.target, proba), 4)


def run_seed(seed: int, names: list[str], arena) -> dict:
    out: dict = {}
    for name in names:
        battles = arena if name == "arena_bench" else _read(name)
        model, train = train_figure(battles, seed)
        cv = cv_figure(battles, seed)
        out[name] = {
            "train": train,
            "cv": cv,
            "train_vs_cv": round(train["log_loss"] - cv["overall"]["log_loss"], 4),
        }
        if name == "arena_bench":
            out[name]["names_only"] = names_only_figure(battles, seed)
        if name == "human_dev":
            proba = model.predict_proba(arena.without_labels(), tie_rate=ARENA_TIE_RATE)
            out["shift"] = {
                "log_loss": round(log_loss(arena.target, proba), 4),
                "prior_log_loss": round(prior_log_loss(arena.target), 4),
                "tie_rate": ARENA_TIE_RATE,
                "mean_tie": round(float(proba[:, 2].mean()), 4),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", choices=sorted(SETS))
    args = parser.parse_args()
    names = [args.only] if args.only else list(SETS)
    arena = _read("arena_bench")
    load = os.getloadavg()[0]
    results = {str(seed): run_seed(seed, names, arena) for seed in args.seeds}
    print(
        json.dumps(
            {
                "load_average_start": round(load, 2),
                "load_average_end": round(os.getloadavg()[0], 2),
                "seeds": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
