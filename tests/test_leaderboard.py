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
        model_a=np.array(model_a, dtype=object),
        model_b=np.array(model_b, dtype=object),
        target=np.asarray(target, dtype=float),
    )


def simulate(
    strength: np.ndarray, n: int, seed: int, tie_rate: float = 0.3
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
    board = fit_leaderboard(
        make_battles(names[a], names[b], target), ci="bootstrap", n_bootstrap=200, seed=0
    )
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
    board = fit_leaderboard(make_battles(["x"] * 4, ["y"] * 4, target), ci="none", l2=1e-9)
    rating = board.table.set_index("model")["rating"]
    assert rating["x"] - rating["y"] == pytest.approx(400 * math.log10(2.5 / 1.5), abs=1e-3)
    assert board.table.set_index("model")["win_rate"]["x"] == pytest.approx(0.625)


def test_all_ties_give_equal_ratings_anchored_at_1000():
    board = fit_leaderboard(make_battles(["x", "y", "z"], ["y", "z", "x"], [[0, 0, 1]] * 3))
    assert board.table["rating"].to_numpy() == pytest.approx([1000] * 3)
    assert board.table["win_rate"].to_numpy() == pytest.approx([0.5] * 3)


def test_model_that_never_wins_gets_a_finite_lowest_rating():
    models = ["a", "b", "c", "loser"]
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j] * 5
    # a round robin where the first three split evenly and 'loser' loses every battle
    target = [
        [0, 1, 0] if models[i] == "loser" else [1, 0, 0] if models[j] == "loser" else [0, 0, 1]
        for i, j in pairs
    ]
    board = fit_leaderboard(
        make_battles([models[i] for i, _ in pairs], [models[j] for _, j in pairs], target)
    )
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
    battles = make_battles(
        ["a", "", "b", "a", "c"], ["b", "c", " ", "a", "a"], np.eye(3)[[0, 0, 1, 2, 1]]
    )
    board = fit_leaderboard(battles, ci="none")
    assert (board.skipped, board.self_battles) == (2, 1)
    assert board.table["battles"].sum() == 2 * 2
    assert "skipped 2 rows without model names" in caplog.text


def test_ratings_from_predicted_probabilities():
    # p(x wins) + p(tie) / 2 = 0.7 + 0.2 / 2 = 0.8 in every battle, whatever the votes
    proba = np.tile([0.7, 0.1, 0.2], (10, 1))
    battles = make_battles(["x"] * 10, ["y"] * 10, np.eye(3)[[1] * 10])
    board = fit_leaderboard(battles, proba, ci="none", l2=1e-9)
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
    battles = make_battles(
        models[a],
        models[b],
        np.eye(3)[outcome],
        ["word " * k for k in words[:, 0]],
        ["word " * k for k in words[:, 1]],
    )
    plain = fit_leaderboard(battles, ci="none").table.set_index("model")["rating"]
    styled = fit_leaderboard(battles, ci="none", style_control=True)
    adjusted = styled.table.set_index("model")["rating"]
    assert plain["verbose"] > 1080
    assert abs(adjusted["verbose"] - 1000) < 40
    assert styled.style_coefficients["length"] > 0.3


def test_bootstrap_is_seeded():
    a, b, target = simulate(np.linspace(-100, 100, 5), 500, seed=2)
    names = np.array(list("abcde"), dtype=object)
    battles = make_battles(names[a], names[b], target)
    first, again, other = (
        fit_leaderboard(battles, ci="bootstrap", n_bootstrap=39, seed=s).table for s in (7, 7, 8)
    )
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["ci_lower"], other["ci_lower"])


# --------------------------------------------------------------------------- CLI
def write_csv(path: Path, battles: Battles) -> Path:
    frame = pd.DataFrame(
        {
            "id": battles.id,
            "model_a": battles.model_a,
            "model_b": battles.model_b,
            "prompt": [json.dumps(list(p)) for p in battles.prompt],
            "response_a": [json.dumps(list(r)) for r in battles.response_a],
            "response_b": [json.dumps(list(r)) for r in battles.response_b],
            **{label: battles.target[:, k].astype(int) for k, label in enumerate(LABELS)},
        }
    )
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def votes_csv(tmp_path) -> Path:
    a, b, target = simulate(np.array([-200.0, 0.0, 200.0, 50.0]), 400, seed=4)
    names = np.array(["low", "mid", "top", "midhigh"], dtype=object)
    return write_csv(tmp_path / "votes.csv", make_battles(names[a], names[b], target))


