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

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from arenajudge.data.schema import Battles, join_turns
from arenajudge.features.embeddings import HFEncoder, wordllama_encoder
from arenajudge.features.text_stats import (SCRIPT_NAMES, TEXT_STAT_NAMES, containment,
                                            count_miss, count_requests, instruction_flags,
                                            jaccard, text_stats, word_sets)

SIDE_EXTRA_NAMES = ("log_tokens", "turns", "empty_turns", "prompt_word_coverage",
                    "words_from_prompt", "prompt_cosine", "script_mismatch", "count_miss")
SHARED_EXTRA_NAMES = ("prompt_turns", "ab_jaccard", "ab_cosine", "identical", "both_empty",
                      "length_ratio", "mean_log_chars", "log_chars_gap", "imperative_prompt",
                      "count_request")
_CACHE_ROWS = 300_000


@dataclass(frozen=True)
class FeatureSpec:
    """What the features are made of; part of every model's config and schema hash."""

    embedding_dim: int = 64
    encoder: str | None = None

    @property
    def dim(self) -> int:
        """Width of one embedding."""
        return HFEncoder(self.encoder).hidden_size if self.encoder else self.embedding_dim

    def names(self) -> list[str]:
        """Column names of :meth:`PairFeatures.matrix`, in order."""
        dim = self.dim
        side = TEXT_STAT_NAMES + SIDE_EXTRA_NAMES
        shared = ([f"prompt_{n}" for n in TEXT_STAT_NAMES] + list(SHARED_EXTRA_NAMES)
                  + [f"prompt_emb_{i}" for i in range(dim)])
        return (shared + [f"a_{n}" for n in side] + [f"b_{n}" for n in side]
                + [f"diff_{n}" for n in side] + [f"emb_diff_{i}" for i in range(dim)])


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

    def take(self, indices: np.ndarray) -> "PairFeatures":
        return PairFeatures(self.shared[indices], self.side_a[indices], self.side_b[indices],
                            self.anti[indices])


def _embed(spec: FeatureSpec, texts: list[str], words: list[list[str]]
           ) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (n, dim), Llama-2 token counts (n,)) of ``texts``, split into ``words``."""
    wordllama = wordllama_encoder(spec.embedding_dim)
    if spec.encoder is None:
        return wordllama.encode(texts, words)
    # token counts stay WordLlama's so the length features mean the same with any encoder
    return HFEncoder(spec.encoder).encode(texts), wordllama.encode(texts, words)[1]


def _compute(spec: FeatureSpec, battles: Battles) -> PairFeatures:
    n = len(battles)
    prompts = [join_turns(t) for t in battles.prompt]
    texts_a = [join_turns(t) for t in battles.response_a]
    texts_b = [join_turns(t) for t in battles.response_b]
    texts = prompts + texts_a + texts_b
    words = [t.split() for t in texts]  # split once: the stats and the embeddings share it
    embeddings, tokens = _embed(spec, texts, words)
    emb_p, emb_a, emb_b = embeddings[:n], embeddings[n:2 * n], embeddings[2 * n:]
    tok_a, tok_b = tokens[n:2 * n], tokens[2 * n:]
    stats = text_stats(texts, words)
    stats_p, stats_a, stats_b = stats[:n], stats[n:2 * n], stats[2 * n:]
    words_p, words_a, words_b = word_sets(prompts), word_sets(texts_a), word_sets(texts_b)
    script = slice(len(TEXT_STAT_NAMES) - len(SCRIPT_NAMES), len(TEXT_STAT_NAMES))
    last_prompts = [t[-1] if t else "" for t in battles.prompt]
    requests = count_requests(last_prompts)

    def side(turns, texts_x, stats_x, tok_x, words_x, emb_x):
        return np.column_stack([
            stats_x, np.log1p(tok_x), [len(t) for t in turns],
            [sum(not s.strip() for s in t) for t in turns],
            containment(words_p, words_x), containment(words_x, words_p),
            (emb_x * emb_p).sum(axis=1),
            np.abs(stats_x[:, script] - stats_p[:, script]).sum(axis=1),
            count_miss(requests, texts_x),
        ]).astype(np.float32)

    empty_a, empty_b = stats_a[:, TEXT_STAT_NAMES.index("empty")], stats_b[:, TEXT_STAT_NAMES.index(
        "empty")]
    log_chars_a, log_chars_b = (s[:, TEXT_STAT_NAMES.index("log_chars")]
                                for s in (stats_a, stats_b))
    chars_a, chars_b = np.expm1(log_chars_a), np.expm1(log_chars_b)
    shared = np.column_stack([
        stats_p, [len(t) for t in battles.prompt], jaccard(words_a, words_b),
        (emb_a * emb_b).sum(axis=1), [a == b for a, b in zip(texts_a, texts_b)],
        empty_a * empty_b,
        np.minimum(chars_a, chars_b) / np.maximum(np.maximum(chars_a, chars_b), 1),
        (log_chars_a + log_chars_b) / 2, np.abs(log_chars_a - log_chars_b),
        instruction_flags(last_prompts), emb_p,
    ]).astype(np.float32)
    return PairFeatures(
        shared=shared,
        side_a=side(battles.response_a, texts_a, stats_a, tok_a, words_a, emb_a),
        side_b=side(battles.response_b, texts_b, stats_b, tok_b, words_b, emb_b),
        anti=(emb_a - emb_b).astype(np.float32),
    )


def _row_keys(battles: Battles) -> list[bytes]:
    return [hashlib.blake2b(repr((p, a, b)).encode("utf-8", "surrogatepass"),
                            digest_size=16).digest()
            for p, a, b in zip(battles.prompt, battles.response_a, battles.response_b)]


class FeatureBuilder:
    """Computes :class:`PairFeatures`, remembering rows it has seen.

    Cross-validation and train-then-refit see the same rows many times; features
    depend on a row's texts only, so rows are cached by a hash of their content.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self._cache: OrderedDict[bytes, tuple[np.ndarray, ...]] = OrderedDict()

    def transform(self, battles: Battles) -> PairFeatures:
        if len(battles) > _CACHE_ROWS:
            return _compute(self.spec, battles)
        keys = _row_keys(battles)
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        if missing:
            fresh = _compute(self.spec, battles.take(np.asarray(missing)))
            for j, i in enumerate(missing):
                self._cache[keys[i]] = (fresh.shared[j], fresh.side_a[j], fresh.side_b[j],
                                        fresh.anti[j])
            while len(self._cache) > _CACHE_ROWS:
                self._cache.popitem(last=False)
            if len(missing) == len(keys):
                return fresh
        rows = [self._cache[key] for key in keys]
        return PairFeatures(*(np.vstack([r[b] for r in rows]) for b in range(4)))


_builders: dict[FeatureSpec, FeatureBuilder] = {}


def feature_builder(spec: FeatureSpec) -> FeatureBuilder:
    """The process-wide builder (and row cache) of ``spec``."""
    if spec not in _builders:
        _builders[spec] = FeatureBuilder(spec)
    return _builders[spec]
