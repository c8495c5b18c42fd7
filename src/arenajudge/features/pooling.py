"""Embedding texts with a Hugging Face model: the one implementation behind the CPU
model's ``--encoder`` features (:class:`arenajudge.features.embeddings.HFEncoder`) and
``arenajudge embed`` (:mod:`arenajudge.models.transformer.embed`).

Texts become token ids of at most ``max_length`` tokens, special tokens included; the
model runs over right-padded batches; its last hidden states are averaged over the real
tokens (:func:`mean_pool`) and, if asked, L2-normalised (:func:`pooled_states`). What
the two callers set differently, and why, is :data:`ENCODER_FEATURES` beside
:data:`EMBED_COMMAND`: the length, the normalisation, and which part of a long side is
kept (the tokens of the joined text's head, :func:`head_inputs`, or the latest turns as
the transformer models pack them).

Nothing here imports torch at import time: the CPU model imports this module, and torch
is an optional extra that only the functions running a model need.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Encoding:
    """How a caller embeds texts with :func:`pooled_states`."""

    max_length: int
    """Tokens a text keeps, special tokens included."""
    normalize: bool
    """L2-normalise the pooled vectors."""


ENCODER_FEATURES = Encoding(max_length=256, normalize=True)
"""``--encoder`` features of the CPU model. A side is its turns joined into one text,
cut at its head by the tokenizer (:func:`head_inputs`): a CPU forward pass costs in
proportion to the tokens, and the opening of a text says most. The features are cosine
similarities, so the vectors are unit length. Changing any of this changes the CPU
model's numbers."""

EMBED_COMMAND = Encoding(max_length=512, normalize=False)
"""``arenajudge embed`` (EMB.parquet, usually on a GPU): twice the tokens, a side packed
as the transformer models pack it, its latest turns first
(:func:`arenajudge.models.transformer.packing.keep_latest`), and the raw mean-pooled
states, which the CPU model's EMB.parquet features normalise where they need to."""


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (n, L, H) over the tokens where ``mask`` (n, L) is 1 -> (n, H);
    zeros for a row without tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def head_inputs(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text, at most ``max_length`` with special tokens: the
    tokenizer's own special tokens and truncation (which keeps the head unless its
    config says otherwise). An empty text is read as one space, so that every row has
    its special tokens; callers zero its vector."""
    texts = [t or " " for t in texts]
    return list(tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])


def _padded(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` right-padded with ``pad_id``: input_ids and attention_mask, (B, L) long."""
    import torch

    # at least one position: a batch of texts without tokens still runs (and pools to zeros)
    length = max(1, *(len(ids) for ids in rows))
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    return input_ids, mask


def pooled_states(
    model: Any,
    inputs: Sequence[list[int]],
    *,
    normalize: bool,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    autocast: torch.dtype | None = None,
    progress: str | None = None,
) -> np.ndarray:
    """Mean-pooled last hidden states of ``model`` over ``inputs`` (token ids per row),
    shape (n, hidden) float32, L2-normalised when ``normalize``.

    Rows run in the order given, ``batch_size`` at a time, each batch right-padded to
    its longest row: callers that sort rows by length pad less. ``autocast`` runs the
    model under that dtype; the pooling is in fp32. ``progress`` names a progress bar on
    stderr (None: no bar).
    """
    import torch
    from tqdm.auto import tqdm

    chunks = []
    starts = range(0, len(inputs), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc=progress, file=sys.stderr, disable=progress is None):
            input_ids, mask = (
                t.to(device) for t in _padded(inputs[start : start + batch_size], pad_id)
            )
            with torch.autocast(device.type, dtype=autocast) if autocast else nullcontext():
                hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            pooled = mean_pool(hidden.float(), mask)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=1)
            chunks.append(pooled.cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32)
