"""Readers: files in any supported layout -> validated :class:`Battles`.

Files of any format (:mod:`arenajudge.data.tables`) hold one of these layouts (which one,
:mod:`arenajudge.data.layouts` tells), whose cells :mod:`arenajudge.data.cells` parses:

* Kaggle: ``id, prompt, response_a, response_b`` as JSON lists of turns, optional
  ``model_a, model_b`` and labels ``winner_model_a, winner_model_b, winner_tie``
  (or one ``winner`` column);
* arena conversations: ``conversation_a, conversation_b`` as lists of
  ``{role, content}`` messages and ``winner`` in {model_a, model_b, tie, tie (bothbad)};
* preference pairs: ``prompt, chosen, rejected`` (text, lists of turns or message
  lists), each placed in an A/B order that a hash of its texts picks, so that the labels
  stay balanced and a row is in the same order whatever the block or file format;
* AlpacaEval annotations (``annotations.json``): ``instruction, output_1, output_2``,
  ``generator_1, generator_2`` as the model names and ``preference`` (1: output_1 wins,
  2: output_2 wins, soft values between, 1.5 or 0 a draw) as the labels;
* votes only: ``model_a, model_b`` and labels (e.g. arena ``winner``) without texts,
  enough for a leaderboard and for nothing else: a reader told that texts are needed
  (the default) refuses it, as it would otherwise score empty texts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arenajudge.data.cells import (
    CellError,
    SurrogateCounter,
    decode_json_cell,
    is_missing,
    message_turns,
    pair_cell,
    turn_list,
)
from arenajudge.data.layouts import chosen_is_b, detect_layout, refuse_votes_only
from arenajudge.data.schema import LABELS, Battles, Turns
from arenajudge.data.tables import read_table
from arenajudge.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

CANONICAL_COLUMNS = (
    "id",
    "prompt",
    "response_a",
    "response_b",
    "model_a",
    "model_b",
    *LABELS,
    "winner",
    "source",
    "conversation_a",
    "conversation_b",
    "chosen",
    "rejected",
    "instruction",
    "output_1",
    "output_2",
    "generator_1",
    "generator_2",
    "preference",
)
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


# --------------------------------------------------------------------------- options
def parse_columns_option(text: str | None) -> dict[str, str]:
    """Parse ``--columns prompt=question,response_a=answer1`` into {canonical: actual}."""
    if not text:
        return {}
    mapping = {}
    for item in text.split(","):
        name, sep, actual = item.partition("=")
        name, actual = name.strip(), actual.strip()
        if not sep or not name or not actual:
            raise ConfigError(
                f"--columns item {item!r} is not NAME=COLUMN; "
                "write e.g. --columns prompt=question,response_a=answer1"
            )
        mapping[name] = actual
    return mapping


def _apply_column_mapping(
    frame: pd.DataFrame, columns: Mapping[str, str], path: Path
) -> pd.DataFrame:
    unknown = sorted(set(columns) - set(CANONICAL_COLUMNS))
    if unknown:
        raise ConfigError(
            f"--columns names unknown field(s) {', '.join(unknown)}; "
            f"known fields: {', '.join(CANONICAL_COLUMNS)}"
        )
    absent = [actual for actual in columns.values() if actual not in frame.columns]
    if absent:
        raise DataError(
            f"has no column(s) {', '.join(map(repr, absent))} named in --columns; "
            f"found: {', '.join(map(str, frame.columns))}",
            file=path,
        )
    renamed = frame.rename(columns={actual: name for name, actual in columns.items()})
    if renamed.columns.duplicated().any():
        dupes = sorted(set(renamed.columns[renamed.columns.duplicated()]))
        raise DataError(
            f"has several columns called {', '.join(dupes)} after --columns; "
            "map each field from one column",
            file=path,
        )
    return renamed


# --------------------------------------------------------------------------- columns
class _Reader:
    """Parses one raw frame column by column, collecting problems; ``first_row`` is the
    position in the file of the frame's first row (a block of a streamed file)."""

    def __init__(self, frame: pd.DataFrame, problems: Problems, first_row: int = 0):
        self.frame = frame
        self.problems = problems
        self.first_row = first_row
        self.surrogates = SurrogateCounter()
        self.ids = self._ids()

    def _where(self, position: int) -> dict:
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
        for position in np.flatnonzero(ids == ""):
            self.problems.error(
                "is empty; every row needs a unique id",
                row=self.first_row + position + 1,
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
        def parse(raw):
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


def _kaggle(reader: _Reader) -> tuple[list, list, list]:
    return (
        reader.json_turns("prompt"),
        reader.json_turns("response_a"),
        reader.json_turns("response_b"),
    )


def _arena(reader: _Reader) -> tuple[list, list, list]:
    def conversation(raw):
        return message_turns(decode_json_cell(raw), reader.surrogates)

    side_a = reader.column("conversation_a", conversation, empty=((), ()))
    side_b = reader.column("conversation_b", conversation, empty=((), ()))
    return [a[0] for a in side_a], [a[1] for a in side_a], [b[1] for b in side_b]


def _alpaca(reader: _Reader) -> tuple[list, list, list]:
    def text(raw: Any) -> Turns:
        return pair_cell(raw, reader.surrogates)[1]

    return (
        reader.column("instruction", text),
        reader.column("output_1", text),
        reader.column("output_2", text),
    )


def _pairs(reader: _Reader) -> tuple[list, list, list, np.ndarray]:
    """Prompt, response A, response B and labels of chosen/rejected pairs, each in the
    A/B order :func:`chosen_is_b` gives it."""

    def side(raw):
        return pair_cell(raw, reader.surrogates)

    def prompt_cell(raw):
        user, turns = pair_cell(raw, reader.surrogates)
        return turns if user is None else user

    chosen = reader.column("chosen", side, empty=(None, ()))
    rejected = reader.column("rejected", side, empty=(None, ()))
    if "prompt" in reader.frame.columns:
        prompt = reader.column("prompt", prompt_cell)
    else:
        prompt = [user or () for user, _ in chosen]
    pairs = list(zip((c[1] for c in chosen), (r[1] for r in rejected)))
    flips = np.array([chosen_is_b(p, c, r) for p, (c, r) in zip(prompt, pairs)], dtype=bool)
    response_a = [r if flip else c for (c, r), flip in zip(pairs, flips)]
    response_b = [c if flip else r for (c, r), flip in zip(pairs, flips)]
    return prompt, response_a, response_b, np.eye(len(LABELS))[flips.astype(int)]


def load_battles(
    path: str | Path,
    problems: Problems,
    *,
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
    needs_texts: bool = True,
) -> Battles | None:
    """Read ``path`` collecting every problem into ``problems``.

    Returns ``None`` when the file cannot be parsed into battles at all. Unreadable
    files raise :class:`DataError` straight away. ``needs_texts`` as for
    :func:`read_battles`.
    """
    path = Path(path)
    return parse_frame(
        read_table(path, format), path, problems, columns=columns, needs_texts=needs_texts
    )


def parse_frame(
    frame: pd.DataFrame,
    path: str | Path,
    problems: Problems,
    *,
    columns: Mapping[str, str] | None = None,
    first_row: int = 0,
    needs_texts: bool = True,
) -> Battles | None:
    """Battles from a raw frame as :func:`read_table` gives it, e.g. one block of a file
    read in a stream whose first row is row ``first_row`` (0-based) of the file: row
    numbers in messages then match the whole file's. ``path`` names the file in
    messages. ``needs_texts`` as for :func:`read_battles`."""
    path = Path(path)
    frame = _apply_column_mapping(frame, columns or {}, path)
    layout = detect_layout(frame, problems)
    if layout == "votes" and needs_texts:
        refuse_votes_only(frame, problems)
        return None
    if layout is None:
        return None
    if len(frame) == 0:
        problems.error("has no rows; it needs at least one battle")
        return None
    if layout == "alpaca":  # the generators name the models, output_1 is side A
        frame = frame.rename(columns={"generator_1": "model_a", "generator_2": "model_b"})
    reader = _Reader(frame, problems, first_row)
    target = None
    if layout == "kaggle":
        prompt, response_a, response_b = _kaggle(reader)
    elif layout == "arena":
        prompt, response_a, response_b = _arena(reader)
    elif layout == "alpaca":
        prompt, response_a, response_b = _alpaca(reader)
        target = reader.preference_labels()
    elif layout == "votes":
        prompt, response_a, response_b = ([()] * len(frame) for _ in range(3))
    else:
        prompt, response_a, response_b, target = _pairs(reader)
    if target is None and layout != "alpaca":
        target = reader.labels()
    if reader.surrogates.count:
        problems.warn(f"replaced {reader.surrogates.count} lone surrogate escape(s) with U+FFFD")
    return Battles(
        id=reader.ids,
        prompt=prompt,
        response_a=response_a,
        response_b=response_b,
        model_a=reader.optional_text("model_a"),
        model_b=reader.optional_text("model_b"),
        target=target,
        source=reader.optional_text("source"),
        path=str(path),
        repaired_surrogates=reader.surrogates.count,
        both_bad=reader.both_bad(),
        layout=layout,
    )


def read_battles(
    path: str | Path,
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
    *,
    needs_texts: bool = True,
) -> Battles:
    """Read and validate a battles file.

    Parameters
    ----------
    path : str or Path
        A ``.csv``, ``.csv.gz``, ``.jsonl``, ``.json`` or ``.parquet`` file.
    format : {"csv", "jsonl", "json", "parquet"}, optional
        Overrides the format implied by the extension.
    columns : mapping, optional
        ``{field: column in the file}``, e.g. ``{"prompt": "question"}``.
    needs_texts : bool, default=True
        Whether the caller uses the texts. A votes-only file (``model_a, model_b`` and
        labels, no texts) is refused unless False, as for a leaderboard from votes.

    Raises
    ------
    DataError
        On the first problem found (its message counts the others).
    """
    problems = Problems(str(path))
    battles = load_battles(path, problems, format=format, columns=columns, needs_texts=needs_texts)
    problems.raise_first()
    assert battles is not None  # no errors means the layout was found and rows parsed
    return battles
