"""The bundled sample: labelled battles with sources, small, shipped with its licences."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from arenajudge.datasets import LICENCE_FILES, load_sample, sample_path
from conftest import requires_shared_data

SOURCES = {
    "hh_rlhf_test": "LICENSE-HH-RLHF-MIT.txt",
    "pandalm_testset_v1": "LICENSE-PandaLM-Apache-2.0.txt",
}


def test_sample_loads_as_labelled_battles_with_a_source_per_row():
    battles = load_sample()
    assert 2000 <= len(battles) <= 5000
    assert battles.labelled and battles.source is not None
    assert set(battles.source) == set(SOURCES)
    assert len(np.unique(battles.id)) == len(battles)
    np.testing.assert_allclose(battles.target.sum(axis=1), 1.0)
    # PandaLM brings ties: the class prior has all three classes
    assert (battles.target.mean(axis=0) > 0.01).all()


def test_sample_file_is_compressed_and_under_3_mb():
    path = sample_path()
    assert path.name.endswith(".csv.gz")
    assert path.stat().st_size < 3 * 2**20


def test_licence_and_attribution_files_ship_beside_the_sample():
    folder = sample_path().parent
    for name in LICENCE_FILES:
        assert (folder / name).stat().st_size > 500, name
    attribution = (folder / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for source, licence in SOURCES.items():
        assert source in attribution and licence in attribution
    assert "MIT License" in (folder / SOURCES["hh_rlhf_test"]).read_text(encoding="utf-8")
    assert "Apache License" in (folder / SOURCES["pandalm_testset_v1"]).read_text(encoding="utf-8")


def test_make_sample_rebuilds_the_bundled_file_byte_for_byte(tmp_path):
    data = requires_shared_data("human_dev.csv").parent
    script = Path(__file__).resolve().parents[1] / "scripts" / "make_sample.py"
    spec = importlib.util.spec_from_file_location("make_sample", script)
    make_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_sample)
    rebuilt = tmp_path / "sample.csv.gz"
    make_sample.write_sample(make_sample.build_sample(data, hh_rows=2206, seed=0), rebuilt)
    assert rebuilt.read_bytes() == sample_path().read_bytes()
