"""Quality–cost curve of a cascade: log loss and wall time against the share F rescored.

Log loss is cross-fitted on the two stages' OOF files (each fold's threshold and blend
fitted on the other folds). Wall time is measured: a `CascadeModel` per share scores
DATA, plus, when the second stage needs outside embeddings, the time to embed the
rescored rows at the rate measured by embedding a sample with `--embed-base`.

    python benchmarks/cascade_curve.py --data human_dev.csv --first FAST --then SLOW \
        --oof-first A.csv --oof-then B.csv [--embeddings EMB.parquet --embed-base DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from arenajudge.data import read_battles
from arenajudge.data.embeddings import attach_embeddings
from arenajudge.data.folds import folds
from arenajudge.data.schema import Battles
from arenajudge.data.soft_labels import read_oof
from arenajudge.metrics import log_loss
from arenajudge.models.cascade import CascadeConfig, CascadeModel, cross_fitted_cascade, entropy
from arenajudge.models.contract import PreferenceModel
from arenajudge.models.registry import load_model

SHARES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
EMBED_SAMPLE = 256


def timed_predict(model: PreferenceModel, battles: Battles) -> float:
    """Wall seconds of one ``predict_proba`` of ``battles``."""
    started = time.perf_counter()
    model.predict_proba(battles)
    return time.perf_counter() - started


def embed_seconds_per_row(battles: Battles, base: str, max_length: int) -> float:
    """Seconds per battle to embed its three texts with ``base``, on a sample."""
    from arenajudge.models.transformer.embed import embed_battles

    sample = battles.take(np.arange(min(EMBED_SAMPLE, len(battles))))
    started = time.perf_counter()
    embed_battles(sample, base, max_length=max_length, device="cpu")
    return (time.perf_counter() - started) / len(sample)


def curve(
    battles: Battles,
    first_dir: str,
    then_dir: str,
    oof: tuple[np.ndarray, np.ndarray],
    shares: tuple[float, ...],
    embed_rate: float,
    seed: int,
    timing: Battles | None = None,
) -> list[dict]:
    """One point per share: cross-fitted OOF log loss of ``battles``, and the rows
    rescored and wall seconds of the cascade scoring ``timing`` (default ``battles``)."""
    fold = folds(battles, n_folds=5, seed=seed)
    unlabelled = (battles if timing is None else timing).without_labels()
    points = []
    for share in shares:
        config = CascadeConfig(share=share)
        cascade = CascadeModel(
            config, first_dir=first_dir, then_dir=then_dir, load_member=load_model
        ).fit(battles, oof=oof)
        rescored = int(
            (entropy(cascade.first_.predict_proba(unlabelled)) >= cascade.threshold_).sum()
        )
        seconds = timed_predict(cascade, unlabelled) + rescored * embed_rate
        proba = cross_fitted_cascade(*oof, battles.target, fold, config)
        points.append(
            {
                "share": share,
                "rows_timed": len(unlabelled),
                "rows_rescored": rescored,
                "log_loss": round(log_loss(battles.target, proba), 4),
                "seconds": round(seconds, 2),
            }
        )
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--first", required=True)
    parser.add_argument("--then", required=True)
    parser.add_argument("--oof-first", required=True)
    parser.add_argument("--oof-then", required=True)
    parser.add_argument("--embeddings", default=None)
    parser.add_argument(
        "--embed-base", default=None, help="The encoder that made --embeddings, to time embedding."
    )
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--shares", default=",".join(map(str, SHARES)))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    battles = read_battles(args.data, seed=args.seed)
    if args.embeddings:
        battles = attach_embeddings(battles, args.embeddings)
    oof = (read_oof(args.oof_first, battles), read_oof(args.oof_then, battles))
    rate = (
        embed_seconds_per_row(battles, args.embed_base, args.max_length) if args.embed_base else 0.0
    )
    shares = tuple(float(s) for s in args.shares.split(","))
    print(
        json.dumps(
            {
                "data": Path(args.data).name,
                "rows": len(battles),
                "embed_seconds_per_row": round(rate, 5),
                "loadavg": os.getloadavg(),
                "points": curve(battles, args.first, args.then, oof, shares, rate, args.seed),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
