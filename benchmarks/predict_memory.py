"""Memory of repeated library ``predict_proba`` calls on distinct battles; prints JSON.

Loads a model, predicts every battle of a file once and ``--warm-pairs`` recombined
ones (warm-up), samples this process's RSS, then predicts ``--distinct-pairs`` new
distinct pairs (the prompt of one battle with the answers of two others) in calls of
``--batch`` battles and reports ``rss_warm_mb``, ``rss_end_mb`` and ``growth_pct``. The
feature row cache keeps rows across calls within ``features.builder.CACHE_BYTES``;
``--cache-mb`` sets another bound, e.g. a large one to see what an unbounded cache costs.

    python benchmarks/predict_memory.py --model /tmp/hd_model --distinct-pairs 200000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from arenajudge.data import Battles, read_battles
from arenajudge.features import builder
from arenajudge.models.registry import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import DEFAULT_DATA, _rss_mb


def _recombined(battles: Battles, n: int, seed: int) -> Battles:
    """``n`` battles: the prompt of one battle with response A and B of two others."""
    i, a, b = np.random.default_rng(seed).integers(0, len(battles), (3, n))
    return Battles(
        id=np.arange(n).astype(str).astype(object),
        prompt=[battles.prompt[k] for k in i],
        response_a=[battles.response_a[k] for k in a],
        response_b=[battles.response_b[k] for k in b],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--distinct-pairs", type=int, default=200_000)
    parser.add_argument("--warm-pairs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000, help="battles per call")
    parser.add_argument(
        "--cache-mb",
        type=float,
        default=None,
        help="row cache bound in MiB (default: the library's)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.cache_mb is not None:
        builder.CACHE_BYTES = int(args.cache_mb * 2**20)  # read when the builder is made
    import os

    pid = os.getpid()
    model = load_model(args.model)
    battles = read_battles(args.data)
    started = time.perf_counter()
    warm = [battles, _recombined(battles, args.warm_pairs, args.seed)]
    for part in warm:
        for lo in range(0, len(part), args.batch):
            model.predict_proba(part.take(np.arange(lo, min(lo + args.batch, len(part)))))
    rss_warm = _rss_mb(pid)
    measured = _recombined(battles, args.distinct_pairs, args.seed + 1)
    samples = []
    step = max(args.batch, args.distinct_pairs // 10)
    for lo in range(0, len(measured), args.batch):
        model.predict_proba(measured.take(np.arange(lo, min(lo + args.batch, len(measured)))))
        if (lo + args.batch) % step < args.batch:
            samples.append(round(_rss_mb(pid), 1))
    rss_end = _rss_mb(pid)
    print(
        json.dumps(
            {
                "benchmark": "predict_memory",
                "model": args.model,
                "data": str(args.data),
                "cache_mb": round(builder.CACHE_BYTES / 2**20, 1),
                "warm_up_pairs": len(battles) + args.warm_pairs,
                "distinct_pairs": args.distinct_pairs,
                "batch": args.batch,
                "duration_s": round(time.perf_counter() - started, 1),
                "rss_warm_mb": round(rss_warm, 1),
                "rss_end_mb": round(rss_end, 1),
                "rss_samples_mb": samples,
                "growth_pct": round(100 * (rss_end - rss_warm) / rss_warm, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
