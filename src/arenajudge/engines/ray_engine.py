"""Batch scoring on Ray Data, for ``arenajudge predict --engine ray [--address auto]``.

One streaming read task cuts the file into blocks with the block reader of the local
engine (:mod:`arenajudge.data.blocks`), so both engines see the same battles, preference
pairs in the same A/B order, a JSON lines key that some rows lack a column of every
block. A pool of actors, each loading the model once, turns blocks into battles and
scores them in parallel; the driver keeps only ids and probabilities and puts them back
in input order. Texts never
accumulate anywhere, so memory stays flat as the input grows. The same code runs on
local cores (no ``address``) or on a Ray cluster (``address="auto"`` or ``ray://...``;
the file and the model directory must then be readable from every node).

Ray's own error wrappers keep only a traceback's text, so user errors (a bad cell, a
missing model) travel back to the driver as data, in an ``ERROR`` column, and are
raised there with their type: the CLI shows the same one-line message as locally.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from arenajudge import errors
from arenajudge.calibration import check_tie_rate
from arenajudge.data.blocks import (
    STREAM_FORMATS,
    SeenIds,
    check_read_options,
    jsonl_columns,
    parse_block,
    raw_blocks,
)
from arenajudge.data.schema import LABELS
from arenajudge.data.tables import compression_of, detect_format, read_errors
from arenajudge.engines.scoring import predict
from arenajudge.errors import ArenaJudgeError, ConfigError, DataError, MissingDependencyError
from arenajudge.models.contract import PreferenceModel
from arenajudge.models.manifest import check_scores_raw_text, read_manifest
from arenajudge.models.registry import load_model, prefers_gpu

try:
    import ray
    import ray.data
    from ray.data.datasource import FileBasedDatasource
except ImportError as exc:  # the ray extra is optional
    raise MissingDependencyError(
        "ray is not installed; install it with `pip install arenajudge[ray]`"
    ) from exc

ROW = "__arenajudge_row__"
"""Column carrying each row's position in the file, to restore input order."""
ERROR = "__arenajudge_error__"
"""Column carrying a user error to the driver (JSON of its type and fields)."""
DEFAULT_BATCH_SIZE = 1024
ARROW_COMPRESSIONS = (None, "gzip", "bz2", "zstd")
"""Compressions Ray's file reader (Arrow's codec detection) opens; ``.zip`` and ``.xz``
it would hand over still compressed."""


# --------------------------------------------------------------------------- errors
def _error_frame(exc: ArenaJudgeError, row: int) -> pd.DataFrame:
    """A one-row result that carries ``exc`` to the driver."""
    fields = {
        "type": type(exc).__name__,
        "message": exc.message,
        "file": exc.file,
        "row_id": exc.row_id,
        "row": exc.row,
        "column": exc.column,
    }
    return pd.DataFrame(
        {
            ROW: [row],
            "id": [""],
            **{label: [np.nan] for label in LABELS},
            ERROR: [json.dumps(fields)],
        }
    )


def _raise_carried(text: str) -> NoReturn:
    fields = json.loads(text)
    error_type = getattr(errors, fields.pop("type"), ArenaJudgeError)
    raise error_type(fields.pop("message"), **fields)


# --------------------------------------------------------------------------- reading
class _BattleFileSource(FileBasedDatasource):
    """Reads one battles file as pandas blocks of ``block_rows`` rows, numbering rows.

    A read error ends the stream with an error frame; ``display_path`` is the path
    as the user gave it, for messages.
    """

    def __init__(
        self,
        path: str,
        fmt: str,
        block_rows: int,
        display_path: str,
        file_columns: list[str] | None = None,
    ) -> None:
        super().__init__(path)
        self.fmt = fmt
        self.block_rows = block_rows
        self.display_path = display_path
        self.file_columns = file_columns

    def _open_input_source(self, filesystem: Any, path: str, **open_args: Any) -> Any:
        if self.fmt == "parquet":  # its footer needs random access
            return filesystem.open_input_file(path)
        return super()._open_input_source(filesystem, path, **open_args)

    def _read_stream(self, f: Any, path: str) -> Iterator[pd.DataFrame]:
        start = 0
        try:
            with read_errors(self.display_path, self.fmt):
                for block in raw_blocks(
                    f, self.fmt, self.block_rows, self.display_path, self.file_columns
                ):
                    block[ROW] = np.arange(start, start + len(block))
                    start += len(block)
                    yield block
        except ArenaJudgeError as exc:
            yield _error_frame(exc, start)


