"""The ``arenajudge`` command line: a thin layer over the library.

Data goes to stdout, logs and progress to stderr; a user error is one line
``error: ...`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from arenajudge.errors import ArenaJudgeError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class _UserError(click.ClickException):
    exit_code = EXIT_USER_ERROR

    def show(self, file=None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _usage_line(exc: click.UsageError) -> str:
    """Click's usage error as one line, naming the command whose --help helps."""
    command = exc.ctx.command_path if exc.ctx is not None else "arenajudge"
    message = " ".join(exc.format_message().split())
    if (isinstance(exc, click.NoSuchOption) and exc.option_name == "--model"
            and exc.ctx is not None and any(p.name == "backend" for p in exc.ctx.command.params)):
        # --model was the backend flag before it named model directories only
        message = "No such option '--model': choose the backend with --backend"
    return f"error: {message} (see `{command} --help`)"


def _leave_process_group() -> None:
    """Leave the process group a transformer model joined under `accelerate launch`
    (to sum the processes' predictions): left to the interpreter's exit, gloo's threads
    can abort the process ("terminate called without an active exception")."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


class _Group(click.Group):
    """Formats every failure as one ``error:`` line: usage errors, user errors, internal
    errors (traceback only with --debug) and Ctrl-C."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            _leave_process_group()
        except click.UsageError as exc:
            click.echo(_usage_line(exc), err=True)
            sys.exit(EXIT_USER_ERROR)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        sys.exit(0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ArenaJudgeError as exc:
            raise _UserError(str(exc)) from exc
        except MemoryError:
            raise _UserError("out of memory; try a smaller file or batch size") from None
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise _UserError(f"internal error ({type(exc).__name__}: {exc}); rerun with "
                             "--debug for the traceback and report it") from exc


class _WarningFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_WarningFormatter())
    root = logging.getLogger("arenajudge")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    root.propagate = False


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="arenajudge")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.pass_context
def main(ctx: click.Context, verbose: bool, debug: bool) -> None:
    """Predict which of two chatbot responses a person prefers."""
    ctx.obj = {"debug": debug}
    _configure_logging(verbose)


# Command modules register themselves on `main` when imported.
from arenajudge.cli import data_commands  # noqa: E402,F401
from arenajudge.cli import model_commands  # noqa: E402,F401
from arenajudge.cli import insight_commands  # noqa: E402,F401
from arenajudge.cli import serve_commands  # noqa: E402,F401
from arenajudge.cli import transformer_commands  # noqa: E402,F401
from arenajudge.cli import demo_commands  # noqa: E402,F401
from arenajudge.cli import env_commands  # noqa: E402,F401
from arenajudge.cli import workflow_commands  # noqa: E402,F401
from arenajudge.cli import winrate_commands  # noqa: E402,F401

__all__ = ["main"]
