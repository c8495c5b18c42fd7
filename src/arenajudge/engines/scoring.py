"""Scoring battles: one batch in this process (:func:`predict`), or the raw blocks of a
file parsed and scored in this process or side by side in worker processes, results in
input order (:func:`scored_blocks`).

The CPU model's features and the JSON parsing are mostly Python and hold the GIL, so
threads of one process overlap little of them; worker processes use every core. Each
worker loads a single-threaded copy of the model (:meth:`PreferenceModel.worker_copy`)
once, then gets one raw block at a time, parses and scores it exactly as this process
would, and sends back the battles (without their texts unless asked) and
probabilities. This process keeps only raw blocks in flight and checks, in file order,
what spans blocks: repeated ids, warnings logged once. Workers are spawned, not forked:
this process runs threads (the reader, OpenMP, the tokenizer's pool) that a fork would
copy in an arbitrary state.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np
import pandas as pd

from arenajudge.data.blocks import DEFAULT_BLOCK_ROWS, FileChecks, parse_block_quietly
from arenajudge.data.embeddings import EmbeddingsFile
from arenajudge.data.schema import Battles
from arenajudge.errors import ArenaJudgeError
from arenajudge.features.builder import row_cache_off
from arenajudge.models.contract import PreferenceModel
from arenajudge.threads import resolve_jobs
from arenajudge.timing import StageTimes, add_stages, collecting, timed

RawBlock = tuple[int, pd.DataFrame]
"""(position of the block's first row in the file, its raw frame)."""
Scored = tuple[int, Battles, np.ndarray]


def predict(model: PreferenceModel, battles: Battles, tie_rate: float | None = None) -> np.ndarray:
    """``model``'s probabilities for ``battles``, shape (n, 3) in ``LABELS`` order.

    ``tie_rate`` (a class-prior shift) is passed only when given, so models whose
    ``predict_proba`` has no such parameter still work without it.
    """
    if tie_rate is None:
        return model.predict_proba(battles)
    return model.predict_proba(battles, tie_rate=tie_rate)


@dataclass(frozen=True)
class BlockRecipe:
    """How every raw block of one file is parsed and scored, in this process or a worker.

    Attributes
    ----------
    path : str
        The file, as errors and warnings name it.
    columns
        As for :func:`~arenajudge.data.read_battles`.
    tie_rate : float or None
    check : callable, optional
        Called with each block's battles before scoring; it raises to stop. A worker
        gets it pickled, so it must be a module-level function.
    keep_texts : bool, default=True
        False hands the battles back without their turns (ids, labels, sources kept).
    """

    path: str
    columns: Mapping[str, str] | None = None
    tie_rate: float | None = None
    check: Callable[[Battles], object] | None = None
    keep_texts: bool = True

    def score(
        self,
        model: PreferenceModel,
        first_row: int,
        frame: pd.DataFrame,
        embeddings: EmbeddingsFile | None = None,
    ) -> tuple[Battles, np.ndarray, list[str]]:
        """(battles, probabilities, warnings not yet logged) of one raw block."""
        with timed("parse"):
            battles, warnings = parse_block_quietly(
                frame, self.path, first_row, columns=self.columns
            )
        if self.check is not None:
            self.check(battles)
        if embeddings is not None:
            with timed("embeddings"):
                battles = embeddings.attach(battles)
        proba = predict(model, battles.without_labels(), self.tie_rate)
        return (battles if self.keep_texts else battles.without_texts()), proba, warnings


_worker_model: PreferenceModel | None = None


@contextmanager
def _ctrl_c_left_to_this_process() -> Iterator[None]:
    """Processes started within inherit Ctrl-C (SIGINT) and a hangup (SIGHUP), which
    reach the whole process group, ignored, even while they import: this process handles
    them, stops the workers and prints one line. (multiprocessing's resource tracker
    ignores SIGINT and SIGTERM itself, not SIGHUP: killed, it is relaunched with warnings.)
    """
    if threading.current_thread() is not threading.main_thread():  # cannot set handlers
        yield
        return
    group_wide = [signal.SIGINT] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in group_wide}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _adopt(model_path: str) -> None:
    """Worker initializer: load the pickled model."""
    global _worker_model
    with open(model_path, "rb") as handle:
        _worker_model = pickle.load(handle)


