"""EMB.parquet: per-battle embeddings written by ``arenajudge embed``
(:func:`arenajudge.models.transformer.embed.write_embeddings`), read by the CPU
model as extra features (``arenajudge train --embeddings EMB.parquet``).

Layout (one row per battle)::

    id               string
    prompt_emb       fixed_size_list<float32>[dim]
    response_a_emb   fixed_size_list<float32>[dim]
    response_b_emb   fixed_size_list<float32>[dim]

and under the schema metadata key ``arenajudge`` a JSON object: ``format``
("arenajudge.embeddings"), ``version`` (1), ``encoder`` (the --base path),
``model_type``, ``dim``, ``max_length``, ``pooling`` ("mean"). Reading needs no torch.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from arenajudge import safe_json
from arenajudge.data.schema import Battles, ExternalEmbeddings
from arenajudge.errors import DataError

EMBEDDING_COLUMNS = ("prompt_emb", "response_a_emb", "response_b_emb")
METADATA_KEY = b"arenajudge"
FORMAT = "arenajudge.embeddings"
FORMAT_VERSION = 1


class EmbeddingsFile:
    """EMB.parquet read once, then looked up by battle id, e.g. block by block.

    Raises
    ------
    DataError
        The file is not an ``arenajudge embed`` output.
    """

    def __init__(self, path: str | Path) -> None:
        import pyarrow.parquet as pq

        self.path = str(path)
        try:
            table = pq.read_table(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot be read as parquet ({exc})", file=path) from None
        raw = (table.schema.metadata or {}).get(METADATA_KEY)
        try:
            self.metadata: dict[str, Any] = safe_json.loads(raw) if raw else {}
        except safe_json.JSONProblem as exc:
            raise DataError(
                f"has corrupt metadata: {exc}; re-run `arenajudge embed`", file=path
            ) from None
        if (
            not isinstance(self.metadata, dict)
            or self.metadata.get("format") != FORMAT
            or set(EMBEDDING_COLUMNS) - set(table.column_names)
        ):
            raise DataError(
                "is not an embeddings file; make one with `arenajudge embed "
                "DATA --base DIR --out EMB.parquet`",
                file=path,
            )
        if self.metadata.get("version") != FORMAT_VERSION:
            raise DataError(
                f"has embeddings format {self.metadata.get('version')}, this "
                f"arenajudge reads {FORMAT_VERSION}; re-run `arenajudge embed`",
                file=path,
            )
        self._row_of = {row_id: row for row, row_id in enumerate(table.column("id").to_pylist())}
        dim = int(self.metadata["dim"])
        self._vectors = np.stack(
            [
                table.column(name).combine_chunks().flatten().to_numpy().reshape(-1, dim)
                for name in EMBEDDING_COLUMNS
            ],
            axis=1,
        )

    def vectors(self, battles: Battles) -> np.ndarray:
        """Embeddings aligned with ``battles`` by id, shape (n, 3, dim), float32 (prompt,
        response A, response B); a DataError names a battle the file lacks."""
        missing = [row_id for row_id in battles.id if str(row_id) not in self._row_of]
        if missing:
            raise DataError(
                f"has no embedding for {len(missing)} battle(s); embed the same data file",
                file=self.path,
                row_id=str(missing[0]),
            )
        rows = np.array([self._row_of[str(row_id)] for row_id in battles.id], dtype=np.int64)
        return self._vectors[rows].astype(np.float32, copy=False)

    def attach(self, battles: Battles) -> Battles:
        """``battles`` carrying their embeddings from this file."""
        return replace(
            battles,
            embeddings=ExternalEmbeddings(
                vectors=self.vectors(battles),
                encoder=str(self.metadata.get("encoder", "")),
                path=self.path,
            ),
        )


def read_embeddings(path: str | Path, battles: Battles) -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings aligned with ``battles`` by id: array (n, 3, dim) float32 (prompt,
    response A, response B) and the file's metadata. Needs no torch.

    Raises
    ------
    DataError
        The file is not an ``arenajudge embed`` output, or lacks a battle's id.
    """
    file = EmbeddingsFile(path)
    return file.vectors(battles), file.metadata


def attach_embeddings(battles: Battles, path: str | Path) -> Battles:
    """``battles`` carrying the embeddings of EMB.parquet ``path`` (matched by id)."""
    return EmbeddingsFile(path).attach(battles)
