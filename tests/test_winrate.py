"""Win rates against a baseline: hand counts, the LC GLM, AlpacaEval's files, PPI, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.special import expit

from arenajudge.cli import main
from arenajudge.data import Battles
from arenajudge.data.model_outputs import pair_with_baseline, read_baseline_battles
from arenajudge.errors import DataError
from arenajudge.leaderboard.ppi import ppi_mean
from arenajudge.winrate import COLUMNS, baseline_pairs, ppi_win_rates, win_rates
from arenajudge.winrate.glm import lc_design, length_controlled, length_controlled_ppi

BASE = "base"


def battles_of(model_a, model_b, target, response_a=None, response_b=None, prompts=None) -> Battles:
    n = len(model_a)
    return Battles(
        id=np.array([str(i) for i in range(n)], dtype=object),
        prompt=[(text,) for text in (prompts or [f"instruction {i}" for i in range(n)])],
        response_a=[(text,) for text in (response_a or ["answer"] * n)],
        response_b=[(text,) for text in (response_b or ["answer"] * n)],
        model_a=np.array(model_a, dtype=object),
        model_b=np.array(model_b, dtype=object),
        target=np.asarray(target, dtype=float),
    )


# --------------------------------------------------------------------------- hand counts
def test_win_rates_equal_hand_counts_with_the_baseline_on_either_side():
    win, lose, tie = [1, 0, 0], [0, 1, 0], [0, 0, 1]
    # m1 against the baseline: wins (as B), wins (as A), tie, loses (as A), soft 0.7 (as B)
    battles = battles_of(
        [BASE, "m1", BASE, "m1", BASE, BASE, "m2", "m1"],
        ["m1", BASE, "m1", BASE, "m1", "m2", BASE, "m2"],
        [lose, win, tie, lose, [0.3, 0.7, 0.0], win, lose, win],
        response_a=["a" * 10, "a" * 30, "a" * 10, "a" * 50, "a" * 10, "a" * 10, "a" * 7, "x"],
        response_b=["b" * 20, "b" * 10, "b" * 40, "b" * 10, "b" * 60, "b" * 4, "b" * 10, "y"],
    )
    table = win_rates(battles, BASE).table.set_index("model")
    m1, m2 = table.loc["m1"], table.loc["m2"]
    shares = np.array([1, 1, 0.5, 0, 0.7])
    assert m1["win_rate"] == pytest.approx(100 * shares.mean(), abs=1e-12)
    assert m1["standard_error"] == pytest.approx(100 * shares.std(ddof=1) / np.sqrt(5))
    assert (m1["n_wins"], m1["n_wins_base"], m1["n_draws"], m1["n_total"]) == (3, 1, 1, 5)
    assert m1["discrete_win_rate"] == pytest.approx(100 * 3.5 / 5)
    assert m1["avg_length"] == int(np.mean([20, 30, 40, 50, 60]))
    # m2 lost twice to the baseline; its battle with m1 is not a baseline pair
    assert (m2["win_rate"], m2["n_total"], m2["n_wins_base"]) == (0.0, 2, 2)
    assert list(win_rates(battles, BASE).table.columns) == ["model", *COLUMNS, "estimate"]


def test_a_pair_voted_twice_counts_once_with_its_votes_averaged(caplog):
    win, lose = [0, 1, 0], [1, 0, 0]
    battles = battles_of(
        [BASE] * 3,
        ["m"] * 3,
        [win, lose, win],
        response_b=["same", "same", "other"],
        prompts=["q1", "q1", "q2"],
    )
    row = win_rates(battles, BASE).table.iloc[0]
    assert (row["n_total"], row["n_draws"], row["n_wins"]) == (2, 1, 1)
    assert row["win_rate"] == pytest.approx(75.0)
    assert "merged repeated pairs" in caplog.text and "m (1)" in caplog.text


def test_baseline_missing_or_a_model_never_meeting_it_is_an_error():
    battles = battles_of(["a", "b"], ["b", "c"], [[1, 0, 0]] * 2)
    with pytest.raises(DataError, match="no battles of the baseline 'base'"):
        win_rates(battles, BASE)
    lonely = battles_of([BASE, "a"], ["a", "c"], [[1, 0, 0]] * 2)
    with pytest.raises(DataError, match="'c' have no battles against the baseline"):
        win_rates(lonely, BASE)


# --------------------------------------------------------------------------- LC GLM
def simulated(
    rng: np.random.Generator,
    strength: dict[str, float],
    length: dict[str, int],
    n: int = 600,
    length_effect: float = 1.5,
) -> tuple[Battles, dict[str, float]]:
    """Each model against the baseline on n instructions of varied difficulty; the
    model's output is preferred with logistic(strength + length_effect * tanh(delta /
    std) - difficulty). Returns the battles and each model's true equal-length win rate."""
    difficulty = rng.normal(0, 1, n)
    rows, truth = [], {}
    for name, theta in strength.items():
        # lengths vary within a model as real outputs do (the GLM learns from that)
        model_len = np.maximum(length[name] * rng.lognormal(0, 0.5, n), 1).astype(int)
        base_len = np.maximum(1000 * rng.lognormal(0, 0.5, n), 1).astype(int)
        delta = model_len - base_len
        p = expit(theta + length_effect * np.tanh(delta / delta.std(ddof=1)) - difficulty)
        won = rng.random(n) < p
        truth[name] = 100 * float(expit(theta - difficulty).mean())
        rows += [(name, f"instruction {i}", model_len[i], base_len[i], won[i]) for i in range(n)]
    model, prompt, m_len, b_len, won = map(list, zip(*rows))
    target = np.where(np.array(won)[:, None], [0, 1, 0], [1, 0, 0])
    return battles_of(
        [BASE] * len(model),
        model,
        target,
        ["x" * k for k in b_len],
        ["y" * k for k in m_len],
        prompt,
    ), truth