def test_cli_json_is_sorted_list_of_records(votes_csv):
    result = CliRunner().invoke(
        main,
        [
            "leaderboard",
            str(votes_csv),
            "--format",
            "json",
            "--ci",
            "bootstrap",
            "--bootstrap",
            "39",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["models"]
    assert [tuple(row) for row in rows] == [COLUMNS] * 4
    assert [row["model"] for row in rows] == ["top", "midhigh", "mid", "low"]
    assert all(r["ci_lower"] <= r["rating"] <= r["ci_upper"] for r in rows)


def test_cli_csv_and_text(votes_csv):
    runner = CliRunner()
    result = runner.invoke(main, ["leaderboard", str(votes_csv), "--format", "csv", "--ci", "none"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert tuple(frame.columns) == COLUMNS and frame["ci_lower"].isna().all()
    result = runner.invoke(main, ["leaderboard", str(votes_csv), "--style-control"])
    assert result.exit_code == 0, result.output
    assert "   1  top" in result.stdout and "style control" in result.stdout


def test_cli_plot_is_a_png_never_overwritten_without_force(votes_csv, tmp_path):
    pytest.importorskip("matplotlib", reason="the report extra (matplotlib) is not installed")
    runner = CliRunner()
    plot = tmp_path / "ratings.png"
    result = runner.invoke(
        main,
        [
            "leaderboard",
            str(votes_csv),
            "--plot",
            str(plot),
            "--ci",
            "bootstrap",
            "--bootstrap",
            "39",
            "--style-control",
        ],
    )
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(main, ["leaderboard", str(votes_csv), "--plot", str(plot)])
    assert again.exit_code == 2 and "--force" in again.stderr


def test_cli_disconnected_graph_is_one_line_error(tmp_path):
    battles = make_battles(["a", "c"], ["b", "d"], np.eye(3)[[0, 1]])
    result = CliRunner().invoke(main, ["leaderboard", str(write_csv(tmp_path / "x.csv", battles))])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "disconnected" in result.stderr


@pytest.fixture(scope="module")
def length_judge(tmp_path_factory) -> str:
    """A tiny CPU model trained on "the longer answer wins", saved once per module."""
    gbdt = pytest.importorskip("arenajudge.models.gbdt")
    path = tmp_path_factory.mktemp("judge") / "model"
    rng = np.random.default_rng(5)
    n = 150
    words = rng.integers(1, 60, (n, 2))
    train = make_battles(
        ["p"] * n,
        ["q"] * n,
        np.eye(3)[(words[:, 0] < words[:, 1]).astype(int)],
        ["word " * k for k in words[:, 0]],
        ["word " * k for k in words[:, 1]],
    )
    gbdt.GBDTModel(n_estimators=20, holdout_share=0, min_child_samples=5).fit(train).save(path)
    return str(path)


def length_battles(
    path: Path,
    n: int,
    rng: np.random.Generator,
    votes: bool,
    names: tuple[str, ...] = ("short", "medium", "long"),
) -> Path:
    """Battles where model k answers with 5 + 20 k words; votes mostly prefer longer."""
    a = rng.integers(0, 3, n)
    b = (a + rng.integers(1, 3, n)) % 3
    longer_wins = np.where(rng.random(n) < 0.8, (a < b).astype(int), (a > b).astype(int))
    battles = make_battles(
        np.array(names, dtype=object)[a],
        np.array(names, dtype=object)[b],
        np.eye(3)[longer_wins],
        ["word " * (5 + 20 * k) for k in a],
        ["word " * (5 + 20 * k) for k in b],
    )
    frame = pd.read_csv(write_csv(path, battles))
    (frame if votes else frame.drop(columns=list(LABELS))).to_csv(path, index=False)
    return path


def test_cli_model_rates_unvoted_battles(tmp_path, length_judge):
    """--model ranks from predictions: a model trained on "longer wins" puts the
    model that always answers at length first, even though the file has no votes."""
    length_battles(tmp_path / "new.csv", 90, np.random.default_rng(5), votes=False)
    result = CliRunner().invoke(
        main,
        ["leaderboard", str(tmp_path / "new.csv"), "--model", length_judge, "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    assert [row["model"] for row in json.loads(result.stdout)["models"]] == [
        "long",
        "medium",
        "short",
    ]
    without = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "new.csv")])
    assert without.exit_code == 2 and "--model" in without.stderr


# --------------------------------------------------------------------------- intervals, ties
def test_sandwich_and_bootstrap_intervals_agree():
    strength = np.linspace(-250, 250, 8)
    a, b, target = simulate(strength, 4000, seed=6)
    names = np.array([f"m{k}" for k in range(8)], dtype=object)
    battles = make_battles(names[a], names[b], target)
    sandwich = fit_leaderboard(battles).table.set_index("model")
    bootstrap = fit_leaderboard(battles, ci="bootstrap", n_bootstrap=300, seed=1).table
    bootstrap = bootstrap.set_index("model").loc[sandwich.index]
    assert np.allclose(sandwich["rating"], bootstrap["rating"])
    ratio = (sandwich["ci_upper"] - sandwich["ci_lower"]) / (
        bootstrap["ci_upper"] - bootstrap["ci_lower"]
    )
    assert ratio.between(0.8, 1.25).all(), ratio
    centre = (sandwich["ci_upper"] + sandwich["ci_lower"]) / 2
    assert np.allclose(centre, sandwich["rating"])


def simulate_ties(
    strength: np.ndarray, n: int, seed: int, model: str, parameter: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes drawn from the Davidson or Rao–Kupper model (strengths in Elo)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(strength), n)
    b = (a + rng.integers(1, len(strength), n)) % len(strength)
    d = (strength[a] - strength[b]) / ELO
    if model == "davidson":
        weights = np.column_stack([np.exp(d / 2), np.exp(-d / 2), np.full(n, parameter)])
        proba = weights / weights.sum(axis=1, keepdims=True)
    else:
        kappa = math.log(parameter)
        p_a, p_b = 1 / (1 + np.exp(kappa - d)), 1 / (1 + np.exp(kappa + d))
        proba = np.column_stack([p_a, p_b, 1 - p_a - p_b])
    outcome = (rng.random(n)[:, None] > np.cumsum(proba, axis=1)).sum(axis=1)
    return a, b, np.eye(3)[np.minimum(outcome, 2)]


@pytest.mark.parametrize("model, parameter", [("davidson", 0.7), ("rao-kupper", 1.8)])
def test_tie_parameter_is_recovered(model, parameter):
    strength = np.linspace(-300, 300, 10)
    a, b, target = simulate_ties(strength, 5000, seed=7, model=model, parameter=parameter)
    names = np.array([f"m{k}" for k in range(10)], dtype=object)
    board = fit_leaderboard(make_battles(names[a], names[b], target), ties=model)
    assert board.tie_parameter == pytest.approx(parameter, rel=0.10)
    table = board.table.set_index("model").loc[names]
    truth = 1000 + strength - strength.mean()
    assert np.abs(table["rating"] - truth).max() < 60
    inside = (table["ci_lower"] <= truth) & (truth <= table["ci_upper"])
    assert inside.mean() >= 0.7
    # ties as half wins compress the scale when ties are common: the tie models do not
    half = fit_leaderboard(make_battles(names[a], names[b], target)).table.set_index("model")
    assert np.ptp(table["rating"]) > np.ptp(half["rating"])


def test_tie_model_needs_ties():
    battles = make_battles(["x", "y"], ["y", "x"], np.eye(3)[[0, 1]])
    with pytest.raises(DataError, match="has no ties"):
        fit_leaderboard(battles, ties="davidson")


def test_arena_votes_layout_keeps_both_bad_ties(tmp_path):
    a, b, target = simulate(np.array([-100.0, 0.0, 100.0]), 300, seed=8, tie_rate=0.4)
    names = np.array(["p", "q", "r"], dtype=object)
    winner = np.array(["model_a", "model_b", "tie"], dtype=object)[target.argmax(axis=1)]
    ties = np.flatnonzero(winner == "tie")
    winner[ties[::3]] = "tie (bothbad)"
    winner[ties[1::3]] = "both_bad"
    path = tmp_path / "arena.csv"
    pd.DataFrame(
        {"question_id": range(300), "model_a": names[a], "model_b": names[b], "winner": winner}
    ).to_csv(path, index=False)
    result = CliRunner().invoke(
        main, ["leaderboard", str(path), "--ties", "rao-kupper", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["both_bad_share_of_ties"] == pytest.approx(
        (len(ties[::3]) + len(ties[1::3])) / len(ties)
    )
    assert summary["battles"] == 300 and len(summary["models"]) == 3
    text = CliRunner().invoke(main, ["leaderboard", str(path), "--ties", "davidson"])
    assert "fitted nu = " in text.stdout and "of ties voted both bad" in text.stdout


# --------------------------------------------------------------------------- prediction-powered
def biased_judge(
    target: np.ndarray, a: np.ndarray, b: np.ndarray, strength: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A judge that half knows each battle's outcome but rates model 0 150 Elo too high."""
    biased = strength + np.where(np.arange(len(strength)) == 0, 150.0, 0.0)
    p = 1 / (1 + np.exp(-(biased[a] - biased[b]) / ELO))
    prior = np.column_stack([0.85 * p, 0.85 * (1 - p), np.full(len(a), 0.15)])
    noise = rng.dirichlet(np.ones(3), len(a))
    return 0.5 * prior + 0.3 * target + 0.2 * noise


def test_prediction_powered_intervals_cover_although_the_judge_is_biased():
    from arenajudge.leaderboard.ppi import fit_ppi_leaderboard

    strength = np.linspace(-200, 200, 6)
    names = np.array([f"m{k}" for k in range(6)], dtype=object)
    truth = pd.Series(1000 + strength - strength.mean(), index=names)
    covered, judge_covered, ratios = [], [], []
    for seed in range(30):
        a, b, target = simulate(strength, 3000, seed=100 + seed)
        proba = biased_judge(target, a, b, strength, np.random.default_rng(seed))
        battles = make_battles(names[a], names[b], target)
        voted, unvoted = battles.take(np.arange(300)), battles.take(np.arange(300, 3000))
        board = fit_ppi_leaderboard(voted, proba[:300], unvoted.without_labels(), proba[300:])
        table = board.table.set_index("model").loc[names]
        covered.extend((table["ci_lower"] <= truth) & (truth <= table["ci_upper"]))
        judge = fit_leaderboard(battles, proba).table.set_index("model").loc[names]
        judge_covered.extend((judge["ci_lower"] <= truth) & (truth <= judge["ci_upper"]))
        ratios.append(board.prediction_powered["width_ratio"])
    assert np.mean(covered) >= 0.88
    assert np.mean(judge_covered) < 0.6  # the judge alone is confidently wrong
    assert np.mean(ratios) < 0.95  # and still its predictions narrow the intervals
    gain = board.prediction_powered
    assert 0 < gain["lambda"] <= 1 and gain["effective_human_votes"] > 300
    assert gain["voted_battles"] == 300 and gain["unvoted_battles"] == 2700


def test_prediction_powered_needs_votes_on_every_model():
    from arenajudge.leaderboard.ppi import fit_ppi_leaderboard

    voted = make_battles(["x", "y"], ["y", "x"], np.eye(3)[[0, 1]])
    unvoted = make_battles(["x", "z"], ["z", "y"], np.eye(3)[[0, 0]])
    with pytest.raises(DataError, match="no human-voted battles of 1 model.*z"):
        fit_ppi_leaderboard(voted, np.full((2, 3), 1 / 3), unvoted, np.full((2, 3), 1 / 3))


def test_suggested_battles_go_where_adjacent_ranks_are_least_certain():
    from arenajudge.leaderboard.ppi import fit_ppi_leaderboard, suggest_battles

    # x and y are far apart and measured often; y and z are close and barely measured
    rng = np.random.default_rng(9)
    pairs = [("x", "y")] * 300 + [("y", "z")] * 12 + [("x", "z")] * 30
    outcome = [
        0 if p == ("x", "y") and rng.random() < 0.9 else int(rng.random() < 0.5) for p in pairs
    ]
    voted = make_battles([p[0] for p in pairs], [p[1] for p in pairs], np.eye(3)[outcome])
    unvoted = make_battles(["x", "y", "x"] * 40, ["y", "z", "z"] * 40, np.eye(3)[[2] * 120])
    proba = np.full((120, 3), 1 / 3)
    board = fit_ppi_leaderboard(voted, np.full((len(pairs), 3), 1 / 3), unvoted, proba)
    plan = suggest_battles(board, unvoted, proba, 20)
    assert list(plan.columns) == ["id", "model_a", "model_b", "variance_reduction"]
    assert len(plan) == 20 and plan["id"].is_unique
    assert ((plan["model_a"] == "y") & (plan["model_b"] == "z")).mean() >= 0.6
    assert plan["variance_reduction"].is_monotonic_decreasing


# --------------------------------------------------------------------------- --by categories
def category_csv(tmp_path: Path, extra: pd.DataFrame | None = None) -> Path:
    """Votes where English follows top > mid > low and German the reverse order."""
    names = np.array(["low", "mid", "top"], dtype=object)
    a, b, target = simulate(np.array([-200.0, 0.0, 200.0]), 600, seed=10)
    a_de, b_de, target_de = simulate(np.array([200.0, 0.0, -200.0]), 300, seed=11)
    frames = [
        pd.read_csv(
            write_csv(tmp_path / f"{lang}.csv", make_battles(names[x], names[y], t))
        ).assign(language=lang)
        for lang, x, y, t in (
            ("en", a, b, target),
            ("de", a_de, b_de, target_de),
            ("fr", a[:40], b[:40], target[:40]),
        )
    ]
    frame = pd.concat(frames + ([extra] if extra is not None else []), ignore_index=True)
    frame["id"] = range(len(frame))
    frame.to_csv(tmp_path / "votes.csv", index=False)
    return tmp_path / "votes.csv"


def test_cli_by_column_fits_one_board_per_category(tmp_path):
    path = category_csv(tmp_path)
    result = CliRunner().invoke(
        main,
        ["leaderboard", str(path), "--by", "language", "--min-battles", "100", "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [row["model"] for row in summary["models"]] == ["top", "mid", "low"]
    by = summary["by"]
    assert list(by["boards"]) == ["en", "de"] and by["too_small"] == {"fr": 40}
    assert by["boards"]["en"]["rank_changes"] == []
    assert [row["model"] for row in by["boards"]["de"]["models"]] == ["low", "mid", "top"]
    assert {
        (c["model"], c["overall_rank"], c["rank"]) for c in by["boards"]["de"]["rank_changes"]
    } == {("low", 3, 1), ("top", 1, 3)}
    assert by["boards"]["de"]["battles"] == 300
    text = CliRunner().invoke(
        main, ["leaderboard", str(path), "--by", "language", "--min-battles", "100"]
    )
    assert "language=de (300 battles, 3 models): ranks differ: low 3->1, top 1->3" in text.stdout
    assert "language=en (600 battles, 3 models): same order as overall" in text.stdout
    table = pd.read_csv(
        io.StringIO(
            CliRunner()
            .invoke(
                main,
                [
                    "leaderboard",
                    str(path),
                    "--by",
                    "language",
                    "--min-battles",
                    "100",
                    "--format",
                    "csv",
                ],
            )
            .stdout
        )
    )
    assert list(table["board"].unique()) == ["all", "language=en", "language=de"]
    missing = CliRunner().invoke(main, ["leaderboard", str(path), "--by", "topic"])
    assert missing.exit_code == 2 and "has no column 'topic' for --by" in missing.stderr


def test_cli_by_disconnected_category_is_one_line_error(tmp_path):
    split = pd.DataFrame(
        {
            "model_a": ["low", "mid"] * 60,
            "model_b": ["mid", "low"] * 60,
            "prompt": '["q"]',
            "response_a": '["a"]',
            "response_b": '["b"]',
            "winner_model_a": 1,
            "winner_model_b": 0,
            "winner_tie": 0,
            "language": "es",
        }
    )
    split.loc[::2, ["model_a", "model_b"]] = ["top", "other"]
    result = CliRunner().invoke(
        main,
        [
            "leaderboard",
            str(category_csv(tmp_path, split)),
            "--by",
            "language",
            "--min-battles",
            "100",
        ],
    )
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: ")
    assert (
        "--by language: category 'es' (120 battles): the comparison graph is "
        "disconnected" in result.stderr
    )


def test_cli_prediction_powered_board_and_suggestions(tmp_path, length_judge):
    rng, model = np.random.default_rng(12), length_judge
    votes = str(length_battles(tmp_path / "votes.csv", 90, rng, votes=True))
    new = str(length_battles(tmp_path / "new.csv", 300, rng, votes=False))
    runner = CliRunner()
    result = runner.invoke(
        main, ["leaderboard", votes, "--model", model, "--unlabelled", new, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [row["model"] for row in summary["models"]] == ["long", "medium", "short"]
    gain = summary["prediction_powered"]
    assert (gain["voted_battles"], gain["unvoted_battles"]) == (90, 300)
    assert gain["effective_human_votes"] > 90 and gain["width_ratio"] < 1
    text = runner.invoke(main, ["leaderboard", votes, "--model", model, "--unlabelled", new])
    assert "prediction-powered (PPI++" in text.stdout and "human votes" in text.stdout
    plan = runner.invoke(
        main, ["leaderboard", votes, "--model", model, "--unlabelled", new, "--suggest", "5"]
    )
    assert plan.exit_code == 0, plan.output
    frame = pd.read_csv(io.StringIO(plan.stdout), dtype={"id": str})
    assert list(frame.columns) == ["id", "model_a", "model_b", "variance_reduction"]
    assert len(frame) == 5 and set(frame["id"]) <= set(pd.read_csv(new, dtype=str)["id"])
    alone = runner.invoke(main, ["leaderboard", votes, "--suggest", "5"])
    assert alone.exit_code == 2 and "--suggest picks among --unlabelled" in alone.stderr
    unjudged = runner.invoke(main, ["leaderboard", votes, "--unlabelled", new])
    assert unjudged.exit_code == 2 and "--unlabelled needs --model" in unjudged.stderr


# --------------------------------------------------------------------------- plots
MATH_NAMES = ("$x$", "$x_$")  # "$x_$" is invalid mathtext: drawing it unescaped fails


def test_model_names_with_dollars_are_drawn_verbatim(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the report extra")
    from matplotlib.figure import Figure

    from arenajudge.report.plots import leaderboard

    rows = [
        {"model": name, "rating": 1000.0, "ci_lower": 990.0, "ci_upper": 1010.0}
        for name in MATH_NAMES
    ]
    figure = Figure()
    leaderboard(figure, {"rows": rows, "title": "$1 ratings"})
    figure.savefig(tmp_path / "plot.png")
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert labels == [r"\$x\$", r"\$x_\$"]

    for command in ("leaderboard", "report"):
        votes = length_battles(
            tmp_path / f"{command}.csv",
            60,
            np.random.default_rng(13),
            votes=True,
            names=(*MATH_NAMES, "plain"),
        )
        out = tmp_path / (f"{command}.png" if command == "leaderboard" else "report")
        args = ["--plot", str(out)] if command == "leaderboard" else ["--out", str(out)]
        result = CliRunner().invoke(main, [command, str(votes), *args])
        assert result.exit_code == 0, result.output
        png = out if command == "leaderboard" else next(out.glob("*battles_per_model*.png"))
        assert png.read_bytes()[:4] == b"\x89PNG"
