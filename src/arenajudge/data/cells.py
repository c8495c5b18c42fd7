"""One cell of a battles file -> turns, whatever the file format stored it as.

A cell reaches the parsers as one of:

* text (CSV always; JSONL and parquet string columns);
* a native list (JSONL arrays; parquet ``list<string>`` columns, which pandas gives as
  numpy arrays);
* a native message list (JSONL arrays of objects; parquet ``list<struct<role,
  content>>`` columns, numpy arrays of dicts whose values may be numpy arrays again,
  e.g. multimodal ``content`` lists of ``{type, text}`` parts).

:func:`native` turns the numpy forms into plain Python first, so every later check sees
``list``/``dict``/``str`` only.

What text means depends on the column:

* Kaggle ``prompt/response_a/response_b`` and arena ``conversation_a/_b``: text is JSON
  (a list of turns, a list of messages), as in the Kaggle CSV files.
* pairs ``prompt/chosen/rejected``: text is ONE turn, verbatim, even when it looks like
  JSON (``"[1, 2, 3]"``, ``'["Ann", "Bob"]'``): a response may well be JSON. The one
  exception is text holding a JSON message list, ``[{"role": ..., "content": ...}, ...]``
  with both keys in every object: CSV has no other way to store a conversation, and no
  plain answer is likely to be exactly that, so it is read as the messages.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from arenajudge import safe_json
from arenajudge.data.schema import Turns

_SURROGATE = re.compile("[\ud800-\udfff]")
_MESSAGE_LIST_START = re.compile(r"\s*\[\s*\{")
EXAMPLE_CELL = '["first turn", "second turn"]'
ASSISTANT_ROLES = ("assistant", "gpt", "bot", "model")
USER_ROLES = ("user", "human")


class CellError(ValueError):
    """A cell does not hold what its column needs; the message says what it holds."""


class SurrogateCounter:
    """Counts the lone surrogates replaced while parsing one file."""

    def __init__(self) -> None:
        self.count = 0

    def repair(self, text: str) -> str:
        if text.isascii():
            return text
        repaired, n = _SURROGATE.subn("\ufffd", text)
        self.count += n
        return repaired


def repair_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (from a JSON escape such as ``"\\ud800"``) as U+FFFD."""
    return SurrogateCounter().repair(text)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def native(value: Any) -> Any:
    """``value`` with numpy arrays (at any depth, inside dicts too) as lists and numpy
    scalars as Python scalars: what pyarrow's ``to_pandas`` gives for parquet lists and
    structs, made to look like decoded JSON."""
    if isinstance(value, np.ndarray):
        return [native(item) for item in value]
    if isinstance(value, dict):
        return {key: native(item) for key, item in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _kind(value: Any) -> str:
    return {
        list: "list",
        dict: "object",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
    }.get(type(value), type(value).__name__)


def turn_list(value: Any, surrogates: SurrogateCounter) -> Turns:
    """A list of turns (strings; ``None`` is an empty turn) as a tuple of strings."""
    if not isinstance(value, list):
        raise CellError(
            f"holds a {_kind(value)}, not a list of turns; expected e.g. {EXAMPLE_CELL}"
        )
    turns = []
    for turn in value:
        if turn is None:
            turns.append("")
        elif isinstance(turn, str):
            turns.append(surrogates.repair(turn))
        else:
            raise CellError(
                f"has a turn that is a {_kind(turn)}, not a string; expected e.g. {EXAMPLE_CELL}"
            )
    return tuple(turns)


def decode_json_cell(value: Any) -> Any:
    """A Kaggle or arena cell as Python: text is decoded as JSON, native values pass."""
    value = native(value)
    if is_missing(value) or value == "":
        raise CellError(
            f"is empty; expected a JSON list of turns such as {EXAMPLE_CELL} ([] for no turns)"
        )
    if not isinstance(value, str):
        return value
    try:
        return safe_json.loads(value)
    except safe_json.JSONProblem as exc:
        snippet = value[:40] + ("…" if len(value) > 40 else "")
        raise CellError(
            f"is {exc} in {snippet!r}; expected a JSON list of turns such as {EXAMPLE_CELL}"
        ) from None


def _content_text(content: Any) -> str | None:
    if isinstance(content, list):  # multimodal content parts: keep the text parts
        parts = [
            part if isinstance(part, str) else part.get("text") or ""
            for part in content
            if isinstance(part, (str, dict))
        ]
        return "\n".join(parts)
    if content is not None and not isinstance(content, str):
        raise CellError(f"holds a message whose content is a {_kind(content)}")
    return content


def message_turns(messages: Any, surrogates: SurrogateCounter) -> tuple[Turns, Turns]:
    """Split ``[{role, content}, ...]`` into (user turns, assistant turns)."""
    if not isinstance(messages, list):
        raise CellError(f"holds a {_kind(messages)}, not a list of {{role, content}} messages")
    user, assistant = [], []
    for message in messages:
        if not isinstance(message, dict) or "content" not in message:
            raise CellError("holds a message that is not a {role, content} object")
        text = surrogates.repair(_content_text(message["content"]) or "")
        role = str(message.get("role", "")).lower()
        if role in ASSISTANT_ROLES:
            assistant.append(text)
        elif role in USER_ROLES:
            user.append(text)
        elif role != "system":
            raise CellError(
                f"holds a message with unknown role {role!r}; expected user, assistant or system"
            )
    return tuple(user), tuple(assistant)


def _is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def _text_message_list(text: str) -> list | None:
    """The messages of text holding a JSON message list, else None (see module doc)."""
    if not _MESSAGE_LIST_START.match(text):
        return None
    try:
        value = safe_json.loads(text)
    except safe_json.JSONProblem:
        return None
    if _is_message_list(value) and all({"role", "content"} <= m.keys() for m in value):
        return value
    return None


def pair_cell(value: Any, surrogates: SurrogateCounter) -> tuple[Turns | None, Turns]:
    """A pairs-layout cell: text (one turn), a native list of turns, or a message list.

    Returns (user turns, other turns): user turns are ``None`` unless the cell is a
    message list, whose assistant turns are then the other turns.
    """
    value = native(value)
    if is_missing(value):
        raise CellError("is empty")
    if isinstance(value, str):
        messages = _text_message_list(value)
        if messages is None:
            return None, (surrogates.repair(value),)
        value = messages
    if _is_message_list(value):
        return message_turns(value, surrogates)
    return None, turn_list(value, surrogates)