def test_length_controlled_win_rate_removes_a_known_length_effect():
    """Two models of equal strength, one verbose, one concise: their raw win rates are
    far apart, their LC win rates equal the true equal-length win rate."""
    battles, truth = simulated(
        np.random.default_rng(0),
        {"verbose": -1.0, "concise": -1.0, "strong": 0.5},
        {"verbose": 1600, "concise": 500, "strong": 1000},
    )
    table = win_rates(battles, BASE).table.set_index("model")
    assert table.at["verbose", "win_rate"] - table.at["concise", "win_rate"] > 20
    for name, value in truth.items():
        assert table.at[name, "length_controlled_winrate"] == pytest.approx(value, abs=4.0)
    assert (
        abs(
            table.at["verbose", "length_controlled_winrate"]
            - table.at["concise", "length_controlled_winrate"]
        )
        < 5
    )


def test_lc_is_finite_when_a_model_wins_everything_or_lengths_never_differ():
    """AlpacaEval's GLM divides by the std of the length difference (NaN when 0)."""
    delta, share = np.zeros(50), np.ones(50)
    lc = length_controlled(share, delta, None)
    assert np.isfinite(lc.win_rate) and lc.win_rate > 95
    assert lc.coef["length"] == 0.0
    mixed = length_controlled(
        np.r_[np.ones(25), np.zeros(25)], np.r_[np.full(25, 100.0), np.zeros(25)], None
    )
    assert np.isfinite(mixed.win_rate) and np.isfinite(mixed.standard_error)


def test_an_lc_win_rate_that_length_alone_decides_is_flagged():
    """A model that wins exactly when it writes more than the baseline: its LC win rate
    is set by the penalty, not the data, and the output says so."""
    rng = np.random.default_rng(2)
    model_len = rng.integers(50, 2000, 300)
    won = model_len > 1000
    battles = battles_of(
        [BASE] * 300,
        ["gamed"] * 300,
        np.where(won[:, None], [0, 1, 0], [1, 0, 0]),
        ["x" * 1000] * 300,
        ["y" * int(k) for k in model_len],
    )
    rates = win_rates(battles, BASE)
    assert len(rates.notes) == 1 and "LC win rate of gamed is not determined" in rates.notes[0]
    assert np.isfinite(rates.table["length_controlled_winrate"]).all()


