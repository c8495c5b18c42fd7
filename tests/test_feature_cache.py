"""The feature row cache: a memory bound that holds whatever the traffic, same features."""

from __future__ import annotations

import numpy as np

from arenajudge.data import read_battles
from arenajudge.features.builder import _ROW_OVERHEAD, FeatureBuilder, FeatureSpec
from conftest import synthetic_frame


def test_the_row_cache_stays_within_its_byte_bound_under_distinct_rows(tmp_path):
    synthetic_frame(n=200).to_csv(tmp_path / "battles.csv", index=False)
    battles = read_battles(tmp_path / "battles.csv")
    spec = FeatureSpec(embedding_dim=8)
    reference = FeatureBuilder(spec).transform(battles).matrix()
    row_bytes = 4 * reference.shape[1]  # over a cached row's: the matrix adds the diff columns
    builder = FeatureBuilder(spec, cache_bytes=30 * (row_bytes + _ROW_OVERHEAD))
    for start in range(0, 200, 20):  # a stream of distinct rows, as a service sees
        rows = np.arange(start, start + 20)
        assert np.array_equal(builder.transform(battles.take(rows)).matrix(), reference[rows])
        assert builder.cached_bytes <= builder.cache_bytes
    assert 30 <= len(builder._cache) <= builder.capacity
    mixed = np.array([199, 3, 198, 7])  # cached and evicted rows together
    assert np.array_equal(builder.transform(battles.take(mixed)).matrix(), reference[mixed])


def test_a_batch_over_the_bound_is_computed_without_being_kept(tmp_path):
    synthetic_frame(n=60).to_csv(tmp_path / "battles.csv", index=False)
    battles = read_battles(tmp_path / "battles.csv")
    builder = FeatureBuilder(FeatureSpec(embedding_dim=8), cache_bytes=10 * 1_000)
    expected = FeatureBuilder(FeatureSpec(embedding_dim=8)).transform(battles).matrix()
    assert np.array_equal(builder.transform(battles).matrix(), expected)
    assert len(builder._cache) == 0
