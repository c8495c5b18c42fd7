"""Battles files read in blocks of rows, for the engines that stream (local and Ray).

A block is a raw frame exactly as :func:`arenajudge.data.read_table` would give those
rows, numbered by its first row in the file, and parsed by the same
:func:`~arenajudge.data.readers.parse_frame`: a streamed file gives the battles and the
messages (file, row id, column) of the file read whole. Two things only the whole file
shows are carried across blocks: its columns (a JSON lines key that some rows lack is a
column of every block, empty where missing, as in the whole frame) and whether it is
labelled (a block whose labels are all blank in a labelled file is an error, as those rows
are in the whole file). Across blocks only the ids are kept, to catch duplicates. Memory
is bounded by the block size, not the file.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from arenajudge.data.frame_reader import Problems
from arenajudge.data.readers import parse_frame
from arenajudge.data.schema import Battles
from arenajudge.data.tables import (
    check_csv_header,
    check_data_path,
    check_unique_columns,
    decode_record_line,
    open_binary,
    read_errors,
    read_table,
)
from arenajudge.errors import ConfigError, DataError
from arenajudge.timing import timed

logger = logging.getLogger(__name__)

STREAM_FORMATS = ("csv", "jsonl", "parquet")
"""Formats read block by block; a ``.json`` list is read whole, then cut into blocks."""
DEFAULT_BLOCK_ROWS = 8192
READ_OPTIONS = ("format", "columns")
"""Keyword arguments of :func:`battle_blocks` (and :func:`~arenajudge.data.read_battles`)
that engines accept as ``read_kwargs``."""


def check_read_options(read_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``read_kwargs`` as a dict, once every key is known (:data:`READ_OPTIONS`)."""
    options = dict(read_kwargs or {})
    unknown = sorted(set(options) - set(READ_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown read option(s) {', '.join(unknown)}; known: {', '.join(READ_OPTIONS)}"
        )
    return options


def jsonl_columns(path: str | Path) -> list[str]:
    """The keys of a JSON lines file's rows in order of first appearance: the columns of
    the frame :func:`~arenajudge.data.read_table` makes of it. One fast pass; lines that
    do not parse are skipped here, the block reader names them."""
    keys: dict[str, None] = {}
    with open_binary(path) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8"):
            try:
                record = json.loads(line) if line.strip() else None
            except (ValueError, RecursionError):
                continue
            if isinstance(record, dict):
                keys.update(dict.fromkeys(record))
    return list(keys)


def raw_blocks(
    source: IO[bytes],
    fmt: str,
    block_rows: int,
    path: str | Path,
    file_columns: Sequence[str] | None = None,
) -> Iterator[pd.DataFrame]:
    """Raw frames of ``block_rows`` rows of the open binary file ``source`` (``fmt`` in
    :data:`STREAM_FORMATS`), as :func:`~arenajudge.data.read_table` gives them; at
    least one frame, empty for a file with no rows, so that its layout is still checked.
    ``file_columns`` (:func:`jsonl_columns`) gives every JSON lines block the whole
    file's columns, empty where a block's rows lack the key; without it a block has the
    keys of its own rows only."""
    if fmt == "csv":
        yield from pd.read_csv(
            source, dtype=object, keep_default_na=False, encoding="utf-8", chunksize=block_rows
        )
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(source)
        check_unique_columns(parquet.schema_arrow.names, path)
        if parquet.metadata.num_rows == 0:
            yield parquet.schema_arrow.empty_table().to_pandas()
        for batch in parquet.iter_batches(batch_size=block_rows):
            yield batch.to_pandas()
    else:
        records: list[dict] = []
        yielded = False
        lines = enumerate(io.TextIOWrapper(source, encoding="utf-8"), 1)
        for record in (
            decode_record_line(line, lineno, path) for lineno, line in lines if line.strip()
        ):
            records.append(record)
            if len(records) == block_rows:
                yield _records_frame(records, file_columns)
                records, yielded = [], True
        if records or not yielded:
            yield _records_frame(records, file_columns)


def _records_frame(records: list[dict], file_columns: Sequence[str] | None) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records)
    if file_columns is None:
        return frame
    return frame.reindex(columns=list(file_columns))