def _score_in_worker(
    recipe: BlockRecipe, first_row: int, frame: pd.DataFrame
) -> tuple[tuple[Battles, np.ndarray, list[str]], dict[str, float]]:
    times = StageTimes()
    # _adopt, the pool's initializer, set it before any block reached this worker
    assert _worker_model is not None
    with collecting(times), row_cache_off():
        scored = recipe.score(_worker_model, first_row, frame)
    return scored, dict(times.seconds)


def scored_blocks(
    blocks: Iterable[RawBlock],
    model: PreferenceModel,
    recipe: BlockRecipe,
    *,
    workers: int = 1,
    embeddings: EmbeddingsFile | None = None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
) -> Iterator[Scored]:
    """(first row, battles, probabilities) of each raw block of ``blocks``, in order.

    With ``workers`` > 1 (0: one per core) and a model that offers a worker copy, blocks
    are parsed and scored by that many processes, at most one block each in flight
    beyond the one being handed back, so memory stays bounded by the block size. The
    workers start (about a second) once a first block of ``block_rows`` rows, the size
    read, says more may follow; a shorter file, and ``embeddings`` (attached by id from
    one table in memory), are scored here. Either way the battles, errors and
    probabilities are those of the whole file read and scored in this process, bit for
    bit.

    Raises
    ------
    DataError
        The first problem of the first bad block, or an id repeating an earlier one.
    """
    blocks, checks = iter(blocks), FileChecks(recipe.path)
    n_workers = resolve_jobs(workers)
    worker_model = model.worker_copy() if n_workers > 1 and embeddings is None else None
    head = list(islice(blocks, 1)) if worker_model is not None else []
    if worker_model is None or not head or len(head[0][1]) < block_rows:
        results: Iterator = (
            (first_row, *recipe.score(model, first_row, frame, embeddings))
            for first_row, frame in chain(head, blocks)
        )
    else:
        results = _in_workers(chain(head, blocks), worker_model, recipe, n_workers)
    for first_row, battles, proba, warnings in results:
        checks.accept(first_row, battles, warnings)
        yield first_row, battles, proba


def _in_workers(
    blocks: Iterator[RawBlock], model: PreferenceModel, recipe: BlockRecipe, n_workers: int
) -> Iterator[tuple[int, Battles, np.ndarray, list[str]]]:
    pending: deque[tuple[int, int, Future]] = deque()
    # The model goes through a file, not the start-up pipe: a worker that dies while
    # starting would leave this process blocked writing a large model into that pipe.
    with tempfile.TemporaryDirectory(prefix="arenajudge-workers-") as folder:
        model_path = Path(folder) / "model.pickle"
        model_path.write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        with _ctrl_c_left_to_this_process():  # the pool starts the resource tracker
            pool = ProcessPoolExecutor(
                n_workers,
                initializer=_adopt,
                mp_context=multiprocessing.get_context("spawn"),
                initargs=(str(model_path),),
            )
        try:
            with _ctrl_c_left_to_this_process():
                # every worker starts now (a submit starts one while none is idle), so no
                # later submit runs with Ctrl-C ignored here
                for _ in range(n_workers):
                    pool.submit(int)
            for first_row, frame in blocks:
                pending.append(
                    (first_row, len(frame), pool.submit(_score_in_worker, recipe, first_row, frame))
                )
                if len(pending) > n_workers:
                    yield _collect(*pending.popleft())
            while pending:
                yield _collect(*pending.popleft())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _collect(
    first_row: int, n_rows: int, future: Future
) -> tuple[int, Battles, np.ndarray, list[str]]:
    try:
        (battles, proba, warnings), seconds = future.result()
    except BrokenProcessPool:
        raise ArenaJudgeError(
            f"a worker process stopped while scoring rows {first_row + 1:,}-"
            f"{first_row + n_rows:,} (out of memory? or a script that calls arenajudge "
            'outside `if __name__ == "__main__":`, which every worker process reruns); '
            "rerun with --workers 1 to score in this process"
        ) from None
    add_stages(seconds)
    return first_row, battles, proba, warnings
