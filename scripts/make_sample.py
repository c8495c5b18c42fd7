"""Rebuild the bundled sample ``src/arenajudge/datasets/sample.csv.gz`` from the shared data.

Takes every PandaLM battle and a seeded random draw of Anthropic HH-RLHF battles from
``human_dev.csv`` (sources from ``human_dev_sources.csv``): the two sets of it whose
licences (Apache-2.0, MIT) allow redistribution. The output is byte-for-byte
reproducible (fixed seed, gzip without a timestamp). Prints one JSON object.

    python scripts/make_sample.py [--data ../shared/data] [--hh-rows 2206] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "arenajudge" / "datasets" / "sample.csv.gz"
PANDALM, HH_RLHF = "pandalm_testset_v1", "hh_rlhf_test"
COLUMNS = [
    "id",
    "model_a",
    "model_b",
    "prompt",
    "response_a",
    "response_b",
    "winner_model_a",
    "winner_model_b",
    "winner_tie",
    "source",
]


def build_sample(data_dir: Path, hh_rows: int, seed: int) -> pd.DataFrame:
    """PandaLM's battles, then ``hh_rows`` HH-RLHF battles drawn with ``seed``, by id."""
    battles = pd.read_csv(data_dir / "human_dev.csv", dtype={"id": str}, keep_default_na=False)
    sources = pd.read_csv(data_dir / "human_dev_sources.csv", dtype=str)
    battles = battles.merge(sources, on="id", how="inner", validate="one_to_one")
    pandalm = battles[battles["source"] == PANDALM]
    hh = battles[battles["source"] == HH_RLHF].sample(n=hh_rows, random_state=seed)
    sample = pd.concat([pandalm, hh]).sort_values("id", kind="stable")
    return sample[COLUMNS].reset_index(drop=True)


def write_sample(sample: pd.DataFrame, path: Path) -> None:
    """Gzipped CSV without a timestamp in the header, so equal data gives equal bytes."""
    sample.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--hh-rows", type=int, default=2206)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.data / "human_dev.csv").exists():
        sys.exit(f"error: {args.data / 'human_dev.csv'} is absent; pass --data DIR")
    sample = build_sample(args.data, args.hh_rows, args.seed)
    write_sample(sample, OUT)
    print(
        json.dumps(
            {
                "path": str(OUT.relative_to(ROOT)),
                "rows": len(sample),
                "by_source": sample["source"].value_counts().to_dict(),
                "bytes": OUT.stat().st_size,
                "sha256": hashlib.sha256(OUT.read_bytes()).hexdigest(),
            }
        )
    )


if __name__ == "__main__":
    main()
