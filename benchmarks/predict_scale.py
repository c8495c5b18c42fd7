"""Streaming ``arenajudge predict`` against the cost of parsing; prints one JSON object.

    nice -n 10 python benchmarks/predict_scale.py [--model MODEL_DIR] > predict_scale.json

On alpaca_eval_gpt4_turbo decompressed to CSV (47,485 pairs), measured in one run:

* ``parse_s``: pandas ``read_csv`` plus ``json.loads`` of the three turn columns, timed
  inside a fresh process (its imports excluded); the median of ``--repeats`` runs
  (default 3), alternating with as many runs of the ×1 predict, whose median (by wall
  time) is reported;
* ``predict_x1``: ``arenajudge -v predict`` on that file in a fresh process, timed from
  start to exit (imports, model loading and writing included), its CPU time and peak
  RSS (from ``wait4``: the child's and its worker processes') and the time per stage
  it logs;
  ``predict_cpu_over_parse_process_cpu`` compares CPU times (the parse process's
  imports included), a figure a busy machine distorts less than wall time;
* ``predict_x8``: the same for the rows repeated 8 times (379,880 pairs, ids made
  unique), a file the benchmark writes into a temporary folder;
* ``max_abs_diff``: the streamed submission against ``predict_proba`` on the whole file
  read at once (0.0 when streaming changes nothing).

Without ``--model`` a model is first trained on ``human_dev.csv`` with the default
config (``arenajudge train``), as for the figures in docs/performance.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import data_file

PARSE = """
import json, sys, time
import pandas as pd
started = time.perf_counter()
frame = pd.read_csv(sys.argv[1], dtype=object, keep_default_na=False)
for column in ("prompt", "response_a", "response_b"):
    [json.loads(cell) for cell in frame[column]]
print(time.perf_counter() - started)
"""
TARGETS = {"predict_over_parse": 3.0, "x8_over_x1_peak_rss": 1.2, "x8_peak_rss_mb": 1500}
STAGES = re.compile(r"stages \(.*?\): (.*)$", re.M)
REPEATS = 8


def _run(args: list[str]) -> dict:
    """Run ``args`` in a fresh process: wall time, CPU time (all its threads), its own
    peak RSS, stdout and stderr."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            args, stdout=out, stderr=err, env={**os.environ, "TQDM_DISABLE": "1"}
        )
        # wait4 gives this child's peak; RUSAGE_CHILDREN would keep the largest so far
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{stderr[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "stdout": stdout,
        "stderr": stderr,
    }


def _predict(data: Path, model: str, out: Path) -> dict:
    result = _run(
        [
            sys.executable,
            "-m",
            "arenajudge",
            "-v",
            "predict",
            str(data),
            "--model",
            model,
            "--out",
            str(out),
            "--force",
        ]
    )
    stages = STAGES.search(result.pop("stderr"))
    del result["stdout"]
    result["stages"] = stages.group(1) if stages else None
    return result


def _repeated(data: Path, path: Path, repeats: int) -> int:
    """Write ``data``'s rows ``repeats`` times to ``path``, ids suffixed ``-k``."""
    frame = pd.read_csv(data, dtype=object, keep_default_na=False)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        for k in range(repeats):
            copy = frame.assign(id=frame["id"] + f"-{k}")
            copy.to_csv(handle, header=k == 0, index=False)
    return len(frame) * repeats


def _whole_file_diff(data: Path, model: str, submission: Path) -> float:
    """Largest difference between the streamed submission and ``predict_proba`` on the
    whole file read at once; ids must match row for row."""
    from arenajudge.data import LABELS, read_battles
    from arenajudge.models.registry import load_model

    battles = read_battles(data)
    expected = load_model(model).predict_proba(battles)
    streamed = pd.read_csv(submission, dtype={"id": str})
    if streamed["id"].tolist() != list(battles.id):
        raise RuntimeError("the streamed submission's ids differ from the file's")
    return float(np.abs(streamed[list(LABELS)].to_numpy() - expected).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory (default: train one on human_dev)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="battles CSV(.gz) (default: alpaca_eval_gpt4_turbo.csv.gz)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of parse-only and of the x1 predict, alternating so that "
        "the machine's load weighs on both alike; medians are reported",
    )
    args = parser.parse_args()
    source = args.data or data_file("alpaca_eval_gpt4_turbo.csv.gz")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model
        if model is None:
            model = str(folder / "model")
            _run(
                [
                    sys.executable,
                    "-m",
                    "arenajudge",
                    "train",
                    str(data_file("human_dev.csv")),
                    "--out",
                    model,
                ]
            )
        x1 = folder / "x1.csv"
        with (
            gzip.open(source, "rb") if source.suffix == ".gz" else open(source, "rb") as raw,
            open(x1, "wb") as plain,
        ):
            shutil.copyfileobj(raw, plain)
        x8 = folder / f"x{REPEATS}.csv"
        rows_x8 = _repeated(x1, x8, REPEATS)
        parses, singles = [], []
        for _ in range(args.repeats):
            parses.append(_run([sys.executable, "-c", PARSE, str(x1)]))
            singles.append(_predict(x1, model, folder / "x1_submission.csv"))
        parse_runs = sorted(float(run["stdout"]) for run in parses)
        parse_s = statistics.median(parse_runs)
        parse_cpu_s = statistics.median(run["cpu_s"] for run in parses)
        single = sorted(singles, key=lambda run: run["wall_s"])[len(singles) // 2]
        repeated = _predict(x8, model, folder / "x8_submission.csv")
        diff = _whole_file_diff(x1, model, folder / "x1_submission.csv")
        rows_x1 = rows_x8 // REPEATS
    ratio = single["wall_s"] / parse_s
    peak_ratio = repeated["peak_rss_mb"] / single["peak_rss_mb"]
    report = {
        "benchmark": "predict_scale",
        "data": str(source),
        "model": args.model or "trained on human_dev.csv, default config",
        "rows_x1": rows_x1,
        "rows_x8": rows_x8,
        "cpus": len(os.sched_getaffinity(0)),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "repeats": args.repeats,
        "parse_runs_s": [round(v, 2) for v in parse_runs],
        "predict_x1_runs_wall_s": sorted(run["wall_s"] for run in singles),
        "parse_s": round(parse_s, 2),
        "parse_process_cpu_s": parse_cpu_s,
        "predict_x1": single,
        "predict_x8": repeated,
        "x1_pairs_per_s": round(rows_x1 / single["wall_s"]),
        "x8_pairs_per_s": round(rows_x8 / repeated["wall_s"]),
        "predict_over_parse": round(ratio, 2),
        "predict_cpu_over_parse_process_cpu": round(single["cpu_s"] / parse_cpu_s, 2),
        "x8_over_x1_peak_rss": round(peak_ratio, 3),
        "max_abs_diff": diff,
        "targets": TARGETS,
        "meets_targets": {
            "predict_over_parse": ratio <= TARGETS["predict_over_parse"],
            "x8_over_x1_peak_rss": peak_ratio <= TARGETS["x8_over_x1_peak_rss"],
            "x8_peak_rss_mb": repeated["peak_rss_mb"] <= TARGETS["x8_peak_rss_mb"],
            "max_abs_diff": diff == 0.0,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
