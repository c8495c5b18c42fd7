"""JSON decoding of untrusted text: every failure is one :class:`JSONProblem`.

``json.loads`` fails in three ways on hostile or damaged input: ``JSONDecodeError``
for bad syntax, ``RecursionError`` for deep nesting (``[[[[...]]]]``) and a plain
``ValueError`` for integer literals longer than Python's 4,300-digit limit. Every place
that decodes JSON read from a file (data cells, JSONL lines, ``.json`` files, model
manifests, calibration files, embeddings metadata) goes through :func:`loads`, so each
of them can turn a failure into an error that names its location.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any


class JSONProblem(ValueError):
    """Text is not usable JSON; the message is a short phrase to follow "is", e.g.
    ``not valid JSON (Expecting ',' delimiter at line 1 column 9)``."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) < len(pairs):
        counts = Counter(key for key, _ in pairs)
        twice = next(key for key, n in counts.items() if n > 1)
        raise JSONProblem(f"JSON whose object has the key {twice!r} twice")
    return obj


# built once: json.loads(text, object_pairs_hook=...) builds a decoder on every call
_DECODER = json.JSONDecoder()
_UNIQUE_KEYS_DECODER = json.JSONDecoder(object_pairs_hook=_unique_object)


def loads(text: str | bytes, *, unique_keys: bool = False) -> Any:
    """``json.loads(text)``, raising :class:`JSONProblem` for any text it cannot decode.

    ``unique_keys=True`` also refuses an object that repeats a key (``json`` would keep
    the last value silently).
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return (_UNIQUE_KEYS_DECODER if unique_keys else _DECODER).decode(text)
    except JSONProblem:
        raise
    except json.JSONDecodeError as exc:
        raise JSONProblem(
            f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise JSONProblem("JSON nested too deeply to decode") from None
    except UnicodeDecodeError:
        raise JSONProblem("not UTF-8 text") from None
    except ValueError:  # "Exceeds the limit (4300 digits) for integer string conversion"
        raise JSONProblem("JSON with an integer literal too long to decode") from None
