"""Style covariates: differences in length and markdown between the two responses."""

from __future__ import annotations

import re

import numpy as np

from arenajudge.data.schema import Battles, join_turns

# Each pattern starts with a literal so that the regex engine can skip ahead (4x faster
# than ^-anchored MULTILINE patterns); texts get a leading newline to match line one.
# Bold is **...** only: __x__ is mostly Python dunder names in code answers.
_MARKDOWN = {
    "headers": re.compile(r"\n#{1,6}\s"),
    "lists": re.compile(r"\n[ \t]*(?:[-*+]|\d+[.)])\s"),
    "bold": re.compile(r"\*\*[^*\n]+\*\*"),
}
STYLE_FEATURES = ("length", *_MARKDOWN)
"""Style covariates: each the normalised difference ``(a - b) / (a + b + 1)`` of a count."""


def response_lengths(battles: Battles) -> tuple[np.ndarray, np.ndarray]:
    """Characters of response A and of response B (turns joined), two arrays of shape (n,)."""
    return (
        np.array([len(join_turns(t)) for t in battles.response_a], dtype=float),
        np.array([len(join_turns(t)) for t in battles.response_b], dtype=float),
    )


def _style_counts(responses: list[tuple[str, ...]]) -> np.ndarray:
    """Length and markdown element counts per response, shape (n, len(STYLE_FEATURES))."""
    texts = ["\n" + join_turns(turns) for turns in responses]
    return np.array(
        [[len(text) - 1, *(len(p.findall(text)) for p in _MARKDOWN.values())] for text in texts],
        dtype=float,
    ).reshape(len(texts), len(STYLE_FEATURES))


def style_covariates(battles: Battles) -> np.ndarray:
    """Standardised style differences of A over B, shape (n, len(STYLE_FEATURES)).

    Each column is ``(a - b) / (a + b + 1)`` for a count (characters, headers, list
    items, bold spans), divided by its standard deviation so that the fitted
    coefficients are comparable; 0 still means "same style".
    """
    count_a, count_b = _style_counts(battles.response_a), _style_counts(battles.response_b)
    diff = (count_a - count_b) / (count_a + count_b + 1)
    spread = diff.std(axis=0)
    return diff / np.where(spread > 0, spread, 1.0)
