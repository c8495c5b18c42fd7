"""Exceptions raised by arenajudge.

Library code raises these; only the CLI prints them, once, as
``error: <file>: row id <id>: column <col>: <message>`` with the parts that apply.
"""

from __future__ import annotations

from pathlib import Path


class ArenaJudgeError(Exception):
    """Base class of every error a user can cause and fix.

    Parameters
    ----------
    message : str
        What is wrong and what to do about it.
    file : str or Path, optional
        The input or output file concerned.
    row_id : str, optional
        The ``id`` of the offending row; ``row`` (1-based data row number) is used
        when the row has no usable id.
    column : str, optional
        The column concerned.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row_id: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = None if file is None else str(file)
        self.row_id = row_id
        self.row = row
        self.column = column

    def location(self) -> str:
        """The ``file: row id X: column Y`` prefix, parts that do not apply left out."""
        parts = []
        if self.file is not None:
            parts.append(self.file)
        if self.row_id is not None:
            parts.append(f"row id {self.row_id}")
        elif self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column {self.column}")
        return ": ".join(parts)

    def __str__(self) -> str:
        where = self.location()
        return f"{where}: {self.message}" if where else self.message


class DataError(ArenaJudgeError):
    """The input data cannot be read or does not follow the battle schema."""


class ConfigError(ArenaJudgeError):
    """A configuration value or command-line option is invalid."""


class ModelLoadError(ArenaJudgeError):
    """A saved model directory is missing, corrupt or from an incompatible version."""


class NotFittedError(ArenaJudgeError, ValueError):
    """A model was used before ``fit``."""


class MissingDependencyError(ArenaJudgeError, ImportError):
    """An optional dependency (an extra) is not installed."""


class OutputError(ArenaJudgeError):
    """An output cannot be written there, or what would be written is not valid."""


class OutputExistsError(OutputError):
    """An output path exists and ``--force`` was not given."""
