"""Streaming a file through a model on this machine, for ``predict``, ``evaluate`` and
``pseudo-label``.

:func:`score_blocks` streams a file: a reader thread reads raw blocks of rows
(:mod:`arenajudge.data.blocks`) into a short queue while the calling thread parses and
scores them, or hands them to worker processes (:mod:`arenajudge.engines.scoring`), so
reading overlaps scoring, and memory is bounded by the block size, not by the file.
The blocks come back in input order, with their battles (labels included) and
probabilities; :func:`stream_predict` appends them to a submission CSV that appears
only once complete.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from arenajudge.calibration import check_tie_rate
from arenajudge.data.blocks import DEFAULT_BLOCK_ROWS, check_read_options, timed_read_blocks
from arenajudge.data.embeddings import EmbeddingsFile
from arenajudge.data.schema import Battles
from arenajudge.engines.scoring import BlockRecipe, scored_blocks
from arenajudge.features.builder import row_cache_off
from arenajudge.models.contract import PreferenceModel
from arenajudge.outputs import atomic_path, probability_frame
from arenajudge.timing import StageTimes, collecting, timed

logger = logging.getLogger(__name__)

_QUEUE_BLOCKS = 2
"""Raw blocks waiting for the scorer: enough to keep it busy, few enough to keep
memory flat."""
_BAR_DELAY_S = 1.0


@dataclass(frozen=True)
class ScoredBlock:
    """One block of a streamed file and its probabilities.

    Attributes
    ----------
    first_row : int
        Position in the file (0-based) of the block's first row.
    battles : Battles
        The block's battles as read: labels (if the file has them), sources and
        attached embeddings included.
    proba : ndarray of float, shape (len(battles), 3)
        In ``LABELS`` order.
    """

    first_row: int
    battles: Battles
    proba: np.ndarray

    @property
    def ids(self) -> np.ndarray:
        return self.battles.id

    @property
    def target(self) -> np.ndarray | None:
        """The block's labels, shape (n, 3), or None for an unlabelled file."""
        return self.battles.target


class _Feed:
    """Items of an iterator produced on a background thread, at most ``depth`` ahead.

    The thread runs in a copy of the caller's context, so its stages are timed into the
    caller's :class:`~arenajudge.timing.StageTimes`. An error in the thread is raised
    in the caller, in order; leaving the ``with`` block stops the thread.
    """

    _END = object()

    def __init__(self, items: Iterator[Any], depth: int = _QUEUE_BLOCKS) -> None:
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._produce,), name="arenajudge-reader", daemon=True
        )

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)
            return
        self._put(self._END)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        while (item := self._queue.get()) is not self._END:
            if isinstance(item, BaseException):
                raise item
            yield item

    def __enter__(self) -> _Feed:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()


