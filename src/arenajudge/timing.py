"""Wall time per stage of a run (read, parse, features, lightgbm, write), for ``-v``.

A run collects into one :class:`StageTimes` (``with collecting(times):``); code deep in
the call, a model's ``predict_proba`` for instance, marks its stages with
``with timed("features"):`` and costs nothing when no run collects. Stages running on
different threads overlap, so their sum can exceed the wall time.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class StageTimes:
    """Seconds spent per stage, added up over calls and threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add({name: time.perf_counter() - started})

    def add(self, seconds: dict[str, float]) -> None:
        """Add seconds per stage, e.g. those a worker process measured."""
        with self._lock:
            for name, value in seconds.items():
                self.seconds[name] += value

    def summary(self) -> str:
        """``read 0.81 s, parse 1.40 s, ...`` in the order the stages first ran."""
        return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.seconds.items())


_current: ContextVar[StageTimes | None] = ContextVar("arenajudge_stage_times", default=None)


@contextmanager
def collecting(times: StageTimes) -> Iterator[StageTimes]:
    """Within this block (and threads started with a copy of its context), :func:`timed`
    stages add to ``times``."""
    token = _current.set(times)
    try:
        yield times
    finally:
        _current.reset(token)


@contextmanager
def timed(name: str) -> Iterator[None]:
    """Count the block's wall time to stage ``name`` of the run collecting, if any."""
    times = _current.get()
    if times is None:
        yield
        return
    with times.stage(name):
        yield


def add_stages(seconds: dict[str, float]) -> None:
    """Add stage times measured elsewhere (a worker process) to the run collecting, if any."""
    times = _current.get()
    if times is not None:
        times.add(seconds)
