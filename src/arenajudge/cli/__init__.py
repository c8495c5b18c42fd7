"""The ``arenajudge`` command line: a thin layer over the library.

Data goes to stdout, logs and progress to stderr; a user error is one line
``error: ...`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import errno
import inspect
import logging
import os
import re
import sys
from typing import IO, Any

import click

from arenajudge._entry import EXIT_INTERRUPTED, Terminated, terminate_like_ctrl_c
from arenajudge.errors import ArenaJudgeError

EXIT_USER_ERROR = 2


class _UserError(click.ClickException):
    exit_code = EXIT_USER_ERROR

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _usage_line(exc: click.UsageError) -> str:
    """Click's usage error as one line, naming the command whose --help helps."""
    command = exc.ctx.command_path if exc.ctx is not None else "arenajudge"
    message = " ".join(exc.format_message().split())
    if (
        isinstance(exc, click.NoSuchOption)
        and exc.option_name == "--model"
        and exc.ctx is not None
        and any(p.name == "backend" for p in exc.ctx.command.params)
    ):
        # --model was the backend flag before it named model directories only
        message = "No such option '--model': choose the backend with --backend"
    return f"error: {message} (see `{command} --help`)"


class _Terminated(click.ClickException):
    """A SIGTERM or SIGHUP: one line, exit 128 + signal (no blank line: no ``^C`` echo)."""

    def __init__(self, exc: Terminated) -> None:
        super().__init__(exc.line())
        self.signal_exit_code = exc.exit_code

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.message, err=True)


# what to do about an error of the operating system, by errno
_OS_ADVICE = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EFBIG: "the file exceeds a size limit of this system; write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "check the permissions",
    errno.EPERM: "check the permissions",
}


def _os_error_line(exc: OSError) -> str:
    """An error of the operating system as one line naming its file(s)."""
    names = [os.fsdecode(name) for name in (exc.filename, exc.filename2) if name is not None]
    reason = exc.strerror or str(exc)
    advice = _OS_ADVICE.get(exc.errno) if exc.errno is not None else None
    return (
        ": ".join([*names[:1], reason[:1].lower() + reason[1:]])
        + (f" (to {names[1]})" if len(names) > 1 else "")
        + (f"; {advice}" if advice else "")
    )


def _leave_process_group() -> None:
    """Leave the process group a transformer model joined under `accelerate launch`
    (to sum the processes' predictions): left to the interpreter's exit, gloo's threads
    can abort the process ("terminate called without an active exception")."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


class _Group(click.Group):
    """Formats every failure as one ``error:`` line: usage errors, user errors, errors of
    the operating system, internal errors (traceback only with --debug), Ctrl-C, SIGTERM
    and SIGHUP (exit 128 + signal, after every cleanup ran)."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            with terminate_like_ctrl_c():
                super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
                _leave_process_group()
        except click.UsageError as exc:
            click.echo(_usage_line(exc), err=True)
            sys.exit(EXIT_USER_ERROR)
        except _Terminated as exc:  # a ClickException whose exit code depends on the signal
            exc.show()
            sys.exit(exc.signal_exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt) as exc:
            signalled = exc if isinstance(exc, Terminated) else exc.__cause__
            if isinstance(signalled, Terminated):  # arrived outside a command
                click.echo(signalled.line(), err=True)
                sys.exit(signalled.exit_code)
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        sys.exit(0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Terminated as exc:
            raise _Terminated(exc) from None
        except ArenaJudgeError as exc:
            raise _UserError(str(exc)) from exc
        except OSError as exc:  # disk full, read-only file system, permissions changed...
            if exc.errno == errno.EPIPE:  # stdout closed early (`| head`): click's to handle
                raise
            raise _UserError(_os_error_line(exc)) from exc
        except MemoryError:
            raise _UserError("out of memory; try a smaller file or batch size") from None
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise _UserError(
                f"internal error ({type(exc).__name__}: {exc}); rerun with "
                "--debug for the traceback and report it"
            ) from exc

    # ------------------------------------------------------------------------ help
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Bare ``arenajudge`` asks what there is: the help on stdout, exit 0, as ``gh``,
        ``docker`` and ``cargo`` do (click's own answer is a usage error, which the
        one-line error format would squash into one line)."""
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with the first sentence of its help, wrapped, never cut (click
        cuts at the column's width, mid-sentence, with "...")."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.short_help or _first_sentence(command.help or "")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _first_sentence(text: str) -> str:
    """The first sentence of a help text's first paragraph (one ending in ., ! or ?
    before a capital letter or the end; "e.g. x" does not end one)."""
    paragraph = " ".join(inspect.cleandoc(text).split("\n\n")[0].split())
    match = re.match(r"(.+?[.!?])(?=\s+[A-Z`]|$)", paragraph)
    return match.group(1) if match else paragraph


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
from arenajudge.cli import (  # noqa: E402
    data_commands,  # noqa: F401
    demo_commands,  # noqa: F401
    env_commands,  # noqa: F401
    leaderboard_commands,  # noqa: F401
    report_commands,  # noqa: F401
    scoring_commands,  # noqa: F401
    serve_commands,  # noqa: F401
    training_commands,  # noqa: F401
    transformer_commands,  # noqa: F401
    winrate_commands,  # noqa: F401
    workflow_commands,  # noqa: F401
)

__all__ = ["main"]
