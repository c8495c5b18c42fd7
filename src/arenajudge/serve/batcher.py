"""Micro-batching for the judge service: concurrent requests scored together.

Plain asyncio, no web framework (testable without FastAPI); ``serve.app`` starts one
:class:`MicroBatcher` per server process once the model is loaded.

Requests wait a few milliseconds in a queue, are scored together by one ``predict``
call per distinct ``tie_rate`` in a worker thread (so the event loop keeps answering),
and each gets its own rows back. A merged call that fails is retried one request at a
time, so one request's bad battles never fail the others. Texts are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from arenajudge.data.schema import LABELS, Battles
from arenajudge.engines.scoring import predict
from arenajudge.errors import DataError
from arenajudge.features.builder import row_cache_off
from arenajudge.models.contract import PreferenceModel

logger = logging.getLogger(__name__)

BATCH_WAIT_S = 0.002
"""How long the first request of a micro-batch waits for others to join it."""
BATCH_ROWS = 256
"""A micro-batch stops taking requests once it holds this many battles."""


def _concat(parts: list[Battles]) -> Battles:
    return Battles(
        id=np.concatenate([part.id for part in parts]),
        prompt=[turns for part in parts for turns in part.prompt],
        response_a=[turns for part in parts for turns in part.response_a],
        response_b=[turns for part in parts for turns in part.response_b],
    )


@dataclass
class _Job:
    battles: Battles
    tie_rate: float | None
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Scores concurrent requests together, off the event loop.

    The first queued request waits ``wait_s`` for company; then every queued request is
    taken, up to about ``max_rows`` battles, and scored in one thread-pool call (one
    ``predict_proba`` per distinct ``tie_rate``). Requests that arrive meanwhile form
    the next batch, so batches grow with the load.
    """

    def __init__(
        self,
        model: PreferenceModel,
        executor: ThreadPoolExecutor,
        *,
        wait_s: float = BATCH_WAIT_S,
        max_rows: int = BATCH_ROWS,
    ) -> None:
        self.model = model
        self.executor = executor
        self.wait_s = wait_s
        self.max_rows = max_rows
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()

    async def score(self, battles: Battles, tie_rate: float | None) -> np.ndarray:
        """Probabilities for ``battles``, shape (n, 3)."""
        job = _Job(battles, tie_rate, asyncio.get_running_loop().create_future())
        self.queue.put_nowait(job)
        return await job.future

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            if self.queue.empty():
                await asyncio.sleep(self.wait_s)
            rows = len(jobs[0].battles)
            while rows < self.max_rows and not self.queue.empty():
                jobs.append(self.queue.get_nowait())
                rows += len(jobs[-1].battles)
            try:
                results = await loop.run_in_executor(self.executor, self._score, jobs)
            except Exception as exc:
                results = [_failed(exc, rows)] * len(jobs)
            for job, result in zip(jobs, results):
                if job.future.done():  # the client went away
                    continue
                if isinstance(result, Exception):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _score(self, jobs: list[_Job]) -> list[np.ndarray | Exception]:
        """Each job's probabilities, or the exception that scoring it raised.

        A merged call that fails is retried one job at a time, so a request whose battles
        cannot be scored fails alone, not the other requests of its micro-batch.
        """
        results: list[np.ndarray | Exception] = [np.empty((0, len(LABELS)))] * len(jobs)
        # A service's battles come once each: cached rows would only grow the memory.
        with row_cache_off():
            for tie_rate in {job.tie_rate for job in jobs}:
                group = [i for i, job in enumerate(jobs) if job.tie_rate == tie_rate]
                try:
                    proba = predict(self.model, _concat([jobs[i].battles for i in group]), tie_rate)
                except Exception as exc:
                    if len(group) == 1:
                        results[group[0]] = _failed(exc, len(jobs[group[0]].battles))
                        continue
                    logger.info(
                        "a micro-batch of %d requests failed (%s); scoring them one by one",
                        len(group),
                        type(exc).__name__,
                    )
                    for i in group:
                        results[i] = self._score_alone(jobs[i])
                    continue
                bounds = np.cumsum([len(jobs[i].battles) for i in group])[:-1]
                for i, part in zip(group, np.split(proba, bounds)):
                    results[i] = part
        return results

    def _score_alone(self, job: _Job) -> np.ndarray | Exception:
        try:
            return predict(self.model, job.battles, job.tie_rate)
        except Exception as exc:
            return _failed(exc, len(job.battles))


def _failed(exc: Exception, rows: int) -> Exception:
    """Log a request's scoring failure and hand the exception back.

    The log names the exception's type only, and at debug level its traceback without
    any message: a message (and so Python's own traceback) could quote the texts.
    """
    if isinstance(exc, DataError):  # the request's battles: a 422, not a server fault
        logger.warning("a request of %d battles cannot be scored: %s", rows, type(exc).__name__)
        return exc
    logger.error("scoring a request of %d battles failed: %s", rows, type(exc).__name__)
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("traceback, messages left out:\n%s", _bare_traceback(exc))
    return exc


def _bare_traceback(exc: BaseException) -> str:
    """``exc``'s traceback and those of its causes, with frames and types, no messages."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(
            "Traceback (most recent call last):\n"
            + "".join(traceback.format_tb(current.__traceback__))
            + type(current).__qualname__
        )
        current = current.__cause__ or current.__context__
    return "\n\nwhile handling an earlier error:\n".join(parts)
