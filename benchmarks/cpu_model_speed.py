"""Speed and memory of the default CPU model on alpaca_eval_gpt4_turbo.csv.gz (47,485 pairs).

Each phase runs in a fresh process (so the feature cache of training cannot flatter
prediction) and reports wall time and peak RSS. Prints one JSON object.

    python benchmarks/cpu_model_speed.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import data_file


def _phase(args: argparse.Namespace) -> None:
    import numpy as np

    from arenajudge.data import read_battles
    from arenajudge.models.gbdt import GBDTModel
    from arenajudge.models.registry import load_model

    started = time.perf_counter()
    battles = read_battles(data_file("alpaca_eval_gpt4_turbo.csv.gz"))
    if args.rows:
        battles = battles.take(np.arange(min(args.rows, len(battles))))
    read_seconds = time.perf_counter() - started
    started = time.perf_counter()
    if args.phase == "train":
        GBDTModel().fit(battles).save(args.model_dir)
    else:
        load_model(args.model_dir).predict_proba(battles.without_labels())
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": len(battles),
                "read_seconds": round(read_seconds, 1),
                "seconds": round(seconds, 1),
                "peak_rss_mb": round(peak_mb),
            }
        )
    )


def _run_phase(phase: str, model_dir: str, rows: int | None) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--model-dir", model_dir]
    if rows:
        command += ["--rows", str(rows)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--phase", choices=["train", "predict"])
    parser.add_argument("--model-dir")
    args = parser.parse_args()
    if args.phase:
        _phase(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(Path(tmp) / "model")
        train = _run_phase("train", model_dir, args.rows)
        predict = _run_phase("predict", model_dir, args.rows)
    print(
        json.dumps(
            {
                "data": "alpaca_eval_gpt4_turbo.csv.gz",
                "rows": train["rows"],
                "train_seconds": train["seconds"],
                "train_peak_rss_mb": train["peak_rss_mb"],
                "predict_seconds": predict["seconds"],
                "predict_pairs_per_second": round(predict["rows"] / max(predict["seconds"], 1e-9)),
                "predict_peak_rss_mb": predict["peak_rss_mb"],
                "read_seconds": train["read_seconds"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
