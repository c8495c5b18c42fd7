"""sha256 of files (one reader for the manifests, the soft-label files and the GGUF
bases) and 64-bit keys of battles' texts (what a model was trained on). Imports nothing
of arenajudge, so every layer may use it."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def battle_keys(
    prompts: Iterable[Sequence[str]],
    responses_a: Iterable[Sequence[str]],
    responses_b: Iterable[Sequence[str]],
) -> np.ndarray:
    """A 64-bit key of each battle's texts, shape (n,), int64: its prompt turns and its two
    responses' turns, in either order (a swapped battle is the same comparison, and
    training sees both orders). Ids are left out: a file renumbered or merged keeps its
    keys. 64 bits make a chance collision among a million battles about 1 in 10^7."""
    keys = []
    for prompt, a, b in zip(prompts, responses_a, responses_b):
        pair = sorted(json.dumps(list(side), ensure_ascii=False) for side in (a, b))
        text = json.dumps([list(prompt), *pair], ensure_ascii=False)
        keys.append(
            int.from_bytes(
                hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                "little",
                signed=True,
            )
        )
    return np.array(keys, dtype=np.int64)


def encode_keys(keys: np.ndarray) -> str:
    """Sorted unique int64 ``keys`` as one base64 string (8 bytes a key), for JSON."""
    return base64.b64encode(np.unique(keys).astype("<i8").tobytes()).decode("ascii")


def decode_keys(text: str) -> np.ndarray:
    """The sorted int64 keys of :func:`encode_keys`; ValueError for a malformed string."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % 8:
        raise ValueError("the key string's length is not a multiple of 8 bytes")
    return np.frombuffer(raw, dtype="<i8").astype(np.int64)
