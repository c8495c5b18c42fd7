"""Features: WordLlama loads offline, empty texts are safe, blocks respect A/B order."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from arenajudge.data import join_turns, read_battles
from arenajudge.features import FeatureSpec, feature_builder
from arenajudge.features.embeddings import WordLlamaEncoder
from arenajudge.features.text_stats import TEXT_STAT_NAMES, text_stats

TEXTS = [
    "",
    "   ",
    "Hello world, this is a test.",
    "## Plan\n\n1. first step\n2. second step\n\n**Note:** I'm sorry, I can't do that.",
    "Привет, как дела?",
    "你好，世界",
    "Visit https://example.com or `run()` now!",
]


def _cosine_with_wordllama(texts: list[str]) -> np.ndarray:
    from wordllama.inference import WordLlamaInference

    encoder = WordLlamaEncoder(dim=256)
    ours, _ = encoder.encode(texts)
    reference = WordLlamaInference(encoder.table, copy.deepcopy(encoder.tokenizer)).embed(texts)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    return (ours * reference).sum(axis=1)


def test_wordllama_matches_its_own_pooling():
    # measured: mean 0.996, lowest 0.982 (the markdown text: words after newlines)
    cosine = _cosine_with_wordllama(TEXTS[2:] * 3)
    assert cosine.mean() > 0.99 and cosine.min() > 0.98


def test_wordllama_pooling_on_real_responses():
    from conftest import requires_shared_data

    battles = read_battles(requires_shared_data("human_dev.csv"))
    rows = np.random.default_rng(0).choice(len(battles), 500, replace=False)
    texts = [t for t in (join_turns(battles.response_a[i]) for i in rows) if t.strip()]
    # measured: mean 0.993; 1% of responses below 0.91 (many lines starting a word)
    assert _cosine_with_wordllama(texts).mean() > 0.99


def test_empty_texts_embed_to_zeros_not_nan():
    embeddings, tokens = WordLlamaEncoder(dim=32).encode(TEXTS)
    assert not np.isnan(embeddings).any()
    assert np.all(embeddings[:2] == 0) and tokens[0] == 0
    assert np.allclose(np.linalg.norm(embeddings[2:], axis=1), 1, atol=1e-5)


def test_the_word_cache_gives_the_same_embeddings_however_it_grew():
    texts = [f"word{i} shared words {i % 7} and more{i // 3}" for i in range(300)] + TEXTS
    at_once = WordLlamaEncoder(dim=16).encode(texts)
    grown = WordLlamaEncoder(dim=16)
    parts = [grown.encode(texts[start : start + 37]) for start in range(0, len(texts), 37)]
    for whole, part in zip(at_once, (np.concatenate(p) for p in zip(*parts))):
        np.testing.assert_array_equal(whole, part)
    np.testing.assert_array_equal(grown.encode(texts)[0], at_once[0])  # all words cached


def test_text_stats_see_markdown_refusals_and_scripts():
    stats = dict(zip(TEXT_STAT_NAMES, text_stats(TEXTS).T))
    assert stats["empty"].tolist()[:3] == [1, 1, 0]
    assert stats["numbered"][3] == 2 and stats["headers"][3] == 1 and stats["bold"][3] == 1
    assert stats["refusal"][3] == 1 and stats["refusal"][2] == 0
    assert stats["cyrillic_share"][4] > 0.5 and stats["cjk_share"][5] > 0.5
    assert stats["links"][6] == 1 and stats["inline_code"][6] == 1


def test_feature_matrix_swaps_blocks(battles_csv):
    battles = read_battles(battles_csv)
    spec = FeatureSpec(embedding_dim=8)
    pair = feature_builder(spec).transform(battles)
    forward, backward = pair.matrix(), pair.matrix(swapped=True)
    assert forward.shape[1] == len(spec.names())
    swapped_pair = feature_builder(spec).transform(battles.swap())
    assert np.allclose(swapped_pair.matrix(), backward, atol=1e-6)
    assert not np.isnan(forward).any()


def test_builder_cache_returns_same_rows(battles_csv):
    battles = read_battles(battles_csv)
    builder = feature_builder(FeatureSpec(embedding_dim=8))
    full = builder.transform(battles).matrix()
    subset = builder.transform(battles.take(np.arange(10, 40))).matrix()
    assert np.array_equal(subset, full[10:40])


def test_hf_encoder_requires_a_model_directory(tmp_path):
    from arenajudge.errors import ConfigError
    from arenajudge.features.embeddings import HFEncoder

    with pytest.raises(ConfigError, match="config.json"):
        HFEncoder(tmp_path)


def test_threads_give_the_same_features_as_one_call(battles_csv, monkeypatch):
    from arenajudge.features import builder

    battles = read_battles(battles_csv)
    spec = FeatureSpec(embedding_dim=8)
    serial = builder._compute(spec, battles).matrix()
    monkeypatch.setattr(builder, "_MIN_ROWS_PER_THREAD", 10)
    threaded = builder._compute_in_threads(spec, battles, n_jobs=3).matrix()
    assert np.array_equal(threaded, serial)


def test_words_split_like_str_split_and_count_sets():
    from arenajudge.features.words import Words, containment, jaccard

    texts = ["", "  \n ", "The cat\tsat", "the  CAT\u00a0sat sat down", "a\ud800b c"]
    words = Words.split(texts)
    assert [
        [words.distinct[c] for c in words.codes[lo:hi]]
        for lo, hi in zip(words.indptr[:-1], words.indptr[1:])
    ][:4] == [t.split() for t in texts[:4]]
    assert words.counts.tolist() == [0, 0, 3, 5, 2]
    assert words.distinct_lower_counts.tolist() == [0, 0, 3, 4, 2]
    sets = words.lower_sets
    assert jaccard(sets[2:3], sets[3:4]).tolist() == pytest.approx([3 / 4])
    assert containment(sets[2:3], sets[3:4]).tolist() == [1.0]
    assert jaccard(sets[0:1], sets[1:2]).tolist() == [0.0]  # both empty
    assert containment(sets[0:1], sets[2:3]).tolist() == [0.0]


def test_builder_cache_mixes_old_and_new_rows_past_its_bound(battles_csv):
    from arenajudge.features.builder import FeatureBuilder

    battles = read_battles(battles_csv)
    spec = FeatureSpec(embedding_dim=8)
    reference = FeatureBuilder(spec).transform(battles).matrix()
    builder = FeatureBuilder(spec, cache_rows=4)
    builder.transform(battles.take(np.arange(0, 4)))
    # one cached row first, then three new ones: the cache overflows by three while the
    # cached row is still needed (this raised KeyError with first-in-first-out eviction)
    mixed = np.array([0, 10, 11, 12])
    assert np.array_equal(builder.transform(battles.take(mixed)).matrix(), reference[mixed])
    again = np.array([12, 1, 11, 5, 0])  # more rows than the bound: computed, not cached
    assert np.array_equal(builder.transform(battles.take(again)).matrix(), reference[again])
    assert len(builder._cache) <= 4
