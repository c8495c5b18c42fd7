"""Our leaderboard side by side with LMArena's ``arena-rank`` on arena_bench.

Runs ``arenajudge leaderboard FILE --format json`` (sandwich intervals, ties as half wins)
and arena-rank's Bradley–Terry with its sandwich intervals on the same file, each as a
fresh process timed from start to end (reading the file included), and prints one JSON
object: the largest rating difference, per-model interval-width ratios (ours / theirs),
and the wall-time ratio (ours / theirs). arena-rank needs its own environment (it pulls
in jax):

    python3 -m venv /tmp/arvenv && /tmp/arvenv/bin/pip install arena-rank pandas
    python benchmarks/leaderboard_vs_arena_rank.py --arena-python /tmp/arvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import data_file

# Run by the arena-rank interpreter: votes -> arena's winner strings -> its sandwich.
ARENA_RANK_SCRIPT = """
import json, sys
import numpy as np, pandas as pd
from arena_rank.models.bradley_terry import BradleyTerry
from arena_rank.utils.data_utils import PairDataset
frame = pd.read_csv(sys.argv[1], usecols=["model_a", "model_b", "winner_model_a",
                                          "winner_model_b", "winner_tie"])
frame = frame[frame.model_a.notna() & frame.model_b.notna() & (frame.model_a != frame.model_b)]
frame["winner"] = np.select([frame.winner_model_a == 1, frame.winner_model_b == 1],
                            ["model_a", "model_b"], "tie")
dataset = PairDataset.from_pandas(frame)
model = BradleyTerry(n_competitors=len(dataset.competitors))
result = model.compute_ratings_and_cis(dataset, significance_level=0.05)
print(json.dumps({"models": list(result["competitors"]),
                  "rating": np.asarray(result["ratings"]).tolist(),
                  "lower": np.asarray(result["rating_lower"]).tolist(),
                  "upper": np.asarray(result["rating_upper"]).tolist()}))
"""


def _timed(command: list[str], env: dict[str, str] | None = None) -> tuple[str, float]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"error: {' '.join(command[:3])} failed:\n{done.stderr[-2000:]}")
    return done.stdout, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--arena-python", required=True, help="Python of an environment with arena-rank installed."
    )
    parser.add_argument("--data", default=None, help="Votes file (default: arena_bench).")
    args = parser.parse_args()
    path = Path(args.data) if args.data else data_file("arena_bench_gpt4_pairs.csv.gz")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ours_out, ours_s = _timed(
        [sys.executable, "-m", "arenajudge", "leaderboard", str(path), "--format", "json"], env
    )
    theirs_out, theirs_s = _timed([args.arena_python, "-c", ARENA_RANK_SCRIPT, str(path)])
    ours = {row["model"]: row for row in json.loads(ours_out)["models"]}
    theirs = json.loads(theirs_out)
    differences, width_ratios = {}, {}
    for model, rating, low, high in zip(
        theirs["models"], theirs["rating"], theirs["lower"], theirs["upper"]
    ):
        row = ours[model]
        differences[model] = round(row["rating"] - rating, 3)
        width_ratios[model] = round((row["ci_upper"] - row["ci_lower"]) / (high - low), 4)
    print(
        json.dumps(
            {
                "file": path.name,
                "models": len(ours),
                "max_abs_rating_difference_elo": max(map(abs, differences.values())),
                "interval_width_ratio_min": min(width_ratios.values()),
                "interval_width_ratio_max": max(width_ratios.values()),
                "interval_width_ratio_per_model": width_ratios,
                "rating_difference_per_model": differences,
                "ours_seconds": round(ours_s, 2),
                "arena_rank_seconds": round(theirs_s, 2),
                "wall_time_ratio_ours_over_theirs": round(ours_s / theirs_s, 3),
                "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
