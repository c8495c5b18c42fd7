"""Samples -> padded tensor batches, and batched forward passes without gradients.

Prediction batches come from rows sorted longest first, so a batch pads to about its
own length; with a token budget (``max_tokens``) a batch holds as many rows as fit in
that many padded tokens, so short rows go through many at a time instead of a fixed
count sized for the longest.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from arenajudge.models.transformer.packing import Sequence
from arenajudge.models.transformer.samples import Samples

NET_INPUTS = ("input_ids", "attention_mask", "segment_ids")
Item = tuple[int, list[Sequence], np.ndarray, float]
"""One sample as the data loader sees it: index, sequences, target, weight."""


def collate(items: list[Item], pad_id: int) -> dict[str, torch.Tensor]:
    """Samples -> right-padded tensors: input_ids, attention_mask, segment_ids (B, S, L),
    target (B, 3), weight (B,), index (B,)."""
    n_seq = len(items[0][1])
    length = max(len(ids) for _, seqs, _, _ in items for ids, _ in seqs)
    input_ids = torch.full((len(items), n_seq, length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), n_seq, length), dtype=torch.long)
    segment_ids = torch.zeros((len(items), n_seq, length), dtype=torch.long)
    for row, (_, seqs, _, _) in enumerate(items):
        for col, (ids, segments) in enumerate(seqs):
            input_ids[row, col, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            segment_ids[row, col, : len(ids)] = torch.tensor(segments, dtype=torch.long)
            attention_mask[row, col, : len(ids)] = 1
    return {
        "index": torch.tensor([item[0] for item in items], dtype=torch.long),
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "segment_ids": segment_ids,
        "target": torch.tensor(np.stack([item[2] for item in items]), dtype=torch.float32),
        "weight": torch.tensor([item[3] for item in items], dtype=torch.float32),
    }


def sample_lengths(samples: Samples) -> np.ndarray:
    """Padded length of each sample: its longest sequence."""
    return np.array([max(len(ids) for ids, _ in seqs) for seqs in samples.sequences])


def by_length(samples: Samples) -> np.ndarray:
    """Sample order from longest to shortest: batches of similar lengths pad little."""
    return np.argsort(-sample_lengths(samples), kind="stable")


def token_budget_batches(
    lengths: np.ndarray, n_sequences: int, max_tokens: int
) -> list[np.ndarray]:
    """Positions into ``lengths`` (sorted longest first) cut into batches whose padded
    size, rows x sequences x longest length, stays within ``max_tokens`` (a longer
    row alone is a batch of one)."""
    batches, start = [], 0
    while start < len(lengths):
        rows = max(1, max_tokens // max(1, n_sequences * int(lengths[start])))
        batches.append(np.arange(start, min(start + rows, len(lengths))))
        start += rows
    return batches


def _items(samples: Samples, order: Any) -> torch.utils.data.Dataset[Item]:
    """The samples at ``order``, as a list: torch's loaders index any sequence as a
    map-style dataset, though its annotations name only its ``Dataset`` class."""
    items = [
        (int(i), samples.sequences[i], samples.target[i], float(samples.weight[i])) for i in order
    ]
    return cast("torch.utils.data.Dataset[Item]", items)


def make_loader(
    samples: Samples, order: np.ndarray, batch_size: int, pad_id: int
) -> torch.utils.data.DataLoader:
    """A loader over ``samples`` in ``order``, ``batch_size`` samples a batch."""
    # Its own generator: iterating a loader draws a seed from its generator, which would
    # otherwise be the global RNG that dropout draws from, and a resumed run iterates
    # its loaders at other points of the RNG stream than an uninterrupted one.
    return torch.utils.data.DataLoader(
        _items(samples, order),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=partial(collate, pad_id=pad_id),
        generator=torch.Generator().manual_seed(0),
    )


def plan_batches(
    samples: Samples, rows: np.ndarray | None, batch_size: int, max_tokens: int | None
) -> list[list[int]]:
    """Prediction batches (sample indices) of ``rows`` (default all), longest first:
    ``batch_size`` samples each, or token-budget batches of ``max_tokens``."""
    order = by_length(samples)
    if rows is not None:
        order = order[np.isin(order, rows)]
    if max_tokens is None:
        cuts = [
            np.arange(start, min(start + batch_size, len(order)))
            for start in range(0, len(order), batch_size)
        ]
    else:
        n_sequences = len(samples.sequences[0]) if len(samples) else 1
        cuts = token_budget_batches(sample_lengths(samples)[order], n_sequences, max_tokens)
    return [order[cut].tolist() for cut in cuts]


def logits_of(
    net: nn.Module,
    loader: Any,
    n: int,
    autocast: AbstractContextManager | None = None,
    gather: Callable | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Logits (n, 3) of every sample in ``loader``, placed by the batches' ``index``."""
    out = np.zeros((n, 3), dtype=np.float32)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for batch in tqdm(
            loader, desc="predict", disable=not progress or None, file=sys.stderr, leave=False
        ):
            with autocast or nullcontext():
                logits = net(*(batch[key].to(device) for key in NET_INPUTS))
            index = batch["index"].to(logits.device)
            if gather is not None:
                index, logits = gather((index, logits))
            out[index.cpu().numpy()] = logits.float().cpu().numpy()
    net.train(was_training)
    return out


def predict_logits(
    net: nn.Module,
    samples: Samples,
    *,
    pad_id: int,
    batch_size: int,
    dtype: torch.dtype | None,
    max_tokens: int | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Logits (len(samples), 3) of the samples at ``rows`` (default all; the others
    stay 0) on the device the network lives on.

    Under ``accelerate launch`` / ``torchrun`` each process runs every n-th batch of the
    one-process plan and the processes sum their results: the same batches, so the same
    numbers as one process, in a 1/n of the time.
    """
    device = next(net.parameters()).device
    batches = plan_batches(samples, rows, batch_size, max_tokens)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        batches = batches[int(os.environ.get("RANK", "0")) :: world]
    loader = torch.utils.data.DataLoader(
        _items(samples, range(len(samples))),
        batch_sampler=batches,
        collate_fn=partial(collate, pad_id=pad_id),
    )
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else None
    logits = logits_of(net, loader, len(samples), autocast, progress=True)
    return _sum_over_processes(logits, device) if world > 1 else logits


def _sum_over_processes(logits: np.ndarray, device: torch.device) -> np.ndarray:
    """Every process's logits summed (each sample is nonzero in one process only)."""
    from accelerate import PartialState

    PartialState(cpu=device.type == "cpu")  # joins the launched processes (gloo / nccl)
    total = torch.from_numpy(logits).to(device)
    torch.distributed.all_reduce(total)
    return total.cpu().numpy()
