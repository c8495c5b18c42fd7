"""Readers: files in any supported layout -> validated :class:`Battles`.

Files of any format (:mod:`arenajudge.data.tables`) hold one of these layouts (which one,
:mod:`arenajudge.data.layouts` tells), whose columns
:class:`~arenajudge.data.frame_reader.FrameReader` parses:

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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from arenajudge.data.cells import decode_json_cell, message_turns, pair_cell
from arenajudge.data.frame_reader import FrameReader, Problems
from arenajudge.data.layouts import chosen_is_b, detect_layout, refuse_votes_only
from arenajudge.data.schema import LABELS, Battles, Turns
from arenajudge.data.tables import read_table
from arenajudge.errors import ConfigError, DataError

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


# --------------------------------------------------------------------------- layouts


def _kaggle(reader: FrameReader) -> tuple[list, list, list]:
    return (
        reader.json_turns("prompt"),
        reader.json_turns("response_a"),
        reader.json_turns("response_b"),
    )


def _arena(reader: FrameReader) -> tuple[list, list, list]:
    def conversation(raw: Any) -> tuple[Turns, Turns]:
        return message_turns(decode_json_cell(raw), reader.surrogates)

    side_a = reader.column("conversation_a", conversation, empty=((), ()))
    side_b = reader.column("conversation_b", conversation, empty=((), ()))
    return [a[0] for a in side_a], [a[1] for a in side_a], [b[1] for b in side_b]


def _alpaca(reader: FrameReader) -> tuple[list, list, list]:
    def text(raw: Any) -> Turns:
        return pair_cell(raw, reader.surrogates)[1]

    return (
        reader.column("instruction", text),
        reader.column("output_1", text),
        reader.column("output_2", text),
    )


def _pairs(reader: FrameReader) -> tuple[list, list, list, np.ndarray]:
    """Prompt, response A, response B and labels of chosen/rejected pairs, each in the
    A/B order :func:`chosen_is_b` gives it."""

    def side(raw: Any) -> tuple[Turns | None, Turns]:
        return pair_cell(raw, reader.surrogates)

    def prompt_cell(raw: Any) -> Turns:
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
    reader = FrameReader(frame, problems, first_row)
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
