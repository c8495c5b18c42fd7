"""Ray engine vs local engine on one battles file; prints one JSON object.

Each engine runs in its own subprocess, timed from start to finish (imports, Ray
start-up and model loading included) while the memory of its whole process tree is
sampled; the two outputs are then compared row by row.

    python benchmarks/ray_vs_local.py --model /tmp/hd_model \
        --data ../shared/data/alpaca_eval_gpt4_turbo.csv.gz > ray_vs_local.json

``peak_rss_mb.driver`` is the engine's own process; ``peak_rss_mb.tree`` sums every
process it started (Ray's raylet, GCS, object store and actors), counting pages shared
between processes, the object store's in particular, once per process;
``largest_process`` is the biggest single one. ``--rows N`` scores only the first N
rows, to compare memory across input sizes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data" / "alpaca_eval_gpt4_turbo.csv.gz"

LOCAL = """
import sys, numpy as np
from arenajudge.data import read_battles
from arenajudge.engines.scoring import predict
from arenajudge.models.registry import load_model
battles = read_battles(sys.argv[1])
proba = predict(load_model(sys.argv[2]), battles)
np.save(sys.argv[3], proba); np.save(sys.argv[4], battles.id.astype(str))
"""
RAY = """
import sys, numpy as np
from arenajudge.engines.ray_engine import predict_with_ray
ids, proba = predict_with_ray(sys.argv[1], sys.argv[2], batch_size=int(sys.argv[5]))
np.save(sys.argv[3], proba); np.save(sys.argv[4], ids.astype(str))
"""


def _tree_rss(process: psutil.Process) -> tuple[int, int, int]:
    """RSS of ``process``, the sum over it and all its descendants, and the largest of
    them, in bytes."""
    sizes = []
    for member in [process, *process.children(recursive=True)]:
        try:
            sizes.append(member.memory_info().rss)
        except psutil.Error:  # it ended meanwhile
            sizes.append(0)
    return sizes[0], sum(sizes), max(sizes)


def _run(script: str, args: list[str], timeout: float) -> dict:
    started = time.perf_counter()
    process = psutil.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peaks = np.zeros(3)
    while process.poll() is None:
        if time.perf_counter() - started > timeout:
            process.kill()
            raise RuntimeError(f"timed out after {timeout:.0f} s")
        with contextlib.suppress(psutil.Error):  # the engine process itself may just have ended
            peaks = np.maximum(peaks, _tree_rss(process))
        time.sleep(0.25)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(process.stderr.read().decode(errors="replace")[-2000:])
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": dict(
            zip(("driver", "tree", "largest_process"), (round(v / 2**20) for v in peaks))
        ),
    }


def _head(data: Path, rows: int, folder: str) -> Path:
    """The first ``rows`` rows of ``data``, as a temporary CSV file in ``folder``."""
    from arenajudge.data import read_table

    path = Path(folder) / f"head_{rows}.csv"
    read_table(data).head(rows).to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=1024, help="Ray block rows")
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="score only the first ROWS rows (to see memory against size)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="per engine, seconds")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"error: {args.data} does not exist; give --data")

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data if args.rows is None else _head(args.data, args.rows, tmp)
        outputs = {}
        for engine, script in (("local", LOCAL), ("ray", RAY)):
            proba, ids = f"{tmp}/{engine}_proba.npy", f"{tmp}/{engine}_ids.npy"
            results[engine] = _run(
                script, [str(data), args.model, proba, ids, str(args.batch_size)], args.timeout
            )
            outputs[engine] = (np.load(ids), np.load(proba))
    n = len(outputs["local"][0])
    for engine in results:
        results[engine]["pairs_per_s"] = round(n / results[engine]["wall_s"], 1)
    report = {
        "benchmark": "ray_vs_local",
        "data": str(args.data),
        "model": args.model,
        "rows": n,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        **results,
        "same_ids_in_order": bool(np.array_equal(outputs["local"][0], outputs["ray"][0])),
        "max_abs_diff": float(np.abs(outputs["local"][1] - outputs["ray"][1]).max()),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
