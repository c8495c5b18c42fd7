"""`arenajudge demo`: the first command a new user runs, here on a small stand-in sample."""

from __future__ import annotations

import importlib.util
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from arenajudge.cli import demo_commands, main
from arenajudge.data import LABELS, read_battles
from arenajudge.models.gbdt import GBDTModel
from arenajudge.models.gbdt_config import GBDTConfig
from conftest import synthetic_frame
from test_cli import FAST_CONFIG


@pytest.fixture
def small_demo(monkeypatch, tmp_path):
    """The demo on 200 synthetic battles of two sources with a tiny model, so it is fast."""
    path = tmp_path / "sample.csv"
    synthetic_frame(n=200).to_csv(path, index=False)
    battles = read_battles(path)
    battles = replace(battles, source=np.where(np.arange(len(battles)) % 3, "big", "small"))
    monkeypatch.setattr(demo_commands, "load_sample", lambda: battles)
    monkeypatch.setattr(
        demo_commands, "GBDTModel", lambda seed: GBDTModel(GBDTConfig(**FAST_CONFIG), seed=seed)
    )
    return battles


def run_demo(*args):
    return CliRunner().invoke(main, ["demo", "--folds", "2", *map(str, args)])


def test_demo_prints_scores_and_writes_model_submission_and_report(small_demo, tmp_path):
    out = tmp_path / "demo"
    result = run_demo("--out", out)
    assert result.exit_code == 0, result.output
    assert "cross-validation" in result.stdout and "held-out test set" in result.stdout
    for line in ("all sources", "big", "small"):
        scored = [row for row in result.stdout.splitlines() if line in row]
        assert scored and all("log loss" in row and "prior" in row for row in scored), line
    submission = pd.read_csv(out / "submission.csv", dtype={"id": str})
    oof = pd.read_csv(out / "oof.csv", dtype={"id": str})
    assert list(submission.columns) == ["id", *LABELS]
    np.testing.assert_allclose(submission[list(LABELS)].sum(axis=1), 1.0, atol=1e-6)
    # the test set and the cross-validated rows split the sample, with no prompt in both
    assert sorted(submission["id"].tolist() + oof["id"].tolist()) == sorted(small_demo.id)
    prompts = dict(zip(small_demo.id, small_demo.prompt))
    assert not {prompts[i] for i in submission["id"]} & {prompts[i] for i in oof["id"]}
    assert (out / "model" / "manifest.json").exists()
    assert str(out / "submission.csv") in result.stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "report" / "index.html").exists()
        assert str(out / "report" / "index.html") in result.stdout


def test_demo_refuses_an_existing_folder_without_force(small_demo, tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = run_demo("--out", out)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "--force" in result.stderr
    assert (out / "mine.txt").read_text() == "keep me"


def test_demo_without_matplotlib_skips_the_report_and_says_how_to_get_it(
    small_demo, tmp_path, monkeypatch
):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a),
    )
    out = tmp_path / "demo"
    out.mkdir()
    result = run_demo("--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert 'pip install -e ".[report]"' in result.stdout
    assert (out / "submission.csv").exists() and not (out / "report").exists()
