"""Cheap statistics of one text each: length, structure, markdown, refusals, script.

Each function maps a list of n texts to an (n, k) float32 array whose columns are
named by the matching ``*_NAMES`` tuple. The loops stay in C (``str`` methods and
compiled regexes), which keeps them fast enough for the prediction hot path.
"""

from __future__ import annotations

import re
import string

import numpy as np

_PATTERNS = {
    "headers": re.compile(r"^#{1,6} ", re.M),
    "bullets": re.compile(r"^\s*[-*+•] ", re.M),
    "numbered": re.compile(r"^\s*\d+[.)] ", re.M),
    "bold": re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),
    "code_blocks": re.compile(r"^\s*```", re.M),
    "inline_code": re.compile(r"`[^`\n]+`"),
    "table_rows": re.compile(r"^\s*\|.*\|\s*$", re.M),
    "links": re.compile(r"https?://|\]\("),
}
# A pattern can only match a text holding one of its trigger substrings; the C-speed
# `in` test skips most regex scans (plain prose has no "#", "|", "`" or "**").
_TRIGGERS = {"headers": ("#",), "bold": ("**", "__"), "code_blocks": ("```",),
             "inline_code": ("`",), "table_rows": ("|",), "links": ("://", "](")}
# Phrases are matched in the lower-cased opening of a text, where refusals and
# apologies sit; substring tests are ~20x faster than one case-insensitive regex.
_OPENING_CHARS = 600
_PHRASES = {
    "refusal": ("i'm sorry", "i am sorry", "i cannot", "i can't", "i can not", "i won't",
                "i'm unable", "i am unable", "i'm not able", "i am not able", "as an ai",
                "language model", "i must decline", "i'm not comfortable", "not appropriate"),
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

LENGTH_NAMES = ("log_chars", "log_words", "log_lines", "paragraphs", "mean_word_len",
                "unique_word_share", "questions", "exclamations", "digits_share",
                "upper_share", "empty")
MARKDOWN_NAMES = tuple(_PATTERNS) + tuple(_PHRASES) + ("hedges",)
SCRIPT_NAMES = ("latin_share",) + tuple(f"{name}_share" for name in _SCRIPTS) + (
    "non_ascii_share",)
TEXT_STAT_NAMES = LENGTH_NAMES + MARKDOWN_NAMES + SCRIPT_NAMES


def _count_bytes(data: bytes, alphabet: bytes) -> int:
    return len(data) - len(data.translate(None, alphabet))


def _counts(texts: list[str], count) -> np.ndarray:
    return np.fromiter((count(t) for t in texts), dtype=np.float32, count=len(texts))


def length_stats(texts: list[str], words: list[list[str]] | None = None) -> np.ndarray:
    """Length and shape statistics, shape (n, len(LENGTH_NAMES)); ``words`` may pass
    ``t.split()`` of each text when the caller has it already."""
    words = words if words is not None else [t.split() for t in texts]
    raw = [t.encode("utf-8", "surrogatepass") for t in texts]
    chars = _counts(texts, len)
    safe_chars = np.maximum(chars, 1)
    safe_words = np.maximum(_counts(words, len), 1)
    return np.column_stack([
        np.log1p(chars), np.log1p(_counts(words, len)),
        np.log1p(_counts(texts, lambda t: t.count("\n"))),
        _counts(texts, lambda t: t.count("\n\n")),
        _counts(words, lambda ws: sum(map(len, ws))) / safe_words,
        _counts(words, lambda ws: len(set(ws))) / safe_words,
        _counts(texts, lambda t: t.count("?")), _counts(texts, lambda t: t.count("!")),
        _counts(raw, lambda b: _count_bytes(b, _DIGITS)) / safe_chars,
        _counts(raw, lambda b: _count_bytes(b, _UPPER)) / safe_chars,
        _counts(texts, lambda t: not t.strip()),
    ]).astype(np.float32)


def markdown_stats(texts: list[str]) -> np.ndarray:
    """Counts of markdown elements; refusal, apology and opener flags; hedges, shape (n, k)."""
    openings = [t[:_OPENING_CHARS].lower() for t in texts]
    columns = [_counts(texts, lambda t, p=p, tr=_TRIGGERS.get(name):
                       len(p.findall(t)) if tr is None or any(x in t for x in tr) else 0)
               for name, p in _PATTERNS.items()]
    columns += [_counts(openings, lambda t, ph=ph: any(p in t for p in ph))
                for ph in _PHRASES.values()]
    lowered = [t.lower() for t in texts]
    columns.append(_counts(lowered, lambda t: sum(map(t.count, _HEDGES))))
    return np.column_stack(columns).astype(np.float32)


def script_stats(texts: list[str]) -> np.ndarray:
    """Share of each writing system among the first 2,000 characters, shape (n, k)."""
    heads = [t[:_HEAD_CHARS] for t in texts]
    sizes = np.maximum(_counts(heads, len), 1)
    latin = _counts(heads, lambda t: _count_bytes(t.encode("utf-8", "surrogatepass"),
                                                   _ASCII_LETTERS))
    shares = [latin / sizes]
    shares += [_counts(heads, lambda t, p=p: 0 if t.isascii() else len(p.findall(t))) / sizes
               for p in _SCRIPTS.values()]
    shares.append(_counts(heads, lambda t: 0 if t.isascii() else
                          len(t) - len(t.encode("ascii", "ignore"))) / sizes)
    return np.column_stack(shares).astype(np.float32)


def text_stats(texts: list[str], words: list[list[str]] | None = None) -> np.ndarray:
    """All statistics, shape (n, len(TEXT_STAT_NAMES)); ``words`` as in :func:`length_stats`."""
    return np.hstack([length_stats(texts, words), markdown_stats(texts), script_stats(texts)])


def word_sets(texts: list[str]) -> list[frozenset[str]]:
    """Lower-cased word sets, for overlap features."""
    return [frozenset(t.lower().split()) for t in texts]


def jaccard(left: list[frozenset[str]], right: list[frozenset[str]]) -> np.ndarray:
    """Jaccard similarity of paired word sets, shape (n,); 0 when both are empty."""
    return np.fromiter((len(a & b) / len(a | b) if a or b else 0.0 for a, b in zip(left, right)),
                       dtype=np.float32, count=len(left))


def containment(part: list[frozenset[str]], whole: list[frozenset[str]]) -> np.ndarray:
    """Share of ``part``'s words found in ``whole``, shape (n,)."""
    return np.fromiter((len(a & b) / len(a) if a else 0.0 for a, b in zip(part, whole)),
                       dtype=np.float32, count=len(part))


# Instruction-following signals. A prompt that asks for "three tips" or "2 sentences"
# can be checked cheaply; the first word tells an instruction ("Write ...") from a
# question or a chat turn, which lets trees trust length only where it predicts.
_NUMBER_WORDS = {"one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                 "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_REQUEST = re.compile(
    r"\b(\d{1,3}|" + "|".join(_NUMBER_WORDS) + r")[\s-]+(?:[a-z]+[\s-]+)?"
    r"(sentence|word|paragraph|line|item|point|example|way|tip|step|reason|idea|question"
    r"|name|thing)s?\b", re.I)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)]) ", re.M)
_IMPERATIVES = frozenset(
    "write generate create give summarize summarise describe complete respond rewrite make "
    "design provide list name explain classify identify translate find suggest compose edit "
    "convert construct brainstorm compare analyze analyse produce develop categorize calculate "
    "select choose paraphrase correct fill answer tell output sort arrange evaluate predict "
    "formulate imagine use rank reword rephrase add change determine outline propose plan "
    "recommend transform come draft pretend act assume read extract detect".split())


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
        (-1.0 if request is None else
         abs(np.log((_unit_count(text, request[1]) + 1) / (request[0] + 1)))
         for request, text in zip(requests, texts)), dtype=np.float32, count=len(texts))


def instruction_flags(prompts: list[str]) -> np.ndarray:
    """Whether the last prompt turn opens with an imperative verb, and whether it asks for
    a count, shape (n, 2)."""
    first = [t.split(maxsplit=1)[0].strip(",.:!").lower() if t.strip() else "" for t in prompts]
    return np.column_stack([
        _counts(first, lambda w: w in _IMPERATIVES),
        _counts(prompts, lambda t: _REQUEST.search(t) is not None),
    ]).astype(np.float32)
