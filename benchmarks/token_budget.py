"""Token-budget batching vs fixed batches, and partial A/B-swap TTA vs full, on CPU.

A tiny random decoder (hidden 32, 2 layers; its BPE tokenizer trained on the rows, so
texts tokenise to realistic lengths) is trained for a few steps on 2,000 rows of
``../shared/data/human_dev.csv`` at ``--max-length 1024``, then predicts the same rows:

- batching: fixed batches of ``--batch-size`` battles in file order (the seed
  notebooks' way), fixed batches of length-sorted rows (arenajudge's default) and
  token-budget batches of length-sorted rows (``--max-tokens-per-batch``, budget
  batch size x max length): padded tokens per real token and pairs/s of the forward
  passes;
- TTA: ``--tta none``, ``uncertain:0.33`` and ``full``: pairs/s (end to end, packing
  included) and log loss on the same rows (in sample and of a barely trained tiny
  model: a speed comparison, the log losses only show the three agree in kind).

Prints one JSON object. Run with ``nice``; the timings depend on the machine's load.

    python benchmarks/token_budget.py [--rows 2000] [--max-length 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import data_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def padding(samples, batches) -> dict[str, float]:
    """Padded tokens (rows x sequences x longest) per real token of a batch plan."""
    from arenajudge.models.transformer.batches import sample_lengths

    lengths = sample_lengths(samples)
    padded = sum(len(b) * int(lengths[b].max()) for b in batches)
    return {
        "batches": len(batches),
        "padded_per_real_token": round(padded / int(lengths.sum()), 4),
        "padding_waste": round(padded / int(lengths.sum()) - 1, 4),
    }


def train_tiny(battles, work: Path, max_length: int) -> tuple[Path, float]:
    """A tiny llm model trained 8 steps on 64 of the rows; its directory and seconds."""
    from arenajudge.models.registry import build_model
    from tiny import save_base

    texts = [
        turn
        for side in (battles.prompt, battles.response_a, battles.response_b)
        for turns in side
        for turn in turns
    ]
    base = save_base(work / "base", "llama", texts=texts[:6000], max_positions=max_length)
    started = time.perf_counter()
    build_model(
        "llm",
        {
            "base": str(base),
            "max_length": max_length,
            "batch_size": 4,
            "max_steps": 8,
            "lr": 1e-3,
            "val_fraction": 0.0,
            "device": "cpu",
        },
    ).fit(battles.take(np.arange(min(64, len(battles))))).save(work / "model")
    return work / "model", time.perf_counter() - started


def timed_predict(model_dir: Path, battles, **options) -> dict[str, float]:
    """pairs/s and in-sample log loss of predicting ``battles`` with ``options``."""
    from arenajudge.metrics import log_loss
    from arenajudge.models.transformer.config import PredictOptions
    from arenajudge.models.transformer.model import LLMModel

    model = LLMModel.load(model_dir, PredictOptions(**options))
    started = time.perf_counter()
    proba = model.predict_proba(battles.without_labels())
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "pairs_per_s": round(len(battles) / seconds, 2),
        "log_loss_in_sample": round(log_loss(battles.target, proba), 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from arenajudge.data import read_battles
    from arenajudge.models.registry import load_model
    from arenajudge.models.transformer import batches as batching
    from arenajudge.models.transformer.samples import Samples

    torch.set_num_threads(args.threads)
    battles = read_battles(data_file("human_dev.csv"))
    battles = battles.take(np.arange(min(args.rows, len(battles))))
    model_dir, train_seconds = train_tiny(
        battles, Path(tempfile.mkdtemp(prefix="budget_")), args.max_length
    )
    budget = args.batch_size * args.max_length
    # the batch plans of each mode (both A/B orders of every battle)
    model = load_model(model_dir)
    packed, _ = model._packer().pack(battles)
    samples = Samples.build(model._packer(), packed, None, None, both_orders=True)
    order = np.arange(len(samples))
    plans = {
        "fixed_file_order": [
            order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)
        ],
        "fixed_sorted": [
            np.array(b) for b in batching.plan_batches(samples, None, args.batch_size, None)
        ],
        "token_budget": [
            np.array(b) for b in batching.plan_batches(samples, None, args.batch_size, budget)
        ],
    }
    results = {
        name: {**padding(samples, plan), **plan_speed(model, samples, plan)}
        for name, plan in plans.items()
    }
    tta = {
        mode: timed_predict(model_dir, battles, max_tokens_per_batch=budget, tta=mode)
        for mode in ("none", "uncertain:0.33", "full")
    }
    speed = {name: results[name]["pairs_per_s"] for name in results}
    print(
        json.dumps(
            {
                "rows": len(battles),
                "max_length": args.max_length,
                "batch_size": args.batch_size,
                "max_tokens_per_batch": budget,
                "threads": args.threads,
                "model": "tiny random llama, hidden 32, 2 layers, trained 8 steps on 64 rows",
                "train_seconds": round(train_seconds, 1),
                "load_average": os.getloadavg(),
                "batching": results,
                "token_budget_speedup_over_fixed_sorted": round(
                    speed["token_budget"] / speed["fixed_sorted"], 3
                ),
                "token_budget_speedup_over_fixed_file_order": round(
                    speed["token_budget"] / speed["fixed_file_order"], 3
                ),
                "tta": tta,
            }
        )
    )


def plan_speed(model, samples, plan) -> dict[str, float]:
    """pairs/s of the forward passes over one batch plan (both A/B orders of each pair;
    packing excluded, it is the same for every plan)."""
    import torch

    from arenajudge.models.transformer import batches as batching
    from arenajudge.models.transformer.packing import pad_token_id

    loader = torch.utils.data.DataLoader(
        batching._items(samples, range(len(samples))),
        batch_sampler=[np.asarray(b).tolist() for b in plan],
        collate_fn=lambda items: batching.collate(items, pad_token_id(model.tokenizer_)),
    )
    started = time.perf_counter()
    batching.logits_of(model.net_, loader, len(samples))
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "pairs_per_s": round(samples.n_battles / seconds, 2)}


if __name__ == "__main__":
    main()
