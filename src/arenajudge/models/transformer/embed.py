"""``arenajudge embed``: mean-pooled last hidden states of prompts and responses.

The route of the Kaggle "Gemma-2 embeddings + GBDT" notebooks: a frozen encoder or
decoder LM turns every side of a battle into one vector; the CPU model then uses
them as extra features (``arenajudge train --embeddings EMB.parquet``).

The EMB.parquet layout is described in :mod:`arenajudge.data.embeddings`. A side
keeps its latest turns up to ``max_length`` tokens; an empty side embeds as zeros.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from arenajudge.config import check_config
from arenajudge.data.embeddings import EMBEDDING_COLUMNS, FORMAT, FORMAT_VERSION
from arenajudge.data.schema import Battles, Turns
from arenajudge.models.transformer.basemodel import hf_model_dir, load_tokenizer, require_extra
from arenajudge.models.transformer.config import TransformerConfig
from arenajudge.models.transformer.packing import (
    encode_turns,
    keep_latest,
    pad_token_id,
    separator_ids,
    special_tokens,
)


def _side_inputs(tokenizer: Any, texts: list[Turns], max_length: int) -> list[list[int]]:
    """Token ids of each text's latest turns with the model's special tokens; [] when
    the text has no tokens."""
    prefix, suffix = special_tokens(tokenizer)
    separator = separator_ids(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    inputs = []
    for turns in encode_turns(tokenizer, texts):
        ids, _ = keep_latest(turns, budget, separator)
        inputs.append(prefix + ids + suffix if ids else [])
    return inputs


def embed_battles(
    battles: Battles,
    base: str | Path,
    *,
    max_length: int = 512,
    batch_size: int = 16,
    device: str = "auto",
    load_in: str = "16bit",
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Embeddings of every battle's prompt, response A and response B.

    Returns ``{column: array (n, dim) float32}`` for ``EMBEDDING_COLUMNS`` and the
    metadata written beside them. Each distinct text is embedded once.
    """
    require_extra("embed")
    source, model_type, decoder = hf_model_dir(str(base), "embed")
    path = source.path
    import torch

    from arenajudge.models.transformer import batches, devices, networks

    config = TransformerConfig(
        kind="llm" if decoder else "siamese",
        base=source.pinned,
        max_length=max_length,
        batch_size=batch_size,
        device=device,
        load_in=load_in,
    )
    check_config(config)
    body = networks.load_body(path, config, decoder).eval()
    dev = devices.inference_device(device)
    if load_in == "16bit":
        body.to(dev)
    dtype = devices.autocast_dtype(config.precision, dev)
    tokenizer = load_tokenizer(path, "--base")
    pad_id = pad_token_id(tokenizer)

    sides = (battles.prompt, battles.response_a, battles.response_b)
    distinct = sorted({turns for side in sides for turns in side})
    where = {turns: i for i, turns in enumerate(distinct)}
    inputs = _side_inputs(tokenizer, distinct, max_length)
    vectors = np.zeros((len(distinct), networks.hidden_size(body)), dtype=np.float32)
    todo = [i for i in np.argsort([-len(ids) for ids in inputs], kind="stable") if inputs[i]]
    autocast = torch.autocast(dev.type, dtype=dtype) if dtype is not None else None
    with torch.inference_mode():
        for start in tqdm(
            range(0, len(todo), batch_size), desc="embed", file=sys.stderr, disable=None
        ):
            rows = todo[start : start + batch_size]
            batch = batches.collate(
                [(i, [(inputs[i], [0] * len(inputs[i]))], np.zeros(3), 1.0) for i in rows], pad_id
            )
            ids = batch["input_ids"][:, 0].to(dev)
            mask = batch["attention_mask"][:, 0].to(dev)
            with autocast or nullcontext():
                hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
            vectors[rows] = networks.mean_pool(hidden.float(), mask).cpu().numpy()
    columns = {
        name: vectors[[where[turns] for turns in side]]
        for name, side in zip(EMBEDDING_COLUMNS, sides)
    }
    metadata = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "encoder": source.pinned,
        "model_type": model_type,
        "dim": int(vectors.shape[1]),
        "max_length": max_length,
        "pooling": "mean",
    }
    return columns, metadata
