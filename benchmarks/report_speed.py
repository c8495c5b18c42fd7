"""Wall-clock time of `arenajudge report` and `arenajudge leaderboard` on the real data.

* report: alpaca_eval_gpt4_turbo.csv.gz (~47k rows) end to end through the CLI,
  data-only and with an OOF file (a length heuristic stands in for a model's
  out-of-fold predictions, so every section is drawn);
* leaderboard: arena_bench_gpt4_pairs.csv.gz (30,977 rows, 15 models), sandwich
  intervals, without and with style control.

Usage: python benchmarks/report_speed.py [--data-dir ../shared/data]
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from arenajudge.data import LABELS, read_battles
from arenajudge.leaderboard import response_lengths

CLI = [sys.executable, "-c", "from arenajudge.cli import main; main()"]


def timed_cli(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, check=True)
    return round(time.perf_counter() - start, 2), done.stdout


def heuristic_oof(data: Path, out: Path) -> int:
    """Predictions from the length difference only: longer answers tend to win.
    Returns the number of battles."""
    battles = read_battles(data)
    len_a, len_b = response_lengths(battles)
    p_a = 1 / (1 + np.exp(-3 * (len_a - len_b) / np.maximum(len_a + len_b, 1)))
    proba = np.column_stack([0.97 * p_a, 0.97 * (1 - p_a), np.full(len(battles), 0.03)])
    frame = pd.DataFrame(proba, columns=list(LABELS))
    frame.insert(0, "fold", 0)
    frame.insert(0, "id", battles.id)
    frame.to_csv(out, index=False)
    return len(battles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    data_dir = parser.parse_args().data_dir
    alpaca = data_dir / "alpaca_eval_gpt4_turbo.csv.gz"
    arena = data_dir / "arena_bench_gpt4_pairs.csv.gz"
    if not (alpaca.exists() and arena.exists()):
        print(json.dumps({"skipped": f"real data not found under {data_dir}"}))
        return
    results: dict[str, object] = {"leaderboard_rows": len(read_battles(arena))}
    with tempfile.TemporaryDirectory() as tmp:
        oof = Path(tmp) / "oof.csv"
        results["report_rows"] = heuristic_oof(alpaca, oof)
        results["report_data_only_s"], _ = timed_cli("report", str(alpaca), "--out", f"{tmp}/plain")
        results["report_with_oof_s"], stdout = timed_cli(
            "report", str(alpaca), "--oof", str(oof), "--out", f"{tmp}/oof", "--format", "json"
        )
        results["report_plots"] = len(json.loads(stdout)["plots"])
        results["leaderboard_s"], stdout = timed_cli("leaderboard", str(arena), "--format", "json")
        results["leaderboard_style_control_s"], styled = timed_cli(
            "leaderboard", str(arena), "--format", "json", "--style-control"
        )
    board, styled_board = json.loads(stdout)["models"], json.loads(styled)["models"]
    results["leaderboard_top3"] = [(r["model"], round(r["rating"])) for r in board[:3]]
    results["style_control_top3"] = [(r["model"], round(r["rating"])) for r in styled_board[:3]]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
