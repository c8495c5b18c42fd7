"""Battles -> feature matrices for either A/B order.

Features come in blocks computed once per battle:

* ``shared`` — the same in both orders: prompt statistics, prompt embedding, A–B
  similarity, identical / both-empty flags;
* ``side`` — one block per response: its text statistics, token count, turn count,
  overlap and embedding similarity with the prompt, script mismatch with the prompt;
* ``anti`` — flips sign with the order: embedding of A minus embedding of B.

``matrix(swapped=True)`` gives the features of the B/A battle without recomputing
anything, which makes swap augmentation and symmetric prediction cheap.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

from arenajudge.data.schema import Battles, Turns, join_turns
from arenajudge.features.embeddings import hf_encoder, wordllama_encoder
from arenajudge.features.external import external_names
from arenajudge.features.model_style import STYLE_SIDE_NAMES
from arenajudge.features.text_stats import (
    SCRIPT_NAMES,
    TEXT_STAT_NAMES,
    count_miss,
    count_requests,
    instruction_flags,
    text_stats,
)
from arenajudge.features.words import Words, containment, jaccard
from arenajudge.threads import resolve_jobs

SIDE_EXTRA_NAMES = (
    "log_tokens",
    "turns",
    "empty_turns",
    "prompt_word_coverage",
    "words_from_prompt",
    "prompt_cosine",
    "script_mismatch",
    "count_miss",
)
SHARED_EXTRA_NAMES = (
    "prompt_turns",
    "ab_jaccard",
    "ab_cosine",
    "identical",
    "both_empty",
    "length_ratio",
    "mean_log_chars",
    "log_chars_gap",
    "imperative_prompt",
    "count_request",
)
CACHE_BYTES = 16 * 2**20
"""Most memory the feature row cache holds: about 23,000 rows of the default features
(``embedding_dim`` 8), enough for cross-validating a training set that size without
recomputing; small beside a loaded model, so that a process calling ``predict_proba`` on
new battles for ever stays flat once the cache is full."""
_ROW_OVERHEAD = 200
"""Bytes a cached row costs besides its floats: its array object, key and dict entry."""
_MIN_ROWS_PER_THREAD = 2048


@dataclass(frozen=True)
class FeatureSpec:
    """What the features are made of; part of every model's config and schema hash."""

    embedding_dim: int
    encoder: str | None = None

    @property
    def dim(self) -> int:
        """Width of one embedding."""
        return hf_encoder(self.encoder).hidden_size if self.encoder else self.embedding_dim

    def names(self, external_components: int = 0, style: bool = False) -> list[str]:
        """Column names of :meth:`PairFeatures.matrix`, in order; ``external_components``
        > 0 adds the blocks of outside embeddings (:mod:`arenajudge.features.external`),
        ``style`` the model-style side features (:mod:`arenajudge.features.model_style`)."""
        dim = self.dim
        side = list(TEXT_STAT_NAMES + SIDE_EXTRA_NAMES)
        shared = (
            [f"prompt_{n}" for n in TEXT_STAT_NAMES]
            + list(SHARED_EXTRA_NAMES)
            + [f"prompt_emb_{i}" for i in range(dim)]
        )
        anti = [f"emb_diff_{i}" for i in range(dim)]
        if external_components:
            ext_shared, ext_side, ext_anti = external_names(external_components)
            shared, side, anti = shared + ext_shared, side + ext_side, anti + ext_anti
        if style:
            side = side + list(STYLE_SIDE_NAMES)
        return (
            shared
            + [f"a_{n}" for n in side]
            + [f"b_{n}" for n in side]
            + [f"diff_{n}" for n in side]
            + anti
        )


@dataclass
class PairFeatures:
    """Per-battle feature blocks, see the module docstring. All float32, n rows."""

    shared: np.ndarray
    side_a: np.ndarray
    side_b: np.ndarray
    anti: np.ndarray

    def matrix(self, swapped: bool = False) -> np.ndarray:
        """Feature matrix, shape (n, n_features), of the A/B (or B/A) battles."""
        first, second = (self.side_b, self.side_a) if swapped else (self.side_a, self.side_b)
        anti = -self.anti if swapped else self.anti
        return np.hstack([self.shared, first, second, first - second, anti])

    def take(self, indices: np.ndarray) -> PairFeatures:
        return PairFeatures(
            self.shared[indices], self.side_a[indices], self.side_b[indices], self.anti[indices]
        )

    def join(
        self, shared: np.ndarray, side_a: np.ndarray, side_b: np.ndarray, anti: np.ndarray
    ) -> PairFeatures:
        """These features with more columns appended to each block."""
        return PairFeatures(
            np.hstack([self.shared, shared]),
            np.hstack([self.side_a, side_a]),
            np.hstack([self.side_b, side_b]),
            np.hstack([self.anti, anti]),
        )

    def join_sides(self, side_a: np.ndarray, side_b: np.ndarray) -> PairFeatures:
        """These features with more columns appended to the two side blocks only."""
        return PairFeatures(
            self.shared,
            np.hstack([self.side_a, side_a]),
            np.hstack([self.side_b, side_b]),
            self.anti,
        )


