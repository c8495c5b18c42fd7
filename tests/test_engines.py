"""Scoring engines: Ray Data (local mode) gives the local engine's output, in input order."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pandas as pd
import pytest

from arenajudge.data import LABELS, read_battles
from arenajudge.engines.scoring import predict
from arenajudge.errors import ConfigError, DataError, MissingDependencyError
from arenajudge.models.registry import load_model
from conftest import synthetic_frame

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
ray_engine = pytest.importorskip("arenajudge.engines.ray_engine")


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module: starting Ray is the slow part."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_dir) -> dict:
    root = tmp_path_factory.mktemp("engines")
    test = synthetic_frame(n=230).drop(columns=list(LABELS))
    # shuffled, so that ids are not sorted: output order must follow the file
    test.sample(frac=1, random_state=0).to_csv(root / "test.csv.gz", index=False)
    bad = synthetic_frame(n=60)
    bad.loc[47, "prompt"] = "not json"
    bad.to_csv(root / "bad.csv", index=False)
    return {
        "model": str(tiny_model_dir),
        "test": str(root / "test.csv.gz"),
        "bad": str(root / "bad.csv"),
    }


def test_ray_output_equals_local_output_in_input_order(ray_local, files):
    battles = read_battles(files["test"])
    expected = predict(load_model(files["model"]), battles, tie_rate=0.2)
    # 230 rows in blocks of 50: five blocks scored by two actors, in any order
    ids, proba = ray_engine.predict_with_ray(
        files["test"], files["model"], read_kwargs={}, tie_rate=0.2, batch_size=50
    )
    assert list(ids) == list(battles.id)
    assert proba.shape == (230, 3)
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-9)


def test_ray_reports_a_bad_cell_as_the_local_reader_does(ray_local, files):
    with pytest.raises(DataError) as local:
        read_battles(files["bad"])
    with pytest.raises(DataError) as remote:
        ray_engine.predict_with_ray(files["bad"], files["model"], batch_size=20)
    assert type(remote.value) is DataError
    assert str(remote.value) == str(local.value)


def test_bad_options_fail_before_ray_starts(files, tmp_path):
    model = files["model"]
    with pytest.raises(ConfigError, match="streams csv, jsonl, parquet"):
        ray_engine.predict_with_ray(str(tmp_path / "x.json"), model)
    with pytest.raises(ConfigError, match="unknown read option"):
        ray_engine.predict_with_ray(files["test"], model, read_kwargs={"colums": {}})
    with pytest.raises(DataError, match="does not exist"):
        ray_engine.predict_with_ray(str(tmp_path / "missing.csv"), model)
    with pytest.raises(ConfigError, match="tie-rate"):
        ray_engine.predict_with_ray(files["test"], model, tie_rate=1.0)


def test_ray_scores_preference_pairs_in_the_local_a_b_order(ray_local, files, tmp_path):
    kaggle = synthetic_frame(n=90, seed=5)
    pairs = tmp_path / "pairs.jsonl"
    pd.DataFrame(
        {
            "prompt": kaggle["prompt"],
            "chosen": kaggle["response_a"],
            "rejected": kaggle["response_b"],
        }
    ).to_json(pairs, orient="records", lines=True)
    battles = read_battles(pairs)
    expected = predict(load_model(files["model"]), battles)
    ids, proba = ray_engine.predict_with_ray(str(pairs), files["model"], batch_size=20)
    assert list(ids) == list(battles.id)
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-9)


def test_ray_gives_every_block_the_keys_of_the_whole_json_lines_file(ray_local, files, tmp_path):
    """A key only later rows have is a column of every block, empty in the rows without
    it, as the whole-file reader makes it: a block of message-list pairs without
    ``prompt`` must not take the prompt from the messages but name the first empty cell,
    as the local reader does. (Ray may merge small read blocks into one, which hides the
    difference on a file this small; the read task's blocks get the file's keys anyway.)"""
    from test_data_layouts import conversation
    from test_streaming import _jsonl_with_late_keys

    frame = pd.DataFrame(
        [
            {
                "prompt": f"p{i}",
                "chosen": conversation(f"p{i}", f"good {i}"),
                "rejected": conversation(f"p{i}", f"bad {i}"),
            }
            for i in range(60)
        ]
    )
    data = _jsonl_with_late_keys(tmp_path, frame, ["prompt"], from_row=25)
    with pytest.raises(DataError) as local:
        read_battles(data)
    with pytest.raises(DataError) as remote:
        ray_engine.predict_with_ray(str(data), files["model"], batch_size=10)
    # a block counts the further errors of its own rows only
    assert "column prompt: is empty" in str(local.value)
    assert str(remote.value).split(" (and")[0] == str(local.value).split(" (and")[0]


@pytest.mark.parametrize("suffix", [".zip", ".xz"])
def test_ray_refuses_a_compression_its_reader_cannot_open(files, tmp_path, suffix):
    data = tmp_path / f"test.csv{suffix}"
    pd.read_csv(files["test"]).to_csv(data, index=False)
    with pytest.raises(ConfigError, match="--engine local"):
        ray_engine.predict_with_ray(str(data), files["model"])


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "arenajudge.engines.ray_engine")
    with pytest.raises(MissingDependencyError, match=r"arenajudge\[ray\]"):
        importlib.import_module("arenajudge.engines.ray_engine")


def test_cli_predict_with_the_ray_engine_matches_local(ray_local, files, tmp_path):
    from click.testing import CliRunner

    from arenajudge.cli import main

    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.csv"
        result = CliRunner().invoke(
            main,
            [
                "predict",
                files["test"],
                "--model",
                files["model"],
                "--out",
                str(out),
                "--engine",
                engine,
            ],
        )
        assert result.exit_code == 0, result.output
        outputs[engine] = pd.read_csv(out)
    assert outputs["ray"]["id"].tolist() == outputs["local"]["id"].tolist()
    np.testing.assert_allclose(
        outputs["ray"].iloc[:, 1:], outputs["local"].iloc[:, 1:], rtol=0, atol=1e-9
    )
