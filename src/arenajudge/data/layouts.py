"""The layouts of a battles file: which one its columns hold, and what each implies.

:func:`detect_layout` picks the layout from the columns (after ``--columns``); a
votes-only file (model names and labels, no texts) is for the leaderboard alone, and
:func:`refuse_votes_only` is the one error every other reader gives it. The A/B order
of a preference pair is a function of the row (:func:`chosen_is_b`).
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from arenajudge.data.frame_reader import Problems
from arenajudge.data.schema import LABELS, Turns

KAGGLE_COLUMNS = ("prompt", "response_a", "response_b")
ARENA_COLUMNS = ("conversation_a", "conversation_b")
PAIR_COLUMNS = ("chosen", "rejected")
ALPACA_COLUMNS = ("instruction", "output_1", "output_2")
ALPACA_OUTPUT_COLUMNS = ("instruction", "output")
LAYOUTS = ("kaggle", "arena", "pairs", "alpaca", "votes")
"""The layouts :func:`detect_layout` names; ``votes`` has no texts."""
EXPECTED_LAYOUTS = (
    "expected prompt, response_a, response_b (Kaggle layout), "
    "conversation_a, conversation_b (arena conversations), prompt, chosen, rejected "
    "(preference pairs) or instruction, output_1, output_2 (AlpacaEval annotations)"
)
MAP_COLUMNS_HINT = (
    "Map yours with e.g. --columns prompt=question,response_a=answer1,response_b=answer2"
)


def detect_layout(frame: pd.DataFrame, problems: Problems) -> str | None:
    """The layout (one of :data:`LAYOUTS`) that ``frame``'s columns hold, or None after
    recording in ``problems`` why they hold none."""
    columns = set(frame.columns)
    for name, required in (
        ("kaggle", KAGGLE_COLUMNS),
        ("arena", ARENA_COLUMNS),
        ("pairs", PAIR_COLUMNS),
        ("alpaca", ALPACA_COLUMNS),
    ):
        if columns.issuperset(required):
            return name
    if "prompt" in columns and columns & {"response_a", "response_b"}:
        for missing in (c for c in KAGGLE_COLUMNS if c not in columns):
            problems.error(
                "is missing; the Kaggle layout needs prompt, response_a and "
                "response_b (map yours with --columns)",
                column=missing,
            )
        return None
    if columns.issuperset(("model_a", "model_b")) and columns & {"winner", *LABELS}:
        return "votes"
    if columns.issuperset(ALPACA_OUTPUT_COLUMNS):
        problems.error(
            "is an AlpacaEval model-outputs file (instruction, output, generator): "
            "it holds answers, not battles; `arenajudge winrate` pairs it with "
            "the baseline's outputs (give both files and --baseline NAME)"
        )
        return None
    problems.error(
        f"has no battle columns: {EXPECTED_LAYOUTS}, or model_a, model_b, winner "
        f"(votes only, for a leaderboard); found {_found(frame)}. "
        f"{MAP_COLUMNS_HINT}"
    )
    return None


def _found(frame: pd.DataFrame) -> str:
    return ", ".join(map(str, frame.columns)) or "(none)"


def refuse_votes_only(frame: pd.DataFrame, problems: Problems) -> None:
    """Record that ``frame``, votes only, cannot serve a command that needs texts: read
    on, its texts would be empty and a model would give every row the same answer."""
    problems.error(
        f"has votes (model_a, model_b, labels) but no battle texts, which this "
        f"command needs: {EXPECTED_LAYOUTS}; found {_found(frame)}. Votes only "
        f"serve `arenajudge leaderboard` (without --model or --style-control). "
        f"{MAP_COLUMNS_HINT}"
    )


def chosen_is_b(prompt: Turns, chosen: Turns, rejected: Turns) -> bool:
    """Whether a preference pair puts ``chosen`` on side B: one bit of a hash of the
    pair's texts. A function of the row alone, so that every read of it (another seed,
    block, file order or format) lines up with predictions, OOF and teacher files written
    from an earlier one; the hash spreads the pairs about evenly between the two sides."""
    text = json.dumps([prompt, chosen, rejected], ensure_ascii=False)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return bool(digest[-1] & 1)
