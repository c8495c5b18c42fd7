"""Bradley–Terry leaderboard: recovery of known strengths, ties, edge cases, CLI."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import spearmanr

from arenajudge.cli import main
from arenajudge.data import LABELS, Battles
from arenajudge.errors import DataError
from arenajudge.leaderboard import COLUMNS, fit_leaderboard

ELO = 400 / math.log(10)


def make_battles(model_a, model_b, target, response_a=None, response_b=None) -> Battles:
    n = len(model_a)
    response_a = response_a or ["answer"] * n
    response_b = response_b or ["answer"] * n
    return Battles(
        id=np.array([str(i) for i in range(n)], dtype=object),
        prompt=[(f"question {i}",) for i in range(n)],
        response_a=[(text,) for text in response_a],
        response_b=[(text,) for text in response_b],
        model_a=np.array(model_a, dtype=object), model_b=np.array(model_b, dtype=object),
        target=np.asarray(target, dtype=float))


def simulate(strength: np.ndarray, n: int, seed: int, tie_rate: float = 0.3
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random pairs with outcomes whose expected score for A is the BT probability.

    Ties take a share of both sides so that p(A) + p(tie) / 2 stays the BT value.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(strength), n)
    b = (a + rng.integers(1, len(strength), n)) % len(strength)
    p = 1 / (1 + np.exp(-(strength[a] - strength[b]) / ELO))
    tie = 2 * tie_rate * np.minimum(p, 1 - p)
    proba = np.column_stack([p - tie / 2, 1 - p - tie / 2, tie])
    outcome = (rng.random(n)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)
    return a, b, np.eye(3)[outcome]


def test_recovers_known_strengths_inside_intervals():
    strength = np.linspace(-300, 300, 12)
    a, b, target = simulate(strength, 6000, seed=1)
    names = np.array([f"m{k:02d}" for k in range(12)], dtype=object)
    board = fit_leaderboard(make_battles(names[a], names[b], target), n_bootstrap=200,
                            seed=0)
    table = board.table.set_index("model").loc[names]
    truth = 1000 + strength - strength.mean()
    assert spearmanr(table["rating"], truth).statistic >= 0.95
    inside = (table["ci_lower"] <= truth) & (truth <= table["ci_upper"])
    assert inside.mean() >= 0.75
    assert np.abs(table["rating"] - truth).max() < 60
    assert board.table["rating"].is_monotonic_decreasing
    assert table["battles"].sum() == 2 * 6000


def test_tie_counts_as_half_a_win_for_each_side():
    # x: one win and three ties in four battles -> score 2.5 / 4
    target = [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]]
    board = fit_leaderboard(make_battles(["x"] * 4, ["y"] * 4, target), n_bootstrap=0,
                            l2=1e-9)
    rating = board.table.set_index("model")["rating"]
    assert rating["x"] - rating["y"] == pytest.approx(400 * math.log10(2.5 / 1.5), abs=1e-3)
    assert board.table.set_index("model")["win_rate"]["x"] == pytest.approx(0.625)


def test_all_ties_give_equal_ratings_anchored_at_1000():
    board = fit_leaderboard(make_battles(["x", "y", "z"], ["y", "z", "x"], [[0, 0, 1]] * 3),
                            n_bootstrap=20)
    assert board.table["rating"].to_numpy() == pytest.approx([1000] * 3)
    assert board.table["win_rate"].to_numpy() == pytest.approx([0.5] * 3)


def test_model_that_never_wins_gets_a_finite_lowest_rating():
    models = ["a", "b", "c", "loser"]
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j] * 5
    # a round robin where the first three split evenly and 'loser' loses every battle
    target = [[0, 1, 0] if models[i] == "loser" else [1, 0, 0] if models[j] == "loser"
              else [0, 0, 1] for i, j in pairs]
    board = fit_leaderboard(make_battles([models[i] for i, _ in pairs],
                                         [models[j] for _, j in pairs], target), n_bootstrap=50)
    last = board.table.iloc[-1]
    assert last["model"] == "loser"
    assert np.isfinite(board.table[["rating", "ci_lower", "ci_upper"]].to_numpy()).all()
    assert board.table["rating"].iloc[0] - last["rating"] > 300
    assert last["win_rate"] == 0


def test_disconnected_comparison_graph_is_an_error():
    battles = make_battles(["a", "b", "c", "d"], ["b", "a", "d", "c"], np.eye(3)[[0, 1, 0, 2]])
    with pytest.raises(DataError, match="disconnected: 2 groups"):
        fit_leaderboard(battles)


def test_rows_without_model_names_are_skipped_and_counted(caplog):
    battles = make_battles(["a", "", "b", "a", "c"], ["b", "c", " ", "a", "a"],
                           np.eye(3)[[0, 0, 1, 2, 1]])
    board = fit_leaderboard(battles, n_bootstrap=0)
    assert (board.skipped, board.self_battles) == (2, 1)
    assert board.table["battles"].sum() == 2 * 2
    assert "skipped 2 rows without model names" in caplog.text


def test_ratings_from_predicted_probabilities():
    # p(x wins) + p(tie) / 2 = 0.7 + 0.2 / 2 = 0.8 in every battle, whatever the votes
    proba = np.tile([0.7, 0.1, 0.2], (10, 1))
    battles = make_battles(["x"] * 10, ["y"] * 10, np.eye(3)[[1] * 10])
    board = fit_leaderboard(battles, proba, n_bootstrap=0, l2=1e-9)
    rating = board.table.set_index("model")["rating"]
    assert rating["x"] - rating["y"] == pytest.approx(400 * math.log10(4), abs=1e-3)
    unlabelled = make_battles(["x"] * 10, ["y"] * 10, np.eye(3)[[1] * 10])
    object.__setattr__(unlabelled, "target", None)
    with pytest.raises(DataError, match="--model"):
        fit_leaderboard(unlabelled)


def test_style_control_discounts_verbosity():
    # Six equally strong models; judges favour the longer answer, and 'verbose'
    # always writes twice as much as everyone else.
    rng = np.random.default_rng(3)
    models = np.array(["verbose", "m1", "m2", "m3", "m4", "m5"], dtype=object)
    n = 3000
    a = rng.integers(0, 6, n)
    b = (a + rng.integers(1, 6, n)) % 6
    words = rng.integers(50, 150, (n, 2)) * np.where(np.column_stack([a, b]) == 0, 2, 1)
    share = (words[:, 0] - words[:, 1]) / words.sum(axis=1)
    outcome = (rng.random(n) > 1 / (1 + np.exp(-4 * share))).astype(int)
    battles = make_battles(models[a], models[b], np.eye(3)[outcome],
                           ["word " * k for k in words[:, 0]], ["word " * k for k in words[:, 1]])
    plain = fit_leaderboard(battles, n_bootstrap=0).table.set_index("model")["rating"]
    styled = fit_leaderboard(battles, n_bootstrap=0, style_control=True)
    adjusted = styled.table.set_index("model")["rating"]
    assert plain["verbose"] > 1080
    assert abs(adjusted["verbose"] - 1000) < 40
    assert styled.style_coefficients["length"] > 0.3


def test_bootstrap_is_seeded():
    a, b, target = simulate(np.linspace(-100, 100, 5), 500, seed=2)
    names = np.array(list("abcde"), dtype=object)
    battles = make_battles(names[a], names[b], target)
    first, again, other = (fit_leaderboard(battles, n_bootstrap=30, seed=s).table
                           for s in (7, 7, 8))
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["ci_lower"], other["ci_lower"])


# --------------------------------------------------------------------------- CLI
def write_csv(path: Path, battles: Battles) -> Path:
    frame = pd.DataFrame({
        "id": battles.id, "model_a": battles.model_a, "model_b": battles.model_b,
        "prompt": [json.dumps(list(p)) for p in battles.prompt],
        "response_a": [json.dumps(list(r)) for r in battles.response_a],
        "response_b": [json.dumps(list(r)) for r in battles.response_b],
        **{label: battles.target[:, k].astype(int) for k, label in enumerate(LABELS)}})
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def votes_csv(tmp_path) -> Path:
    a, b, target = simulate(np.array([-200.0, 0.0, 200.0, 50.0]), 400, seed=4)
    names = np.array(["low", "mid", "top", "midhigh"], dtype=object)
    return write_csv(tmp_path / "votes.csv", make_battles(names[a], names[b], target))


def test_cli_json_is_sorted_list_of_records(votes_csv):
    result = CliRunner().invoke(main, ["leaderboard", str(votes_csv), "--format", "json",
                                       "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [tuple(row) for row in rows] == [COLUMNS] * 4
    assert [row["model"] for row in rows] == ["top", "midhigh", "mid", "low"]
    assert all(r["ci_lower"] <= r["rating"] <= r["ci_upper"] for r in rows)


def test_cli_csv_and_text(votes_csv):
    runner = CliRunner()
    result = runner.invoke(main, ["leaderboard", str(votes_csv), "--format", "csv",
                                  "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert tuple(frame.columns) == COLUMNS and frame["ci_lower"].isna().all()
    result = runner.invoke(main, ["leaderboard", str(votes_csv), "--bootstrap", "10",
                                  "--style-control"])
    assert result.exit_code == 0, result.output
    assert "   1  top" in result.stdout and "style control" in result.stdout


def test_cli_plot_is_a_png_never_overwritten_without_force(votes_csv, tmp_path):
    pytest.importorskip("matplotlib", reason="the report extra (matplotlib) is not installed")
    runner = CliRunner()
    plot = tmp_path / "ratings.png"
    result = runner.invoke(main, ["leaderboard", str(votes_csv), "--plot", str(plot),
                                  "--bootstrap", "10", "--style-control"])
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(main, ["leaderboard", str(votes_csv), "--plot", str(plot)])
    assert again.exit_code == 2 and "--force" in again.stderr


def test_cli_disconnected_graph_is_one_line_error(tmp_path):
    battles = make_battles(["a", "c"], ["b", "d"], np.eye(3)[[0, 1]])
    result = CliRunner().invoke(main, ["leaderboard", str(write_csv(tmp_path / "x.csv",
                                                                    battles))])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "disconnected" in result.stderr


def test_cli_model_rates_unvoted_battles(tmp_path):
    """--model ranks from predictions: a model trained on "longer wins" puts the
    model that always answers at length first, even though the file has no votes."""
    gbdt = pytest.importorskip("arenajudge.models.gbdt")
    rng = np.random.default_rng(5)
    n = 150
    words = rng.integers(1, 60, (n, 2))
    train = make_battles(["p"] * n, ["q"] * n, np.eye(3)[(words[:, 0] < words[:, 1]).astype(int)],
                         ["word " * k for k in words[:, 0]], ["word " * k for k in words[:, 1]])
    model = gbdt.GBDTModel(n_estimators=20, holdout_share=0, min_child_samples=5).fit(train)
    model.save(tmp_path / "model")
    names = np.array(["short", "medium", "long"], dtype=object)
    a = rng.integers(0, 3, 90)
    b = (a + rng.integers(1, 3, 90)) % 3
    unvoted = make_battles(names[a], names[b], np.eye(3)[[2] * 90],
                           ["word " * (5 + 20 * k) for k in a], ["word " * (5 + 20 * k) for k in b])
    frame = pd.read_csv(write_csv(tmp_path / "new.csv", unvoted)).drop(columns=list(LABELS))
    frame.to_csv(tmp_path / "new.csv", index=False)
    result = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "new.csv"), "--model",
                                       str(tmp_path / "model"), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [row["model"] for row in json.loads(result.stdout)] == ["long", "medium", "short"]
    without = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "new.csv")])
    assert without.exit_code == 2 and "--model" in without.stderr
