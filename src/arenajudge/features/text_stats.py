"""Cheap statistics of one text each: length, structure, markdown, refusals, script.

Each function maps a list of n texts to an (n, k) float32 array whose columns are
named by the matching ``*_NAMES`` tuple. The loops stay in C (``str`` methods and
compiled regexes), which keeps them fast enough for the prediction hot path.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import numpy as np

from arenajudge.features.words import Words, arrow_strings

# Multi-line patterns carry an inline (?m) so that both Python's re and Arrow's RE2
# read them alike; RE2 counts them over all texts in one C++ pass each.
_PATTERNS = {
    "headers": r"(?m)^#{1,6} ",
    "bullets": r"(?m)^\s*[-*+•] ",
    "numbered": r"(?m)^\s*\d+[.)] ",
    "bold": r"\*\*[^*\n]+\*\*|__[^_\n]+__",
    "code_blocks": r"(?m)^\s*```",
    "inline_code": r"`[^`\n]+`",
    "table_rows": r"(?m)^\s*\|.*\|\s*$",
    "links": r"https?://|\]\(",
}
# Phrases are matched in the lower-cased opening of a text, where refusals and
# apologies sit.
_OPENING_CHARS = 600
_PHRASES = {
    "refusal": (
        "i'm sorry",
        "i am sorry",
        "i cannot",
        "i can't",
        "i can not",
        "i won't",
        "i'm unable",
        "i am unable",
        "i'm not able",
        "i am not able",
        "as an ai",
        "language model",
        "i must decline",
        "i'm not comfortable",
        "not appropriate",
    ),
    "apology": ("sorry", "apologi"),
    "openers": ("sure", "certainly", "of course", "absolutely", "great question", "yes"),
}
_HEDGES = (" however", " although", " it depends", " may ", " might ", " generally")
_SCRIPTS = {
    "cyrillic": re.compile(r"[\u0400-\u04ff]"),
    "cjk": re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]"),
    "other_letters": re.compile(r"[\u00c0-\u024f\u0370-\u03ff\u0590-\u08ff\u0900-\u0eff]"),
}
_HEAD_CHARS = 2000
_ASCII_LETTERS = string.ascii_letters.encode()
_UPPER = string.ascii_uppercase.encode()
_DIGITS = string.digits.encode()
_Item = TypeVar("_Item", str, bytes)

LENGTH_NAMES = (
    "log_chars",
    "log_words",
    "log_lines",
    "paragraphs",
    "mean_word_len",
    "unique_word_share",
    "questions",
    "exclamations",
    "digits_share",
    "upper_share",
    "empty",
)
MARKDOWN_NAMES = tuple(_PATTERNS) + tuple(_PHRASES) + ("hedges",)
SCRIPT_NAMES = ("latin_share",) + tuple(f"{name}_share" for name in _SCRIPTS) + ("non_ascii_share",)
TEXT_STAT_NAMES = LENGTH_NAMES + MARKDOWN_NAMES + SCRIPT_NAMES


def _count_bytes(data: bytes, alphabet: bytes) -> int:
    return len(data) - len(data.translate(None, alphabet))


def _counts(items: Sequence[_Item], count: Callable[[_Item], float]) -> np.ndarray:
    """``count`` of each of ``items`` (texts or their UTF-8 bytes), shape (n,), float32."""
    return np.fromiter((count(t) for t in items), dtype=np.float32, count=len(items))


def length_stats(texts: list[str], words: Words | None = None) -> np.ndarray:
    """Length and shape statistics, shape (n, len(LENGTH_NAMES)); ``words`` may pass
    the :class:`Words` of ``texts`` when the caller has them already."""
    words = words if words is not None else Words.split(texts)
    raw = [t.encode("utf-8", "surrogatepass") for t in texts]
    chars = _counts(texts, len)
    safe_chars = np.maximum(chars, 1)
    word_counts = words.counts
    safe_words = np.maximum(word_counts, 1)
    return np.column_stack(
        [
            np.log1p(chars),
            np.log1p(word_counts),
            np.log1p(_counts(texts, lambda t: t.count("\n"))),
            _counts(texts, lambda t: t.count("\n\n")),
            words.per_text_sum(words.word_lengths) / safe_words,
            words.distinct_lower_counts / safe_words,
            _counts(texts, lambda t: t.count("?")),
            _counts(texts, lambda t: t.count("!")),
            _counts(raw, lambda b: _count_bytes(b, _DIGITS)) / safe_chars,
            _counts(raw, lambda b: _count_bytes(b, _UPPER)) / safe_chars,
            _counts(texts, lambda t: not t.strip()),
        ]
    ).astype(np.float32)


def _any_of(phrases: tuple[str, ...]) -> str:
    return "|".join(map(re.escape, phrases))


def markdown_stats(texts: list[str]) -> np.ndarray:
    """Counts of markdown elements; refusal, apology and opener flags; hedges, shape (n, k)."""
    import pyarrow.compute as pc

    array = arrow_strings(texts)
    openings = pc.utf8_lower(pc.utf8_slice_codeunits(array, 0, _OPENING_CHARS))
    columns = [pc.count_substring_regex(array, pattern) for pattern in _PATTERNS.values()]
    columns += [
        pc.match_substring_regex(openings, _any_of(phrases)) for phrases in _PHRASES.values()
    ]
    columns.append(pc.count_substring_regex(pc.utf8_lower(array), _any_of(_HEDGES)))
    return np.column_stack([np.asarray(c, dtype=np.float32) for c in columns])


def _script_chars(pattern: re.Pattern[str], text: str) -> int:
    return 0 if text.isascii() else len(pattern.findall(text))


def script_stats(texts: list[str]) -> np.ndarray:
    """Share of each writing system among the first 2,000 characters, shape (n, k)."""
    heads = [t[:_HEAD_CHARS] for t in texts]
    sizes = np.maximum(_counts(heads, len), 1)
    latin = _counts(
        heads, lambda t: _count_bytes(t.encode("utf-8", "surrogatepass"), _ASCII_LETTERS)
    )
    shares = [latin / sizes]
    shares += [_counts(heads, partial(_script_chars, p)) / sizes for p in _SCRIPTS.values()]
    shares.append(
        _counts(heads, lambda t: 0 if t.isascii() else len(t) - len(t.encode("ascii", "ignore")))
        / sizes
    )
    return np.column_stack(shares).astype(np.float32)


def text_stats(texts: list[str], words: Words | None = None) -> np.ndarray:
    """All statistics, shape (n, len(TEXT_STAT_NAMES)); ``words`` as in :func:`length_stats`."""
    return np.hstack([length_stats(texts, words), markdown_stats(texts), script_stats(texts)])


# Instruction-following signals. A prompt that asks for "three tips" or "2 sentences"
# can be checked cheaply; the first word tells an instruction ("Write ...") from a
# question or a chat turn, which lets trees trust length only where it predicts.
_NUMBER_WORDS = {
    "one": 1,
    "single": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
_REQUEST = re.compile(
    r"\b(\d{1,3}|" + "|".join(_NUMBER_WORDS) + r")[\s-]+(?:[a-z]+[\s-]+)?"
    r"(sentence|word|paragraph|line|item|point|example|way|tip|step|reason|idea|question"
    r"|name|thing)s?\b",
    re.I,
)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)]) ", re.M)
_IMPERATIVES = frozenset(
    [
        "write",
        "generate",
        "create",
        "give",
        "summarize",
        "summarise",
        "describe",
        "complete",
        "respond",
        "rewrite",
        "make",
        "design",
        "provide",
        "list",
        "name",
        "explain",
        "classify",
        "identify",
        "translate",
        "find",
        "suggest",
        "compose",
        "edit",
        "convert",
        "construct",
        "brainstorm",
        "compare",
        "analyze",
        "analyse",
        "produce",
        "develop",
        "categorize",
        "calculate",
        "select",
        "choose",
        "paraphrase",
        "correct",
        "fill",
        "answer",
        "tell",
        "output",
        "sort",
        "arrange",
        "evaluate",
        "predict",
        "formulate",
        "imagine",
        "use",
        "rank",
        "reword",
        "rephrase",
        "add",
        "change",
        "determine",
        "outline",
        "propose",
        "plan",
        "recommend",
        "transform",
        "come",
        "draft",
        "pretend",
        "act",
        "assume",
        "read",
        "extract",
        "detect",
    ]
)


def _unit_count(text: str, unit: str) -> int:
    if unit == "word":
        return len(text.split())
    if unit == "sentence":
        return max(len(_SENTENCE_END.findall(text.rstrip() + " ")), bool(text.strip()))
    if unit == "paragraph":
        return sum(bool(p.strip()) for p in _PARAGRAPH_BREAK.split(text))
    lines = sum(bool(line.strip()) for line in text.splitlines())
    if unit == "line":
        return lines
    items = len(_LIST_ITEM.findall(text))
    return items or (lines if lines > 1 else text.count(",") + bool(text.strip()))


def count_requests(prompts: list[str]) -> list[tuple[int, str] | None]:
    """The first "N units" request of each prompt ("three tips" -> (3, "tip")), or None."""
    requests: list[tuple[int, str] | None] = []
    for prompt in prompts:
        match = _REQUEST.search(prompt)
        if match is None:
            requests.append(None)
            continue
        number, unit = match.group(1).lower(), match.group(2).lower()
        requests.append((int(number) if number.isdigit() else _NUMBER_WORDS[number], unit))
    return requests


def count_miss(requests: list[tuple[int, str] | None], texts: list[str]) -> np.ndarray:
    """|log((count + 1) / (requested + 1))| of each text, -1 where nothing was requested
    (a sentinel rather than NaN keeps feature matrices finite)."""
    return np.fromiter(
        (
            -1.0
            if request is None
            else abs(np.log((_unit_count(text, request[1]) + 1) / (request[0] + 1)))
            for request, text in zip(requests, texts)
        ),
        dtype=np.float32,
        count=len(texts),
    )


def instruction_flags(prompts: list[str], requests: list[tuple[int, str] | None]) -> np.ndarray:
    """Whether the last prompt turn opens with an imperative verb, and whether it asks for
    a count (``requests``: its :func:`count_requests`), shape (n, 2)."""
    first = [t.split(maxsplit=1)[0].strip(",.:!").lower() if t.strip() else "" for t in prompts]
    return np.column_stack(
        [
            _counts(first, lambda w: w in _IMPERATIVES),
            [request is not None for request in requests],
        ]
    ).astype(np.float32)