def score_blocks(
    path: str | Path,
    model: PreferenceModel,
    *,
    read_kwargs: Mapping[str, Any] | None = None,
    tie_rate: float | None = None,
    embeddings_path: str | Path | None = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    progress: bool = False,
    check: Callable[[Battles], object] | None = None,
    workers: int = 1,
    keep_texts: bool = True,
) -> Iterator[ScoredBlock]:
    """Read, validate and score a battles file block by block, in input order.

    Parameters
    ----------
    path : str or Path
        A ``.csv`` (``.csv.gz``), ``.jsonl``, ``.parquet`` or ``.json`` battles file.
    model : PreferenceModel
    read_kwargs : mapping, optional
        ``format`` and ``columns``, as for :func:`arenajudge.data.read_battles`; the blocks
        together hold exactly the battles it reads, preference pairs in the same A/B order.
    tie_rate : float, optional
        Shift predictions to this tie rate.
    embeddings_path : str or Path, optional
        EMB.parquet (``arenajudge embed``) whose vectors are attached to each block by id.
    block_rows : int, default=8192
        Rows read, parsed and scored at once: memory grows with it, not with the file.
    progress : bool, default=False
        Show a progress bar on stderr of rows read and rows scored, with pairs/s (after
        a second, so that a quick run or an early error prints nothing else).
    check : callable, optional
        Called with each block's battles before scoring them, e.g.
        :func:`~arenajudge.models.contract.check_labelled`; it raises to stop. With
        worker processes it must be a module-level function (it is pickled).
    workers : int, default=1
        Processes parsing and scoring blocks side by side (0: one per core), for models
        that offer a worker copy (the CPU model); other models, a file shorter than one
        block and ``embeddings_path`` are scored in this process
        (:func:`~arenajudge.engines.scoring.scored_blocks`).
    keep_texts : bool, default=True
        False yields each block's battles without their turns (ids, labels and sources
        only), which spares worker processes sending the texts back.

    Yields
    ------
    ScoredBlock
        Probabilities equal to ``predict_proba`` on the whole file, row for row.

    Raises
    ------
    DataError
        The first problem of the first bad block, as :func:`~arenajudge.data.read_battles`
        would name it (file, row id or row, column), or an id repeating an earlier one.
    """
    check_tie_rate(tie_rate)
    options = check_read_options(read_kwargs)
    blocks = timed_read_blocks(path, options.get("format"), block_rows)
    recipe = BlockRecipe(
        str(path),
        columns=options.get("columns"),
        tie_rate=tie_rate,
        check=check,
        keep_texts=keep_texts,
    )
    embeddings = EmbeddingsFile(embeddings_path) if embeddings_path else None
    with _ProgressBar(progress) as bar, row_cache_off(), _Feed(bar.counted(blocks)) as feed:
        for first_row, battles, proba in scored_blocks(
            feed, model, recipe, workers=workers, embeddings=embeddings, block_rows=block_rows
        ):
            bar.scored(len(battles))
            yield ScoredBlock(first_row, battles, proba)


class _ProgressBar:
    """Rows scored on a tqdm bar, with the rows read so far beside them: reading runs
    ahead of scoring, and the gap shows which of the two is the slow one."""

    def __init__(self, enabled: bool) -> None:
        self._bar = tqdm(
            desc="scoring", unit="pair", disable=not enabled, dynamic_ncols=True, delay=_BAR_DELAY_S
        )
        self._read = 0

    def counted(
        self, blocks: Iterator[tuple[int, pd.DataFrame]]
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """``blocks`` unchanged, counting the rows read (in the reader thread)."""
        for first_row, frame in blocks:
            self._read = first_row + len(frame)
            yield first_row, frame

    def scored(self, rows: int) -> None:
        self._bar.set_postfix_str(f"read {self._read:,}", refresh=False)
        self._bar.update(rows)

    def __enter__(self) -> _ProgressBar:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._bar.__exit__(*exc_info)


def stream_predict(
    path: str | Path,
    model: PreferenceModel,
    out_path: str | Path,
    *,
    force: bool = False,
    read_kwargs: Mapping[str, Any] | None = None,
    tie_rate: float | None = None,
    embeddings_path: str | Path | None = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    progress: bool = False,
    workers: int = 1,
) -> int:
    """Write the submission CSV (``id`` + ``LABELS``) of every battle in ``path``.

    Blocks are scored by :func:`score_blocks` (the options are its own) and appended,
    in input order, to a temporary file that replaces ``out_path`` only once every block
    is written: an error in any block leaves no output. Logs the time per stage (read,
    parse, features, lightgbm, write) at INFO level. Returns the number of battles.
    """
    times, started, n_rows = StageTimes(), time.perf_counter(), 0
    with (
        collecting(times),
        atomic_path(out_path, force) as staged,
        open(staged, "w", encoding="utf-8", newline="") as handle,
    ):
        for block in score_blocks(
            path,
            model,
            read_kwargs=read_kwargs,
            tie_rate=tie_rate,
            embeddings_path=embeddings_path,
            block_rows=block_rows,
            progress=progress,
            workers=workers,
            keep_texts=False,
        ):
            with timed("write"):
                frame = probability_frame(block.ids, block.proba, out_path)
                frame.to_csv(handle, header=n_rows == 0, index=False)
            n_rows += len(frame)
    elapsed = time.perf_counter() - started
    logger.info(
        "predicted %d battles in %.2f s; stages (the reader thread overlaps the others): %s",
        n_rows,
        elapsed,
        times.summary(),
    )
    return n_rows
