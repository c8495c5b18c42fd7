"""Quality of the default CPU model: prompt-grouped 5-fold CV on real preference data.

Prints one JSON object: overall and per-source log loss against the class prior of the
same rows, for human_dev.csv (sources from human_dev_sources.csv) and
arena_bench_gpt4_pairs.csv.gz.

    python benchmarks/cpu_model_quality.py [--only human_dev|arena_bench] [--folds 5]
"""

from __future__ import annotations

import argparse
import json
import time

from _common import data_file
from arenajudge.data import read_battles
from arenajudge.data.sources import attach_sources
from arenajudge.evaluate import cross_validate
from arenajudge.models.gbdt import GBDTModel

SETS = {"human_dev": "human_dev.csv", "arena_bench": "arena_bench_gpt4_pairs.csv.gz"}


def _rounded(values: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def evaluate_set(name: str, n_folds: int, seed: int) -> dict:
    battles = read_battles(data_file(SETS[name]))
    if name == "human_dev":
        battles = attach_sources(battles, data_file("human_dev_sources.csv"))
    started = time.perf_counter()
    result = cross_validate(GBDTModel, battles, n_folds=n_folds, seed=seed, progress=False)
    overall = _rounded(result.overall)
    overall["below_prior"] = round(overall["prior_log_loss"] - overall["log_loss"], 4)
    by_source = {
        s: {**_rounded(v), "vs_prior": round(v["log_loss"] - v["prior_log_loss"], 4)}
        for s, v in result.by_source.items()
    }
    return {
        "rows": len(battles),
        "folds": n_folds,
        "seconds": round(time.perf_counter() - started, 1),
        "overall": overall,
        "by_source": by_source,
        "per_fold_log_loss": [round(f["log_loss"], 4) for f in result.folds],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(SETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    names = [args.only] if args.only else list(SETS)
    print(json.dumps({name: evaluate_set(name, args.folds, args.seed) for name in names}, indent=2))


if __name__ == "__main__":
    main()
