"""``arenajudge embed``: mean-pooled last hidden states of prompts and responses.

The route of the Kaggle "Gemma-2 embeddings + GBDT" notebooks: a frozen encoder or
decoder LM turns every side of a battle into one vector; the CPU model then uses
them as extra features (``arenajudge train --embeddings EMB.parquet``).

EMB.parquet layout (one row per battle, in input order)::

    id               string
    prompt_emb       fixed_size_list<float32>[dim]
    response_a_emb   fixed_size_list<float32>[dim]
    response_b_emb   fixed_size_list<float32>[dim]

and under the schema metadata key ``arenajudge`` a JSON object: ``format``
("arenajudge.embeddings"), ``version`` (1), ``encoder`` (the --base path),
``model_type``, ``dim``, ``max_length``, ``pooling`` ("mean"). A side keeps its latest
turns up to ``max_length`` tokens; an empty side embeds as zeros.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from arenajudge.data.schema import Battles, Turns
from arenajudge.errors import DataError
from arenajudge.models.transformer.config import TransformerConfig
from arenajudge.models.transformer.model import hf_model_dir, load_tokenizer, require_extra
from arenajudge.models.transformer.packing import (encode_turns, keep_latest, pad_token_id,
                                                   separator_ids, special_tokens)
from arenajudge.outputs import atomic_path

EMBEDDING_COLUMNS = ("prompt_emb", "response_a_emb", "response_b_emb")
METADATA_KEY = b"arenajudge"
FORMAT = "arenajudge.embeddings"
FORMAT_VERSION = 1


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


def embed_battles(battles: Battles, base: str | Path, *, max_length: int = 512,
                  batch_size: int = 16, device: str = "auto", load_in: str = "16bit"
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Embeddings of every battle's prompt, response A and response B.

    Returns ``{column: array (n, dim) float32}`` for ``EMBEDDING_COLUMNS`` and the
    metadata written beside them. Each distinct text is embedded once.
    """
    require_extra("embed", load_in=load_in)
    path, model_type, decoder = hf_model_dir(str(base), "embed")
    import torch

    from arenajudge.models.transformer import networks, trainer

    config = TransformerConfig(kind="llm" if decoder else "siamese", base=str(path),
                               max_length=max_length, batch_size=batch_size, device=device,
                               load_in=load_in)
    config.validate()
    body = networks.load_body(path, config, decoder).eval()
    dev = trainer.inference_device(config)
    if load_in == "16bit":
        body.to(dev)
    dtype = trainer.autocast_dtype(config, dev)
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
        for start in tqdm(range(0, len(todo), batch_size), desc="embed",
                                  file=sys.stderr, disable=None):
            rows = todo[start:start + batch_size]
            batch = trainer.collate([(i, [(inputs[i], [0] * len(inputs[i]))], np.zeros(3), 1.0)
                                     for i in rows], pad_id)
            ids = batch["input_ids"][:, 0].to(dev)
            mask = batch["attention_mask"][:, 0].to(dev)
            with autocast or nullcontext():
                hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
            vectors[rows] = networks.mean_pool(hidden.float(), mask).cpu().numpy()
    columns = {name: vectors[[where[turns] for turns in side]]
               for name, side in zip(EMBEDDING_COLUMNS, sides)}
    metadata = {"format": FORMAT, "version": FORMAT_VERSION, "encoder": str(path),
                "model_type": model_type, "dim": int(vectors.shape[1]),
                "max_length": max_length, "pooling": "mean"}
    return columns, metadata


def write_embeddings(ids: np.ndarray, columns: dict[str, np.ndarray], metadata: dict[str, Any],
                     path: str | Path, force: bool = False) -> None:
    """Write EMB.parquet (layout in the module docstring) atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = [pa.array([str(i) for i in ids], type=pa.string())]
    for name in EMBEDDING_COLUMNS:
        values = np.ascontiguousarray(columns[name], dtype=np.float32)
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()),
                                                        values.shape[1]))
    table = pa.Table.from_arrays(arrays, names=["id", *EMBEDDING_COLUMNS])
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})
    with atomic_path(path, force) as staged:
        pq.write_table(table, staged)


def read_embeddings(path: str | Path, battles: Battles) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings aligned with ``battles`` by id: array (n, 3, dim) float32 (prompt,
    response A, response B) and the file's metadata. Needs no torch.

    Raises
    ------
    DataError
        The file is not an ``arenajudge embed`` output, or lacks a battle's id.
    """
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot be read as parquet ({exc})", file=path) from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    metadata = json.loads(raw) if raw else {}
    if metadata.get("format") != FORMAT or set(EMBEDDING_COLUMNS) - set(table.column_names):
        raise DataError("is not an embeddings file; make one with `arenajudge embed DATA "
                        "--base DIR --out EMB.parquet`", file=path)
    if metadata.get("version") != FORMAT_VERSION:
        raise DataError(f"has embeddings format {metadata.get('version')}, this arenajudge "
                        f"reads {FORMAT_VERSION}; re-run `arenajudge embed`", file=path)
    row_of = {row_id: row for row, row_id in enumerate(table.column("id").to_pylist())}
    missing = [row_id for row_id in battles.id if str(row_id) not in row_of]
    if missing:
        raise DataError(f"has no embedding for {len(missing)} battle(s); embed the same "
                        "data file", file=path, row_id=str(missing[0]))
    rows = np.array([row_of[str(row_id)] for row_id in battles.id], dtype=np.int64)
    dim = int(metadata["dim"])
    stacked = np.stack([table.column(name).combine_chunks().flatten().to_numpy()
                        .reshape(-1, dim)[rows] for name in EMBEDDING_COLUMNS], axis=1)
    return stacked.astype(np.float32, copy=False), metadata
