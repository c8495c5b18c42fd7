"""Parsing a raw frame's columns into typed arrays, collecting every problem.

:class:`FrameReader` turns one frame (a whole file, or one block of a streamed file)
column by column into ids, turns, labels and names; a bad cell becomes an error in
:class:`Problems` naming its file, row id (or row) and column, and reading goes on, so
that ``validate`` lists every problem. Which columns a layout reads is
:mod:`arenajudge.data.readers`'s business.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from arenajudge.data.cells import (
    CellError,
    SurrogateCounter,
    decode_json_cell,
    is_missing,
    turn_list,
)
from arenajudge.data.schema import LABELS, Turns
from arenajudge.errors import DataError

logger = logging.getLogger(__name__)

ALPACA_DRAWS = (0.0, 1.5)
BOTH_BAD_VALUES = ("tie (bothbad)", "both_bad")
WINNER_VALUES = {"model_a": 0, "model_b": 1, "tie": 2, **dict.fromkeys(BOTH_BAD_VALUES, 2)}
MAX_REPORTED_ERRORS = 200
_LABEL_TOLERANCE = 1e-6


@dataclass
class Problems:
    """Errors and warnings found while reading one file.

    Reading goes on after an error so that ``validate`` can list them all; only the
    first ``MAX_REPORTED_ERRORS`` are kept, ``n_errors`` counts every one.
    """

    file: str
    errors: list[DataError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_errors: int = 0

    def error(
        self,
        message: str,
        *,
        row_id: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.n_errors += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(
                DataError(message, file=self.file, row_id=row_id, row=row, column=column)
            )

    def warn(self, message: str) -> None:
        logger.warning("%s: %s", self.file, message)
        self.warnings.append(message)

    def raise_first(self) -> None:
        """Raise the first error, saying how many more there are."""
        if not self.errors:
            return
        first = self.errors[0]
        if self.n_errors > 1:
            first.message += (
                f" (and {self.n_errors - 1} more errors; "
                f"`arenajudge validate {self.file}` lists them)"
            )
        raise first


class FrameReader:
    """Parses one raw frame column by column, collecting problems; ``first_row`` is the
    position in the file of the frame's first row (a block of a streamed file)."""

    def __init__(self, frame: pd.DataFrame, problems: Problems, first_row: int = 0):
        self.frame = frame
        self.problems = problems
        self.first_row = first_row
        self.surrogates = SurrogateCounter()
        self.ids = self._ids()

    def _where(self, position: int | np.integer) -> dict[str, Any]:
        row_id = self.ids[position]
        return {"row_id": row_id} if row_id else {"row": self.first_row + position + 1}

    def _ids(self) -> np.ndarray:
        if "id" not in self.frame.columns:
            if "question_id" in self.frame.columns:
                return self._id_values(self.frame["question_id"], "question_id")
            if "chosen" in self.frame.columns:
                self.problems.warn("has no id column; rows are numbered from 1 as their ids")
                return self._row_numbers()
            if "output_1" in self.frame.columns:  # AlpacaEval's files never have ids
                return self._row_numbers()
            self.problems.error(
                "is missing; every row needs a unique id "
                "(map another column with --columns id=NAME)",
                column="id",
            )
            return np.array([""] * len(self.frame), dtype=object)
        return self._id_values(self.frame["id"], "id")

    def _row_numbers(self) -> np.ndarray:
        numbers = range(self.first_row + 1, self.first_row + len(self.frame) + 1)
        return np.array([str(i) for i in numbers], dtype=object)

    def _id_values(self, column: pd.Series, name: str) -> np.ndarray:
        ids = np.array(["" if is_missing(v) else str(v).strip() for v in column], dtype=object)
        for blank in np.flatnonzero(ids == ""):
            self.problems.error(
                "is empty; every row needs a unique id",
                row=self.first_row + blank + 1,
                column=name,
            )
        first_seen: dict[str, int] = {}
        for position, row_id in enumerate(ids):
            if not row_id:
                continue
            if row_id in first_seen:
                self.problems.error(
                    f"is a duplicate (first seen in row {first_seen[row_id]}); ids must be unique",
                    row_id=row_id,
                    column=name,
                )
            else:
                first_seen[row_id] = self.first_row + position + 1
        return ids

    def column(self, name: str, parse: Callable[[Any], Any], empty: Any = ()) -> list:
        values = []
        for position, raw in enumerate(self.frame[name].tolist()):
            try:
                values.append(parse(raw))
            except CellError as exc:
                self.problems.error(str(exc), column=name, **self._where(position))
                values.append(empty)
        return values

    def json_turns(self, name: str) -> list[Turns]:
        return self.column(name, lambda raw: turn_list(decode_json_cell(raw), self.surrogates))

    def optional_text(self, name: str) -> np.ndarray | None:
        if name not in self.frame.columns:
            return None
        return np.array(["" if is_missing(v) else str(v) for v in self.frame[name]], dtype=object)

    def _blank(self, name: str) -> bool:
        return all(is_missing(v) or str(v).strip() == "" for v in self.frame[name])

    def labels(self) -> np.ndarray | None:
        """Label rows, or None for unlabelled input: no label columns, or label columns
        that are blank in every row (a test file with its answers cleared). A label
        column blank in some rows only is an error for each such row."""
        present = [c for c in LABELS if c in self.frame.columns]
        if not present:
            has_winner = "winner" in self.frame.columns and not self._blank("winner")
            return self.winner_labels() if has_winner else None
        if all(self._blank(c) for c in present):
            return None
        if len(present) < len(LABELS):
            for missing in (c for c in LABELS if c not in present):
                self.problems.error(
                    "is missing; give all three label columns or none", column=missing
                )
            return None
        values = np.column_stack(
            [
                pd.to_numeric(self.frame[c].replace("", np.nan), errors="coerce").to_numpy(
                    dtype=float, na_value=np.nan
                )
                for c in LABELS
            ]
        )
        bad = (
            np.isnan(values).any(axis=1)
            | (values < 0).any(axis=1)
            | (np.abs(values.sum(axis=1) - 1) > _LABEL_TOLERANCE)
        )
        for position in np.flatnonzero(bad):
            raw = ", ".join(f"{c}={self.frame[c].iat[position]!r}" for c in LABELS)
            self.problems.error(
                f"labels {raw} are not one winner equal to 1 nor "
                "non-negative probabilities summing to 1",
                column=",".join(LABELS),
                **self._where(position),
            )
        values[bad] = 1 / 3
        return values

    def preference_labels(self) -> np.ndarray | None:
        """AlpacaEval ``preference`` as label rows: ``p`` in [1, 2] is output_2's (B's)
        share of the win, 1.5 and 0 (AlpacaEval's old code) are draws. None where the
        column is absent or blank in every row (outputs not yet annotated)."""
        if "preference" not in self.frame.columns or self._blank("preference"):
            return None

        def parse(raw: Any) -> np.ndarray:
            if is_missing(raw) or str(raw).strip() == "":
                raise CellError(
                    "is empty: the annotation has no preference (did it fail?); "
                    "remove or re-annotate the row"
                )
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = float("nan")
            if value in ALPACA_DRAWS:
                return np.array([0.0, 0.0, 1.0])
            if not 1.0 <= value <= 2.0:  # NaN fails too: an annotation that failed
                raise CellError(
                    f"is {raw!r}; expected a number from 1 (output_1 wins) to 2 "
                    "(output_2 wins), or 1.5 for a draw; remove or re-annotate "
                    "rows whose annotation failed"
                )
            return np.array([2.0 - value, value - 1.0, 0.0])

        return np.array(self.column("preference", parse, empty=np.full(3, 1 / 3)))

    def winner_labels(self) -> np.ndarray:
        def parse(raw: Any) -> int:
            key = "" if is_missing(raw) else str(raw).strip().lower()
            if key not in WINNER_VALUES:
                raise CellError(f"is {raw!r}; expected one of {', '.join(WINNER_VALUES)}")
            return WINNER_VALUES[key]

        classes = self.column("winner", parse, empty=2)
        return np.eye(len(LABELS))[classes]

    def both_bad(self) -> np.ndarray | None:
        """Ties voted "both bad", where the labels come from a ``winner`` column."""
        if "winner" not in self.frame.columns or set(LABELS) & set(self.frame.columns):
            return None
        return np.array(
            [str(v).strip().lower() in BOTH_BAD_VALUES for v in self.frame["winner"]], dtype=bool
        )
