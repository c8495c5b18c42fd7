"""The ``arenajudge`` console script: Ctrl-C while the CLI is still importing its
dependencies (seconds on a cold start) ends with one line, not a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from arenajudge.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    cli()