def test_one_model_has_no_fitted_difficulty_and_a_difficulty_file_is_used(tmp_path):
    battles, _ = simulated(np.random.default_rng(1), {"solo": 0.0}, {"solo": 1000}, n=200)
    alone = win_rates(battles, BASE)
    assert alone.difficulty_source == "none" and alone.difficulty.empty
    difficulty = pd.Series(np.linspace(-1, 1, 200), index=[f"instruction {i}" for i in range(200)])
    given = win_rates(battles, BASE, difficulty=difficulty, difficulty_file="d.csv")
    assert given.difficulty_source == "d.csv"
    with pytest.raises(DataError, match="no difficulty for 1 instruction"):
        win_rates(battles, BASE, difficulty=difficulty.iloc[1:], difficulty_file="d.csv")


# --------------------------------------------------------------------------- AlpacaEval files
def _write_json(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_annotations_json_is_read_with_soft_preferences_and_draws(tmp_path):
    path = _write_json(
        tmp_path / "annotations.json",
        [
            {
                "instruction": "q1",
                "output_1": "base 1",
                "output_2": "mine 1",
                "generator_1": BASE,
                "generator_2": "mine",
                "preference": 2.0,
                "annotator": "x",
            },
            {
                "instruction": "q2",
                "output_1": "base 2",
                "output_2": "mine 2",
                "generator_1": BASE,
                "generator_2": "mine",
                "preference": 1.25,
            },
            {
                "instruction": "q3",
                "output_1": "base 3",
                "output_2": "mine 3",
                "generator_1": BASE,
                "generator_2": "mine",
                "preference": 1.5,
            },
        ],
    )
    battles = read_baseline_battles([path], BASE)
    assert battles.model_a.tolist() == [BASE] * 3 and battles.model_b.tolist() == ["mine"] * 3
    assert np.allclose(battles.target, [[0, 1, 0], [0.75, 0.25, 0], [0, 0, 1]])
    assert battles.response_b[1] == ("mine 2",) and battles.prompt[2] == ("q3",)
    row = win_rates(battles, BASE).table.iloc[0]
    assert row["win_rate"] == pytest.approx(100 * (1 + 0.25 + 0.5) / 3)
    assert (row["n_wins"], row["n_wins_base"], row["n_draws"]) == (1, 1, 1)


def test_annotations_with_a_failed_preference_name_the_row(tmp_path):
    path = _write_json(
        tmp_path / "annotations.json",
        [
            {
                "instruction": "q1",
                "output_1": "a",
                "output_2": "b",
                "generator_1": BASE,
                "generator_2": "mine",
                "preference": 2,
            },
            {
                "instruction": "q2",
                "output_1": "a",
                "output_2": "b",
                "generator_1": BASE,
                "generator_2": "mine",
                "preference": None,
            },
        ],
    )
    with pytest.raises(DataError, match="row id 2: column preference: is empty"):
        read_baseline_battles([path], BASE)


def outputs(generator: str, answers: dict[str, str]) -> list[dict]:
    return [
        {"dataset": "test", "instruction": q, "output": a, "generator": generator}
        for q, a in answers.items()
    ]


def test_model_outputs_files_are_paired_by_instruction(tmp_path):
    base = _write_json(tmp_path / "reference_outputs.json", outputs(BASE, {"q1": "b1", "q2": "b2"}))
    mine = _write_json(tmp_path / "model_outputs.json", outputs("mine", {"q2": "m2", "q1": "m1"}))
    battles = read_baseline_battles([mine, base], BASE)
    assert not battles.labelled
    pairs = {
        p[0]: (a[0], b[0])
        for p, a, b in zip(battles.prompt, battles.response_a, battles.response_b)
    }
    assert pairs == {"q1": ("b1", "m1"), "q2": ("b2", "m2")}


@pytest.mark.parametrize(
    "answers, message",
    [
        (
            {"q1": "m1"},
            (
                r"model 'mine'.s outputs do not match .* 1 \(first: 'q2'\) of the "
                "baseline's instructions have no output"
            ),
        ),
        ({"q1": "m1", "q2": "m2", "q9": "m9"}, r"1 \(first: 'q9'\) of its instructions are not"),
    ],
)
def test_outputs_whose_instructions_differ_from_the_baselines_are_refused(answers, message):
    frame = pd.DataFrame(outputs(BASE, {"q1": "b1", "q2": "b2"}) + outputs("mine", answers)).assign(
        file="outputs.json"
    )
    with pytest.raises(DataError, match=message):
        pair_with_baseline(frame, BASE)


def test_outputs_without_the_baseline_or_answering_twice_are_refused():
    frame = pd.DataFrame(outputs("mine", {"q1": "m1"})).assign(file="o.json")
    with pytest.raises(DataError, match="the baseline 'base' has no outputs"):
        pair_with_baseline(frame, BASE)
    twice = pd.DataFrame(
        outputs(BASE, {"q1": "b"}) + outputs("mine", {"q1": "m"}) + outputs("mine", {"q1": "again"})
    ).assign(file="o.json")
    with pytest.raises(DataError, match="model 'mine' answers 1 .* more than once"):
        pair_with_baseline(twice, BASE)


# --------------------------------------------------------------------------- PPI
def test_ppi_mean_covers_although_the_judge_is_biased():
    """A judge that overrates the model by 15 points: its own mean misses the truth,
    the prediction-powered interval covers it in about 95% of draws and is narrower
    than the votes' own interval when the judge is informative."""
    rng = np.random.default_rng(3)
    truth_p = rng.beta(2, 3, 800)
    covered = judge_covered = 0
    widths = []
    for _ in range(300):
        votes = (rng.random(800) < truth_p).astype(float)
        judge = np.clip(truth_p + 0.15 + rng.normal(0, 0.05, 800), 0, 1)
        pick = rng.choice(800, 100, replace=False)
        powered = ppi_mean(votes[pick], judge[pick], judge)
        target = truth_p.mean()
        covered += abs(powered.estimate - target) <= 1.96 * powered.standard_error
        judge_covered += abs(judge.mean() - target) <= 1.96 * judge.std() / np.sqrt(800)
        widths.append(powered.standard_error / powered.votes_only_standard_error)
    assert covered / 300 >= 0.9
    assert judge_covered == 0
    assert np.mean(widths) < 1


def test_ppi_win_rates_need_votes_of_every_model_and_correct_the_lc():
    rng = np.random.default_rng(4)
    battles, _ = simulated(rng, {"m1": -1.0, "m2": 0.5}, {"m1": 1000, "m2": 1000}, n=400)
    share = baseline_pairs(battles, BASE).share
    # a judge biased towards the models: its probabilities are the votes' smoothed, +0.2
    proba_b = np.clip(0.3 + 0.4 * share + 0.2, 0, 1)
    proba = np.column_stack([1 - proba_b, proba_b, np.zeros(len(share))])
    voted = battles.take(np.r_[np.arange(0, 400, 4), np.arange(400, 800, 4)])
    judged = win_rates(battles.without_labels(), BASE, proba).table.set_index("model")
    powered = ppi_win_rates(
        battles.without_labels(),
        proba,
        voted,
        proba[np.r_[np.arange(0, 400, 4), np.arange(400, 800, 4)]],
        BASE,
    ).table.set_index("model")
    votes = win_rates(battles, BASE).table.set_index("model")
    for name in ("m1", "m2"):
        error_judge = abs(judged.at[name, "win_rate"] - votes.at[name, "win_rate"])
        error_ppi = abs(powered.at[name, "win_rate"] - votes.at[name, "win_rate"])
        assert error_ppi < error_judge and error_ppi < 3 * powered.at[name, "standard_error"]
        assert (
            abs(
                powered.at[name, "length_controlled_winrate"]
                - votes.at[name, "length_controlled_winrate"]
            )
            < 4 * powered.at[name, "lc_standard_error"]
        )
        assert powered.at[name, "n_votes"] == 100
    only_m1 = battles.take(np.arange(0, 400, 4))
    with pytest.raises(DataError, match="0 voted pair.* of model 'm2'"):
        ppi_win_rates(battles.without_labels(), proba, only_m1, proba[:100], BASE)


def test_lc_ppi_with_a_perfect_judge_matches_the_votes_fit():
    rng = np.random.default_rng(5)
    share = (rng.random(300) < 0.3).astype(float)
    delta = rng.normal(0, 200, 300)
    design = lc_design(delta, None)
    plain = length_controlled(share, delta, None)
    powered = length_controlled_ppi(design[:60], share[:60], share[:60], design, share, 1.0)
    # equal up to the ridge, which weighs more against the 60 votes' worth of mass
    assert powered.win_rate == pytest.approx(plain.win_rate, abs=0.01)


# --------------------------------------------------------------------------- CLI
def _votes_file(tmp_path: Path) -> Path:
    battles, _ = simulated(
        np.random.default_rng(6), {"m1": -1.0, "m2": 0.0}, {"m1": 800, "m2": 1200}, n=120
    )
    path = tmp_path / "votes.csv"
    frame = pd.DataFrame(
        {
            "id": battles.id,
            "model_a": battles.model_a,
            "model_b": battles.model_b,
            "prompt": [json.dumps(list(p)) for p in battles.prompt],
            "response_a": [json.dumps(list(r)) for r in battles.response_a],
            "response_b": [json.dumps(list(r)) for r in battles.response_b],
            "winner_model_a": battles.target[:, 0],
            "winner_model_b": battles.target[:, 1],
            "winner_tie": battles.target[:, 2],
        }
    )
    frame.to_csv(path, index=False)
    return path


def test_cli_text_json_csv_and_out(tmp_path):
    votes = _votes_file(tmp_path)
    runner = CliRunner()
    text = runner.invoke(main, ["winrate", str(votes), "--baseline", BASE])
    assert text.exit_code == 0, text.output
    assert "LC win rate" in text.stdout and "from the votes" in text.stdout
    data = json.loads(
        runner.invoke(main, ["winrate", str(votes), "--baseline", BASE, "--format", "json"]).stdout
    )
    assert data["baseline"] == BASE and data["estimate"] == "votes"
    assert {row["model"] for row in data["models"]} == {"m1", "m2"}
    out = tmp_path / "leaderboard.csv"
    result = runner.invoke(
        main, ["winrate", str(votes), "--baseline", BASE, "--format", "csv", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    assert list(written.columns[:11]) == ["model", *COLUMNS]
    as_json = tmp_path / "leaderboard.json"
    assert (
        runner.invoke(
            main, ["winrate", str(votes), "--baseline", BASE, "--out", str(as_json)]
        ).exit_code
        == 0
    )
    assert json.loads(as_json.read_text())["models"][0]["model"] in {"m1", "m2"}
    assert result.stdout.splitlines()[0].startswith("model,win_rate,standard_error")
    again = runner.invoke(main, ["winrate", str(votes), "--baseline", BASE, "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_cli_saved_difficulty_scores_a_later_model_alone(tmp_path):
    votes = _votes_file(tmp_path)
    saved = tmp_path / "difficulty.csv"
    runner = CliRunner()
    assert (
        runner.invoke(
            main, ["winrate", str(votes), "--baseline", BASE, "--save-difficulty", str(saved)]
        ).exit_code
        == 0
    )
    frame = pd.read_csv(votes)
    solo = tmp_path / "solo.csv"
    frame[(frame.model_a == "m1") | (frame.model_b == "m1")].to_csv(solo, index=False)
    result = runner.invoke(
        main,
        ["winrate", str(solo), "--baseline", BASE, "--difficulty", str(saved), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["difficulty"] == str(saved)
    none = runner.invoke(
        main,
        ["winrate", str(solo), "--baseline", BASE, "--save-difficulty", str(tmp_path / "d2.csv")],
    )
    assert none.exit_code == 2 and "no difficulty was fitted" in none.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--baseline", "nobody"], "no battles of the baseline 'nobody'"),
        (["--baseline", BASE, "--votes", "{votes}"], "--votes needs --model"),
        (["--baseline", BASE, "--out", "{votes}"], "is also an input of this command"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, message):
    votes = _votes_file(tmp_path)
    args = [a.replace("{votes}", str(votes)) for a in args]
    result = CliRunner().invoke(main, ["winrate", str(votes), *args])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr


def test_cli_outputs_mixed_with_a_battles_file_is_an_error(tmp_path):
    votes = _votes_file(tmp_path)
    mine = _write_json(tmp_path / "model_outputs.json", outputs("mine", {"q1": "m1"}))
    result = CliRunner().invoke(main, ["winrate", str(mine), str(votes), "--baseline", BASE])
    assert result.exit_code == 2 and "is a battles file" in result.stderr


def test_a_model_outputs_file_given_to_another_command_says_what_it_is(tmp_path):
    mine = _write_json(tmp_path / "model_outputs.json", outputs("mine", {"q1": "m1"}))
    result = CliRunner().invoke(main, ["validate", str(mine)])
    assert result.exit_code == 2 and "AlpacaEval model-outputs file" in result.stderr


@pytest.fixture(scope="module")
def longer_wins_judge(tmp_path_factory) -> str:
    """A tiny CPU model trained on "the longer answer wins"."""
    gbdt = pytest.importorskip("arenajudge.models.gbdt")
    rng = np.random.default_rng(7)
    n = 200
    words = rng.integers(1, 60, (n, 2))
    train = battles_of(
        ["p"] * n,
        ["q"] * n,
        np.eye(3)[(words[:, 0] < words[:, 1]).astype(int)],
        ["word " * k for k in words[:, 0]],
        ["word " * k for k in words[:, 1]],
    )
    path = tmp_path_factory.mktemp("judge") / "model"
    gbdt.GBDTModel(n_estimators=20, min_child_samples=5).fit(train).save(path)
    return str(path)


def test_cli_predicted_and_prediction_powered_win_rates(tmp_path, longer_wins_judge):
    """A judge of "longer wins" predicts the verbose model ahead from outputs alone, and
    says its intervals do not count its own errors; with --votes they are PPI."""
    base = _write_json(
        tmp_path / "reference.json", outputs(BASE, {f"q{i}": "word " * 20 for i in range(40)})
    )
    long = _write_json(
        tmp_path / "long.json", outputs("long", {f"q{i}": "word " * 40 for i in range(40)})
    )
    short = _write_json(
        tmp_path / "short.json", outputs("short", {f"q{i}": "word " * 5 for i in range(40)})
    )
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "winrate",
            str(base),
            str(long),
            str(short),
            "--baseline",
            BASE,
            "--model",
            longer_wins_judge,
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rows = {row["model"]: row for row in data["models"]}
    assert data["estimate"] == "judge" and rows["long"]["win_rate"] > rows["short"]["win_rate"]
    text = runner.invoke(
        main,
        [
            "winrate",
            str(base),
            str(long),
            str(short),
            "--baseline",
            BASE,
            "--model",
            longer_wins_judge,
        ],
    )
    assert "does not count the judge's own errors" in text.stdout
    assert "train the judge with --fold-groups model" in text.stderr
    annotations = _write_json(
        tmp_path / "annotations.json",
        [
            {
                "instruction": f"q{i}",
                "output_1": "word " * 20,
                "output_2": "word " * k,
                "generator_1": BASE,
                "generator_2": name,
                "preference": pref,
            }
            for i in range(10)
            for name, k, pref in (("long", 40, 1 + (i % 3 > 0)), ("short", 5, 1 + (i % 4 == 0)))
        ],
    )
    powered = runner.invoke(
        main,
        [
            "winrate",
            str(base),
            str(long),
            str(short),
            "--baseline",
            BASE,
            "--model",
            longer_wins_judge,
            "--votes",
            str(annotations),
            "--format",
            "json",
        ],
    )
    assert powered.exit_code == 0, powered.output
    data = json.loads(powered.stdout)
    assert data["estimate"] == "prediction-powered"
    assert all(row["n_votes"] == 10 for row in data["models"])


def test_cli_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs the report extra")
    votes = _votes_file(tmp_path)
    plot = tmp_path / "winrates.png"
    result = CliRunner().invoke(
        main, ["winrate", str(votes), "--baseline", BASE, "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_judge_calibrated_for_unseen_models_holds_out_whole_models():
    """fold_groups="model": the holdout and the calibration's folds keep each model's
    pairs together, as `winrate --model` meets a new model."""
    gbdt = pytest.importorskip("arenajudge.models.gbdt")
    rng = np.random.default_rng(8)
    names = [f"m{k}" for k in range(12)]
    model = np.repeat(names, 30)
    words = rng.integers(1, 60, len(model))
    battles = battles_of(
        [BASE] * len(model),
        list(model),
        np.eye(3)[(words > 20).astype(int)],
        ["word " * 20] * len(model),
        ["word " * k for k in words],
        prompts=[f"q{i % 30}" for i in range(len(model))],
    )
    judge = gbdt.GBDTModel(fold_groups="model", n_estimators=30, min_child_samples=5)
    judge.fit(battles)
    fold = judge._folds(battles)
    assert (pd.Series(fold).groupby(model).nunique() == 1).all()
    assert judge.validation_, "the calibration was fitted on held-out models"
    proba = judge.predict_proba(battles)
    assert np.allclose(proba.sum(axis=1), 1)