def read_blocks(
    path: str | Path, format: str | None = None, block_rows: int = DEFAULT_BLOCK_ROWS
) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first row, raw frame) of each block of a local file, rows numbered from 0.

    Raises
    ------
    DataError
        As :func:`~arenajudge.data.read_table`: missing, unreadable, not UTF-8 ...
    """
    if block_rows < 1:
        raise DataError(
            f"cannot be read in blocks of {block_rows} rows; give at least 1", file=path
        )
    path, fmt = check_data_path(path, format)
    if fmt not in STREAM_FORMATS:  # one JSON list is parsed whole anyway
        frame = read_table(path, fmt)
        for start in range(0, max(len(frame), 1), block_rows):
            yield start, frame.iloc[start : start + block_rows].reset_index(drop=True)
        return
    start = 0
    with read_errors(path, fmt):
        # a key some rows lack is a column of the whole file: of every block too
        file_columns = jsonl_columns(path) if fmt == "jsonl" else None
        if fmt == "csv":
            check_csv_header(path)
        with open_binary(path) as source:
            for frame in raw_blocks(source, fmt, block_rows, path, file_columns):
                yield start, frame.reset_index(drop=True)
                start += len(frame)


class _QuietProblems(Problems):
    """Problems of one block; its warnings are kept for the caller to log, once per file
    (a file without ids would otherwise warn once per block)."""

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def parse_block_quietly(
    frame: pd.DataFrame,
    path: str | Path,
    first_row: int,
    *,
    columns: Mapping[str, str] | None = None,
) -> tuple[Battles, list[str]]:
    """The battles of one block whose first row is row ``first_row`` (0-based) of the
    file, and its warnings, unlogged (:class:`FileChecks` logs them); raises the block's
    first problem as :func:`~arenajudge.data.read_battles` does."""
    problems = _QuietProblems(str(path))
    battles = parse_frame(frame, path, problems, columns=columns, first_row=first_row)
    problems.raise_first()
    assert battles is not None  # no errors means the block was parsed
    return battles, problems.warnings


def _log_once(path: str, message: str, logged: set[str]) -> None:
    if message not in logged:
        logged.add(message)
        logger.warning("%s: %s", path, message)


def parse_block(
    frame: pd.DataFrame,
    path: str | Path,
    first_row: int,
    *,
    columns: Mapping[str, str] | None = None,
    logged: set[str] | None = None,
) -> Battles:
    """:func:`parse_block_quietly`, logging the warnings; ``logged`` collects the
    warnings logged so far, to log each once per file."""
    battles, warnings = parse_block_quietly(frame, path, first_row, columns=columns)
    logged = set() if logged is None else logged
    for message in warnings:
        _log_once(str(path), message, logged)
    return battles


class SeenIds:
    """The ids of the rows read so far, to catch one that comes again in a later block."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._row_of: dict[Any, int] = {}

    def add(self, ids: np.ndarray, first_row: int) -> None:
        """Remember ``ids``, the ids of rows ``first_row``, ``first_row + 1``, ...

        Raises
        ------
        DataError
            An id was seen before, naming it and the row where it first came.
        """
        row_of = self._row_of
        for row, row_id in enumerate(ids.tolist(), first_row + 1):
            first = row_of.setdefault(row_id, row)
            if first != row:
                raise DataError(
                    f"is a duplicate (first seen in row {first}); ids must be unique",
                    file=self.path,
                    row_id=str(row_id),
                    column="id",
                )


class FileChecks:
    """What spans the blocks of one file: the ids read so far (one that comes again is
    an error), the warnings logged so far (each is logged once) and whether the file is
    labelled (a block reads as unlabelled when its labels are blank in every row, which
    in a file labelled elsewhere is an error for each of those rows)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.seen = SeenIds(path)
        self.logged: set[str] = set()
        self.labelled: bool | None = None
        self._first_unlabelled: str | None = None  # id of the first row read unlabelled

    def accept(self, first_row: int, battles: Battles, warnings: list[str]) -> None:
        """Log the block's new ``warnings``, then remember its ids (raises DataError for
        a repeat, as :meth:`SeenIds.add`) and whether it is labelled (raises DataError
        for blank labels in a labelled file, naming the first such row)."""
        for message in warnings:
            _log_once(self.path, message, self.logged)
        self.seen.add(battles.id, first_row)
        if len(battles) == 0:
            return
        if self.labelled is None:
            self.labelled = battles.labelled
        if not battles.labelled and self._first_unlabelled is None:
            self._first_unlabelled = str(battles.id[0])
        if battles.labelled != self.labelled:
            raise DataError(
                "has blank labels while other rows of the file are labelled; "
                "give every row its labels, or none",
                file=self.path,
                row_id=self._first_unlabelled,
            )


def timed_read_blocks(
    path: str | Path, format: str | None = None, block_rows: int = DEFAULT_BLOCK_ROWS
) -> Iterator[tuple[int, pd.DataFrame]]:
    """:func:`read_blocks`, each block's reading timed as the ``read`` stage
    (:mod:`arenajudge.timing`)."""
    blocks = read_blocks(path, format, block_rows)
    while True:
        with timed("read"):
            item = next(blocks, None)
        if item is None:
            return
        yield item


def battle_blocks(
    path: str | Path,
    *,
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> Iterator[tuple[int, Battles]]:
    """(first row, validated battles) of each block of ``path``, in file order.

    The read options are those of :func:`~arenajudge.data.read_battles`, and the
    battles of all blocks together are the ones it gives (same ids, turns, models,
    labels and A/B order), or the first error it raises. Reading and parsing time the
    ``read`` and ``parse`` stages (:mod:`arenajudge.timing`).

    Raises
    ------
    DataError
        The first problem of the first bad block (file, row id or row, column), or an id
        that repeats one of an earlier block.
    """
    checks = FileChecks(path)
    for first_row, frame in timed_read_blocks(path, format, block_rows):
        with timed("parse"):
            battles, warnings = parse_block_quietly(frame, path, first_row, columns=columns)
            checks.accept(first_row, battles, warnings)
        yield first_row, battles