# --------------------------------------------------------------------------- scoring
class _BlockScorer:
    """Ray actor: loads the model once, then parses and scores one block per call."""

    def __init__(
        self,
        model_dir: str,
        path: str,
        columns: dict[str, str],
        tie_rate: float | None,
        runtime: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.columns = columns
        self.tie_rate = tie_rate
        self.model: PreferenceModel | None = None
        self.load_error: ArenaJudgeError | None = None
        try:
            self.model = load_model(model_dir, runtime)
        except ArenaJudgeError as exc:  # e.g. the directory is missing on this node
            self.load_error = exc

    def __call__(self, block: pd.DataFrame) -> pd.DataFrame:
        if ERROR in block.columns:  # the reader failed
            return block
        rows = block.pop(ROW).to_numpy()
        first_row = int(rows[0]) if len(rows) else 0
        try:
            return self._score(block.reset_index(drop=True), rows, first_row)
        except ArenaJudgeError as exc:
            return _error_frame(exc, first_row)

    def _score(self, block: pd.DataFrame, rows: np.ndarray, first_row: int) -> pd.DataFrame:
        if self.load_error is not None:
            raise self.load_error
        assert self.model is not None
        battles = parse_block(block, self.path, first_row, columns=self.columns)
        proba = predict(self.model, battles, self.tie_rate)
        return pd.DataFrame(
            {
                ROW: rows,
                "id": battles.id,
                **{label: proba[:, k] for k, label in enumerate(LABELS)},
                ERROR: "",
            }
        )


def predict_with_ray(
    data_path: str,
    model_dir: str,
    *,
    read_kwargs: Mapping[str, Any] | None = None,
    tie_rate: float | None = None,
    address: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    runtime: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score a battles file on Ray; the local engine's results, in input order.

    Parameters
    ----------
    data_path : str
        A ``.csv`` (``.csv.gz``), ``.jsonl`` or ``.parquet`` battles file.
    model_dir : str
        A model directory; every actor loads it once.
    read_kwargs : mapping, optional
        ``format`` and ``columns``, as for :func:`arenajudge.data.read_battles`.
    tie_rate : float, optional
        Shift predictions to this tie rate.
    address : str, optional
        A Ray cluster (``"auto"``, ``"ray://host:10001"``); by default Ray starts on
        the local cores. An already initialised Ray is used as it is.
    batch_size : int, default=1024
        Battles per block: the unit read, shipped and scored at once.
    runtime : mapping, optional
        Prediction-time settings of a transformer model (see :func:`load_model`).

    Returns
    -------
    ids : ndarray of str, shape (n,)
    proba : ndarray of float, shape (n, 3), in ``LABELS`` order

    Raises
    ------
    DataError, ConfigError, ModelLoadError
        As the local engine would.
    """
    check_tie_rate(tie_rate)
    options = check_read_options(read_kwargs)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    fmt = _stream_format(data_path, options.get("format"))
    local = "://" not in data_path
    # a key some rows lack is a column of the whole file: of every block too (a remote
    # file is not read twice: its blocks keep their own rows' keys)
    file_columns = jsonl_columns(data_path) if local and fmt == "jsonl" else None
    # a bad model directory fails before Ray starts
    manifest = read_manifest(model_dir)
    check_scores_raw_text(manifest, model_dir, "the ray engine")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    try:
        return _score(
            data_path,
            str(Path(model_dir).resolve()),
            fmt,
            dict(options.get("columns") or {}),
            file_columns,
            tie_rate,
            batch_size,
            dict(runtime or {}),
            gpu=prefers_gpu(model_dir),  # the model says; a composite asks its members
        )
    finally:
        if started:
            ray.shutdown()


def _stream_format(data_path: str, fmt: str | None) -> str:
    """The format of ``data_path`` (``fmt``, else detected), one the ray engine streams
    from a file it can decompress; ConfigError, or DataError for a missing local file."""
    fmt = fmt or detect_format(Path(data_path))
    if fmt not in STREAM_FORMATS:
        raise ConfigError(
            f"the ray engine streams {', '.join(STREAM_FORMATS)} files, not "
            f"{fmt}; convert {data_path} to JSON lines or use --engine local"
        )
    if compression_of(data_path) not in ARROW_COMPRESSIONS:
        raise ConfigError(
            f"the ray engine reads files compressed with gzip, bz2 or zstd, not "
            f"{compression_of(data_path)}; recompress {data_path} or use "
            "--engine local"
        )
    if "://" not in data_path and not Path(data_path).is_file():
        raise DataError("does not exist or is not a file", file=data_path)
    return fmt


def _score(
    data_path: str,
    model_dir: str,
    fmt: str,
    columns: dict[str, str],
    file_columns: list[str] | None,
    tie_rate: float | None,
    batch_size: int,
    runtime: dict[str, Any],
    gpu: bool,
) -> tuple[np.ndarray, np.ndarray]:
    path = data_path if "://" in data_path else str(Path(data_path).resolve())
    # a transformer model scores on a GPU of its own where the cluster has GPUs
    gpus = int(ray.cluster_resources().get("GPU", 0)) if gpu else 0
    n_actors = gpus or max(1, int(ray.cluster_resources().get("CPU", 1)))
    source = _BattleFileSource(
        path, fmt, batch_size, display_path=data_path, file_columns=file_columns
    )
    # batch_size=None: each block is scored as read, never merged with an error frame.
    scored = ray.data.read_datasource(source).map_batches(
        _BlockScorer,
        batch_size=None,
        batch_format="pandas",
        num_cpus=1,
        num_gpus=1 if gpus else 0,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n_actors),
        fn_constructor_kwargs={
            "model_dir": model_dir,
            "path": data_path,
            "columns": columns,
            "tie_rate": tie_rate,
            "runtime": runtime,
        },
    )
    parts = []
    for part in scored.iter_batches(batch_format="pandas", batch_size=None):
        failed = part[ERROR].astype(bool).to_numpy()
        if failed.any():
            _raise_carried(part[ERROR].to_numpy()[failed][0])
        parts.append(part)
    if sum(map(len, parts)) == 0:
        raise DataError("has no rows; it needs at least one battle", file=data_path)
    result = pd.concat(parts, ignore_index=True).sort_values(ROW, kind="stable")
    ids = result["id"].to_numpy(dtype=object)
    SeenIds(data_path).add(ids, first_row=0)
    return ids, result[list(LABELS)].to_numpy(dtype=np.float64)