def _embed(spec: FeatureSpec, texts: list[str], words: Words) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (n, dim), Llama-2 token counts (n,)) of ``texts``, split into ``words``."""
    wordllama = wordllama_encoder(spec.embedding_dim)
    if spec.encoder is None:
        return wordllama.encode(texts, words)
    # token counts stay WordLlama's so the length features mean the same with any encoder
    return hf_encoder(spec.encoder).encode(texts), wordllama.encode(texts, words)[1]


def _distinct(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Each distinct text once, and the index into them of each text, shape (n,).

    Prompts repeat across battles (many models answer one prompt) and so do baseline
    answers; every feature of a text depends on that text alone, so each is computed
    once per distinct text.
    """
    index: dict[str, int] = {}
    of_text = np.fromiter(
        (index.setdefault(t, len(index)) for t in texts), dtype=np.int64, count=len(texts)
    )
    return list(index), of_text


_SCRIPT = slice(len(TEXT_STAT_NAMES) - len(SCRIPT_NAMES), len(TEXT_STAT_NAMES))
"""The script-share columns of the text statistics."""


@dataclass(frozen=True)
class _Prompt:
    """What a response's features compare with: its prompt's words, embedding, text
    statistics and requests, one row per battle."""

    words: sp.csr_matrix
    emb: np.ndarray
    stats: np.ndarray
    requests: list[tuple[int, str] | None]


def _side(
    prompt: _Prompt,
    turns: list[Turns],
    texts: list[str],
    stats: np.ndarray,
    tokens: np.ndarray,
    words: sp.csr_matrix,
    emb: np.ndarray,
) -> np.ndarray:
    """The features of one side's responses (n, width), float32."""
    return np.column_stack(
        [
            stats,
            np.log1p(tokens),
            [len(t) for t in turns],
            [sum(not s.strip() for s in t) for t in turns],
            containment(prompt.words, words),
            containment(words, prompt.words),
            (emb * prompt.emb).sum(axis=1),
            np.abs(stats[:, _SCRIPT] - prompt.stats[:, _SCRIPT]).sum(axis=1),
            count_miss(prompt.requests, texts),
        ]
    ).astype(np.float32)


def _compute(spec: FeatureSpec, battles: Battles) -> PairFeatures:
    n = len(battles)
    prompts = [join_turns(t) for t in battles.prompt]
    texts_a = [join_turns(t) for t in battles.response_a]
    texts_b = [join_turns(t) for t in battles.response_b]
    distinct, of_text = _distinct(prompts + texts_a + texts_b)
    words = Words.split(distinct)  # split once: the stats and the embeddings share it
    embeddings, tokens = _embed(spec, distinct, words)
    embeddings, tokens = embeddings[of_text], tokens[of_text]
    emb_p, emb_a, emb_b = embeddings[:n], embeddings[n : 2 * n], embeddings[2 * n :]
    stats = text_stats(distinct, words)[of_text]
    stats_p, stats_a, stats_b = stats[:n], stats[n : 2 * n], stats[2 * n :]
    sets = words.lower_sets
    words_p, words_a, words_b = (sets[of_text[k * n : (k + 1) * n]] for k in range(3))
    last_prompts, of_prompt = _distinct([t[-1] if t else "" for t in battles.prompt])
    prompt_requests = count_requests(last_prompts)
    prompt = _Prompt(words_p, emb_p, stats_p, [prompt_requests[i] for i in of_prompt])

    def side(turns: list[Turns], texts: list[str], k: int) -> np.ndarray:
        rows = slice(k * n, (k + 1) * n)
        return _side(
            prompt, turns, texts, stats[rows], tokens[rows], sets[of_text[rows]], embeddings[rows]
        )

    empty_a, empty_b = (
        stats_a[:, TEXT_STAT_NAMES.index("empty")],
        stats_b[:, TEXT_STAT_NAMES.index("empty")],
    )
    log_chars_a, log_chars_b = (
        s[:, TEXT_STAT_NAMES.index("log_chars")] for s in (stats_a, stats_b)
    )
    chars_a, chars_b = np.expm1(log_chars_a), np.expm1(log_chars_b)
    shared = np.column_stack(
        [
            stats_p,
            [len(t) for t in battles.prompt],
            jaccard(words_a, words_b),
            (emb_a * emb_b).sum(axis=1),
            [a == b for a, b in zip(texts_a, texts_b)],
            empty_a * empty_b,
            np.minimum(chars_a, chars_b) / np.maximum(np.maximum(chars_a, chars_b), 1),
            (log_chars_a + log_chars_b) / 2,
            np.abs(log_chars_a - log_chars_b),
            instruction_flags(last_prompts, prompt_requests)[of_prompt],
            emb_p,
        ]
    ).astype(np.float32)
    return PairFeatures(
        shared=shared,
        side_a=side(battles.response_a, texts_a, 1),
        side_b=side(battles.response_b, texts_b, 2),
        anti=(emb_a - emb_b).astype(np.float32),
    )


