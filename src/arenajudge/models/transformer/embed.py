"""``arenajudge embed``: mean-pooled last hidden states of prompts and responses.

The route of the Kaggle "Gemma-2 embeddings + GBDT" notebooks: a frozen encoder or
decoder LM turns every side of a battle into one vector; the CPU model then uses
them as extra features (``arenajudge train --embeddings EMB.parquet``).

The EMB.parquet layout is described in :mod:`arenajudge.data.embeddings`. A side
keeps its latest turns up to ``max_length`` tokens; an empty side embeds as zeros. The
forward pass and pooling are :mod:`arenajudge.features.pooling`'s, which the CPU
model's ``--encoder`` features run too; the settings and why they differ are there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from arenajudge.config import check_config
from arenajudge.data.embeddings import EMBEDDING_COLUMNS, FORMAT, FORMAT_VERSION, METADATA_KEY
from arenajudge.data.schema import Battles, Turns
from arenajudge.features.pooling import EMBED_COMMAND, pooled_states
from arenajudge.models.transformer.basemodel import hf_model_dir, load_tokenizer, require_extra
from arenajudge.models.transformer.config import TransformerConfig
from arenajudge.models.transformer.packing import (
    encode_turns,
    keep_latest,
    pad_token_id,
    separator_ids,
    special_tokens,
)
from arenajudge.outputs import atomic_path


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


def _load(
    base: str | Path, max_length: int, batch_size: int, device: str, load_in: str
) -> tuple[Any, Any, dict[str, Any]]:
    """(body in eval mode on its device, tokenizer, what the metadata says of them)."""
    require_extra("embed")
    source, model_type, decoder = hf_model_dir(str(base), "embed")
    from arenajudge.models.transformer import devices, networks

    config = TransformerConfig(
        kind="llm" if decoder else "siamese",
        base=source.pinned,
        max_length=max_length,
        batch_size=batch_size,
        device=device,
        load_in=load_in,
    )
    check_config(config)
    body = networks.load_body(source.path, config, decoder).eval()
    dev = devices.inference_device(device)
    if load_in == "16bit":  # a quantized body already sits on its device
        body.to(dev)
    run = {
        "device": dev,
        "autocast": devices.autocast_dtype(config.precision, dev),
        "dim": networks.hidden_size(body),
        "encoder": source.pinned,
        "model_type": model_type,
    }
    return body, load_tokenizer(source.path, "--base"), run


def embed_battles(
    battles: Battles,
    base: str | Path,
    *,
    max_length: int = EMBED_COMMAND.max_length,
    batch_size: int = 16,
    device: str = "auto",
    load_in: str = "16bit",
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Embeddings of every battle's prompt, response A and response B, with the
    settings :data:`~arenajudge.features.pooling.EMBED_COMMAND`.

    Returns ``{column: array (n, dim) float32}`` for ``EMBEDDING_COLUMNS`` and the
    metadata written beside them. Each distinct text is embedded once.
    """
    body, tokenizer, run = _load(base, max_length, batch_size, device, load_in)
    sides = (battles.prompt, battles.response_a, battles.response_b)
    distinct = sorted({turns for side in sides for turns in side})
    where = {turns: i for i, turns in enumerate(distinct)}
    inputs = _side_inputs(tokenizer, distinct, max_length)
    vectors = np.zeros((len(distinct), run["dim"]), dtype=np.float32)
    # longest first, so that batches pad little; sides without tokens stay zeros
    todo = [i for i in np.argsort([-len(ids) for ids in inputs], kind="stable") if inputs[i]]
    if todo:
        vectors[todo] = pooled_states(
            body,
            [inputs[i] for i in todo],
            normalize=EMBED_COMMAND.normalize,
            pad_id=pad_token_id(tokenizer),
            batch_size=batch_size,
            device=run["device"],
            autocast=run["autocast"],
            progress="embed",
        )
    columns = {
        name: vectors[[where[turns] for turns in side]]
        for name, side in zip(EMBEDDING_COLUMNS, sides)
    }
    metadata = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "encoder": run["encoder"],
        "model_type": run["model_type"],
        "dim": int(vectors.shape[1]),
        "max_length": max_length,
        "pooling": "mean",
    }
    return columns, metadata


def write_embeddings(
    ids: np.ndarray,
    columns: dict[str, np.ndarray],
    metadata: dict[str, Any],
    path: str | Path,
    force: bool = False,
) -> None:
    """Write EMB.parquet atomically (layout in :mod:`arenajudge.data.embeddings`, which
    reads it). It lives here, beside the one producer of the columns and metadata, so
    that ``data/`` stays a reader layer below ``outputs``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = [pa.array([str(i) for i in ids], type=pa.string())]
    for name in EMBEDDING_COLUMNS:
        values = np.ascontiguousarray(columns[name], dtype=np.float32)
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1]))
    table = pa.Table.from_arrays(arrays, names=["id", *EMBEDDING_COLUMNS])
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})
    with atomic_path(path, force) as staged:
        pq.write_table(table, staged)
