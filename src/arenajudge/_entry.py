"""The ``arenajudge`` console script: Ctrl-C while the CLI is still importing its
dependencies (seconds on a cold start) ends with one line, not a traceback.

SIGTERM and SIGHUP are handled like Ctrl-C (:func:`terminate_like_ctrl_c`): the signal
raises :class:`Terminated`, a KeyboardInterrupt, in the main thread, so every ``finally``
runs (worker processes shut down, staging folders removed) before the CLI exits with
``128 + signal``. This module imports only the standard library: it runs before anything
else is imported.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EXIT_INTERRUPTED = 130
TERMINATING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Terminated(KeyboardInterrupt):
    """A terminating signal (SIGTERM, SIGHUP) arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal."""
        return 128 + self.signum

    def line(self) -> str:
        """The one line the CLI prints."""
        return f"error: terminated ({signal.Signals(self.signum).name})"


def _raise_terminated(signum: int, frame: Any) -> None:
    # a second signal while the first one's cleanup runs would cut that cleanup short
    # (and leave workers or staging folders behind): it is ignored, SIGKILL still works
    for other in TERMINATING_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Terminated(signum)


@contextmanager
def terminate_like_ctrl_c() -> Iterator[None]:
    """Within, SIGTERM and SIGHUP raise :class:`Terminated`; a signal this process was
    started ignoring (SIGHUP under ``nohup``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():  # cannot set handlers
        yield
        return
    previous = {number: signal.getsignal(number) for number in TERMINATING_SIGNALS}
    for number, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(number, _raise_terminated)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def main() -> None:
    with terminate_like_ctrl_c():
        try:
            from arenajudge.cli import main as cli
        except Terminated as exc:
            sys.stderr.write(exc.line() + "\n")
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            sys.stderr.write("error: interrupted\n")
            sys.exit(EXIT_INTERRUPTED)
        cli()