def _compute_in_threads(spec: FeatureSpec, battles: Battles, n_jobs: int) -> PairFeatures:
    """:func:`_compute` on ``n_jobs`` threads, each over a run of rows.

    Arrow's kernels, the tokenizer and the sparse products release the GIL, so threads
    overlap most of the work without the start-up, pickling and ``__main__`` pitfalls
    of processes. Rows do not depend on each other: the result equals one call's.
    """
    threads = min(resolve_jobs(n_jobs), len(battles) // _MIN_ROWS_PER_THREAD)
    if threads < 2 or spec.encoder is not None:  # a torch encoder runs its own threads
        return _compute(spec, battles)
    bounds = np.linspace(0, len(battles), threads + 1).astype(int)
    with ThreadPoolExecutor(threads, thread_name_prefix="arenajudge-features") as pool:
        parts = list(
            pool.map(
                lambda lo, hi: _compute(spec, battles.take(np.arange(lo, hi))),
                bounds[:-1],
                bounds[1:],
            )
        )
    return PairFeatures(*(np.vstack(blocks) for blocks in zip(*map(astuple, parts))))


_row_cache_on: ContextVar[bool] = ContextVar("arenajudge_row_cache", default=True)


@contextmanager
def row_cache_off() -> Iterator[None]:
    """Within this block, :meth:`FeatureBuilder.transform` neither looks up nor keeps
    rows: a streamed file's rows come once each, and keeping them would grow memory
    with the file."""
    token = _row_cache_on.set(False)
    try:
        yield
    finally:
        _row_cache_on.reset(token)


def _row_keys(battles: Battles) -> list[int]:
    # Python caches each str's hash, so keying by the hash of a row's turns costs one pass
    # over new texts and nothing for seen ones; 64-bit keys collide with odds ~1e-11 at
    # the cache's ~23,000 rows.
    return [hash(row) for row in zip(battles.prompt, battles.response_a, battles.response_b)]


class FeatureBuilder:
    """Computes :class:`PairFeatures`, remembering rows it has seen.

    Cross-validation and train-then-refit see the same rows many times; features
    depend on a row's texts only, so rows are cached by a hash of their content.
    The cache holds at most ``cache_bytes`` bytes (default ``CACHE_BYTES``) and
    ``cache_rows`` rows (when given); the least recently used rows go first. Each row is
    kept as one compact copy, so an evicted row frees its memory rather than staying
    pinned by the batch it came from.
    """

    def __init__(
        self, spec: FeatureSpec, cache_bytes: int | None = None, cache_rows: int | None = None
    ) -> None:
        self.spec = spec
        self.cache_bytes = CACHE_BYTES if cache_bytes is None else cache_bytes
        self.cache_rows = cache_rows
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._widths: tuple[int, ...] | None = None  # of the 4 blocks, fixed by the spec

    @property
    def capacity(self) -> int:
        """Most rows the cache holds (before the first row, as if a row had no floats)."""
        width = sum(self._widths) if self._widths else 0
        rows = self.cache_bytes // (4 * width + _ROW_OVERHEAD)
        return rows if self.cache_rows is None else min(rows, self.cache_rows)

    @property
    def cached_bytes(self) -> int:
        """Memory the cached rows take, overhead included (at most ``cache_bytes``)."""
        return sum(row.nbytes + _ROW_OVERHEAD for row in self._cache.values())

    def transform(self, battles: Battles, n_jobs: int = 1) -> PairFeatures:
        """Features of ``battles``, computed on ``n_jobs`` threads (0: one per core)."""
        if len(battles) > self.capacity or not _row_cache_on.get():
            return _compute_in_threads(self.spec, battles, n_jobs)
        keys = _row_keys(battles)
        # hits are read before anything is evicted, so eviction cannot lose a row in use
        rows = [self._cache.get(key) for key in keys]
        missing = [i for i, row in enumerate(rows) if row is None]
        for key, row in zip(keys, rows):
            if row is not None:
                self._cache.move_to_end(key)
        if missing:
            fresh = _compute_in_threads(self.spec, battles.take(np.asarray(missing)), n_jobs)
            blocks = (fresh.shared, fresh.side_a, fresh.side_b, fresh.anti)
            self._widths = tuple(block.shape[1] for block in blocks)
            if len(missing) == len(keys) and len(keys) > self.capacity:
                return fresh  # the first batch, too big to keep: nothing stored
            packed = np.hstack(blocks)  # (m, width): one row per cache entry
            for j, i in enumerate(missing):
                rows[i] = self._cache[keys[i]] = packed[j].copy()
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
            if len(missing) == len(keys):
                return fresh
        assert self._widths is not None  # a hit means rows were stored before
        bounds = np.cumsum(self._widths)[:-1]
        # every miss was filled above
        return PairFeatures(*np.split(np.vstack(cast(list[np.ndarray], rows)), bounds, axis=1))


_builders: dict[FeatureSpec, FeatureBuilder] = {}


def feature_builder(spec: FeatureSpec) -> FeatureBuilder:
    """The process-wide builder (and row cache) of ``spec``."""
    if spec not in _builders:
        _builders[spec] = FeatureBuilder(spec)
    return _builders[spec]
