"""Printed numbers are honest and valid: in-sample and tie-share caveats, finite float
options, intervals that hold their estimates, and tie rates from the smallest positive
float to just below 1 (issue 24, points 8-10)."""

from __future__ import annotations

import json

import click
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from arenajudge.calibration import Calibration
from arenajudge.cli import main
from arenajudge.cli.options import FiniteFloat
from arenajudge.data import LABELS, read_battles
from arenajudge.errors import ConfigError
from arenajudge.evaluate import (
    battle_keys_of,
    rows_in_training,
    score_caveats,
    tie_share_gap,
    trained_sections,
    training_caveats,
)
from arenajudge.leaderboard import fit_leaderboard, intervals
from arenajudge.models.manifest import data_summary
from arenajudge.ties import prior_shift
from conftest import synthetic_frame

FAST_CONFIG = {
    "n_estimators": 30,
    "min_child_samples": 5,
    "num_leaves": 7,
    "holdout_share": 0.25,
    "early_stopping_rounds": 10,
    "embedding_dim": 16,
    "n_jobs": 1,
}
TIE_RATES = [5e-324, 1e-300, 1e-12, 0.3, 0.5, 1 - 1e-12, 0.9999999999999999]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_valid(proba: np.ndarray) -> None:
    proba = np.asarray(proba, dtype=float)
    assert proba.shape[1] == 3
    assert np.isfinite(proba).all()
    assert (proba >= 0).all() and (proba <= 1).all()
    assert np.allclose(proba.sum(axis=1), 1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("honest")
    synthetic_frame(n=240).to_csv(root / "train.csv", index=False)
    synthetic_frame(n=80, seed=5).to_csv(root / "fresh.csv", index=False)
    (root / "config.yaml").write_text(yaml.safe_dump(FAST_CONFIG))
    result = run(
        "train", root / "train.csv", "--out", root / "model", "--config", root / "config.yaml"
    )
    assert result.exit_code == 0, result.output
    return root


# ------------------------------------------------------------ 10: extreme tie rates
def _random_proba(n: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet([0.3, 0.3, 0.3], size=n)


@pytest.mark.parametrize("tie_model", ["prior_shift", "davidson"])
@pytest.mark.parametrize("tie_rate", TIE_RATES)
def test_every_valid_tie_rate_gives_probabilities(tie_model, tie_rate):
    margins = tuple(np.linspace(0.01, 0.5, 11))
    calibration = Calibration(
        temperature=1.3, train_prior=(0.45, 0.45, 0.1), tie_model=tie_model, margins=margins
    )
    assert_valid(calibration.transform(_random_proba(), tie_rate=tie_rate))


@pytest.mark.parametrize("tie_rate", TIE_RATES)
def test_prior_shift_is_finite_and_normalised_even_with_zeros(tie_rate):
    proba = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1e-300, 1e-300, 1.0]])
    assert_valid(prior_shift(proba, tie_rate, (1 / 3, 1 / 3, 1 / 3)))


def test_tie_rates_order_the_tie_column():
    calibration = Calibration(tie_model="davidson", margins=tuple(np.linspace(0.01, 0.5, 11)))
    ties = [
        calibration.transform(_random_proba(), tie_rate=r)[:, 2].mean()
        for r in (5e-324, 0.05, 0.3, 0.9)
    ]
    assert ties == sorted(ties) and abs(ties[2] - 0.3) < 0.05


@pytest.mark.parametrize("tie_rate", ["5e-324", "1e-300", "0.3", "0.9999999999999999"])
def test_cli_predict_with_an_extreme_tie_rate(workspace, tmp_path, tie_rate):
    out = tmp_path / "submission.csv"
    result = run(
        "predict",
        workspace / "fresh.csv",
        "--model",
        workspace / "model",
        "--out",
        out,
        "--tie-rate",
        tie_rate,
    )
    assert result.exit_code == 0, result.output
    assert_valid(pd.read_csv(out)[list(LABELS)].to_numpy())


@pytest.mark.parametrize("tie_rate", [5e-324, 1e-300, 0.3, 0.9999999999999999])
def test_service_with_an_extreme_tie_rate(workspace, tie_rate):
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    from fastapi.testclient import TestClient

    from arenajudge import serve

    battle = {
        "id": "1",
        "prompt": "What is 2+2?",
        "response_a": "4",
        "response_b": "It is five, I think.",
    }
    from arenajudge.models.registry import load_model

    model_dir = str(workspace / "model")
    app = serve.create_app(serve.Settings(model_dir), load_model(model_dir))
    with TestClient(app) as client:
        response = client.post("/v1/judge", json={"battles": [battle], "tie_rate": tie_rate})
    assert response.status_code == 200, response.text
    row = response.json()["results"][0]
    assert_valid(np.array([[row[label] for label in LABELS]]))


# ------------------------------------------------------------ 9: numbers in options
def _float_options():
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        for param in command.params:
            if isinstance(param.type, click.types.FloatParamType):
                yield name, param


def test_every_float_option_refuses_nan_and_infinities():
    seen = list(_float_options())
    assert len(seen) > 20
    for command, param in seen:
        assert isinstance(param.type, FiniteFloat), f"{command} {param.opts[0]}"
        for text in ("nan", "NaN", "inf", "-inf", "infinity"):
            with pytest.raises(click.BadParameter):
                param.type.convert(text, param, None)


@pytest.mark.parametrize(
    "args",
    [
        ("train", "DATA", "--out", "m", "--lambda-l2", "inf"),
        ("train", "DATA", "--out", "m", "--lr", "nan"),
        ("predict", "DATA", "--model", "MODEL", "--out", "o.csv", "--tie-rate", "nan"),
    ],
)
def test_cli_refuses_non_finite_floats_in_one_line(workspace, tmp_path, args):
    args = [
        workspace / "train.csv"
        if a == "DATA"
        else workspace / "model"
        if a == "MODEL"
        else tmp_path / a
        if a in ("m", "o.csv")
        else a
        for a in args
    ]
    assert_one_line_error(run(*args), "not a finite number")


def test_help_ranges_are_readable(workspace, tmp_path):
    result = run("pseudo-label", "--help")
    assert "0.333<=x<=1" in result.output and "0.3333333333" not in result.output
    # the refusal gives the exact bound: 0.333 itself is below 1/3
    result = run(
        "pseudo-label",
        workspace / "fresh.csv",
        "--model",
        workspace / "model",
        "--out",
        tmp_path / "o.csv",
        "--min-confidence",
        "0.333",
    )
    assert "0.3333333333333333<=x" in result.stderr


@pytest.mark.parametrize("n_bootstrap", [0, 1, 38])
def test_too_few_bootstrap_replicates_are_refused(workspace, n_bootstrap):
    battles = read_battles(workspace / "train.csv")
    with pytest.raises(ConfigError, match="cannot give a 95% interval"):
        fit_leaderboard(battles, ci="bootstrap", n_bootstrap=n_bootstrap)
    assert_one_line_error(
        run(
            "leaderboard", workspace / "train.csv", "--ci", "bootstrap", "--bootstrap", n_bootstrap
        ),
        "at least 39",
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--bootstrap", "100"), "--ci bootstrap"),
        (("--min-battles", "50"), "--by"),
    ],
)
def test_leaderboard_options_that_would_be_ignored_are_refused(workspace, args, fragment):
    assert_one_line_error(run("leaderboard", workspace / "train.csv", *args), fragment)


def test_a_bootstrap_interval_holds_its_estimate_even_when_replicates_miss_it():
    # every refit lands above the estimate: percentiles alone would exclude it
    estimate = np.array([-50.0, 0.0, 50.0])
    low, high = intervals.bootstrap_interval(
        lambda weight: np.array([1.0, 2.0, 3.0]) + weight.mean(),
        n=10,
        n_models=3,
        n_bootstrap=intervals.MIN_BOOTSTRAP,
        seed=0,
        estimate=estimate,
    )
    assert (low <= estimate).all() and (estimate <= high).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_every_reported_interval_holds_its_rating(workspace, seed):
    battles = read_battles(workspace / "train.csv")
    for ci in ("sandwich", "bootstrap"):
        table = fit_leaderboard(
            battles, ci=ci, n_bootstrap=intervals.MIN_BOOTSTRAP, seed=seed
        ).table
        assert (
            (table["ci_lower"] <= table["rating"]) & (table["rating"] <= table["ci_upper"])
        ).all(), ci


def test_plot_works_with_suggest(workspace, tmp_path):
    pytest.importorskip("matplotlib", reason="the report extra (matplotlib) is not installed")
    unlabelled = tmp_path / "unlabelled.csv"
    synthetic_frame(n=60, seed=9).drop(columns=list(LABELS)).to_csv(unlabelled, index=False)
    plot = tmp_path / "board.png"
    result = run(
        "leaderboard",
        workspace / "train.csv",
        "--model",
        workspace / "model",
        "--unlabelled",
        unlabelled,
        "--suggest",
        "3",
        "--plot",
        plot,
    )
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(pd.io.common.StringIO(result.stdout))) == 3
    assert_one_line_error(
        run(
            "leaderboard",
            workspace / "train.csv",
            "--model",
            workspace / "model",
            "--unlabelled",
            unlabelled,
            "--suggest",
            "3",
            "--format",
            "json",
        ),
        "CSV",
    )


def test_pseudo_label_keeping_no_row_is_an_error_showing_the_confidences(workspace, tmp_path):
    out = tmp_path / "pseudo.csv"
    result = run(
        "pseudo-label",
        workspace / "fresh.csv",
        "--model",
        workspace / "model",
        "--out",
        out,
        "--min-confidence",
        "1",
    )
    assert_one_line_error(result, "--min-confidence", "median", "max")
    assert not out.exists()


# ------------------------------------------------------------ 8: honest scores
def test_battle_keys_ignore_ids_and_the_ab_order(workspace):
    battles = read_battles(workspace / "train.csv")
    training = data_summary(battles)
    frame = pd.read_csv(workspace / "train.csv")
    frame["id"] = frame["id"] + 10_000
    frame[["response_a", "response_b"]] = frame[["response_b", "response_a"]].to_numpy()
    swapped = workspace / "renumbered_swapped.csv"
    frame.to_csv(swapped, index=False)
    assert rows_in_training(battle_keys_of(read_battles(swapped)), training) == len(battles)
    fresh = read_battles(workspace / "fresh.csv")
    assert rows_in_training(battle_keys_of(fresh), training) == 0
    # a model saved before its battles were recorded cannot say
    old = {k: v for k, v in training.items() if k != "battle_keys"}
    assert rows_in_training(battle_keys_of(fresh), old) is None
    assert rows_in_training(battle_keys_of(fresh), {**training, "battle_keys": "*"}) is None


def test_evaluate_says_a_score_on_training_rows_is_in_sample(workspace):
    result = run(
        "evaluate", workspace / "train.csv", "--model", workspace / "model", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert "240 of 240 rows were in the model's training data" in result.stderr
    assert "in-sample" in json.loads(result.stdout)["warnings"][0]
    fresh = run("evaluate", workspace / "fresh.csv", "--model", workspace / "model")
    assert fresh.exit_code == 0 and "in-sample" not in fresh.stderr


def _tie_target(n: int, share: float) -> np.ndarray:
    return np.eye(3)[np.where(np.arange(n) < round(n * share), 2, np.arange(n) % 2)]


def test_tie_share_far_from_the_models_is_flagged():
    training = {"class_counts": {LABELS[0]: 350, LABELS[1]: 350, LABELS[2]: 300}}
    assert tie_share_gap(_tie_target(2000, 0.31), training) is None
    assert tie_share_gap(_tie_target(30, 0.5), training) is None  # too few rows to tell
    share, expected = tie_share_gap(_tie_target(2000, 0.01), training)
    assert share == pytest.approx(0.01) and expected == pytest.approx(0.3, abs=1e-3)
    assert tie_share_gap(_tie_target(2000, 0.01), training, tie_rate=0.01) is None
    caveats = score_caveats(_tie_target(2000, 0.01), np.zeros(2000, np.int64), training)
    assert len(caveats) == 1 and "--tie-rate 0.01" in caveats[0]


def test_evaluate_and_report_point_to_tie_rate(workspace):
    result = run(
        "evaluate", workspace / "fresh.csv", "--model", workspace / "model", "--tie-rate", "0.9"
    )
    assert result.exit_code == 0, result.output
    assert "of its votes are ties" in result.stderr and "--tie-rate" in result.stderr


def test_report_accepts_tie_rate(workspace, tmp_path):
    pytest.importorskip("matplotlib", reason="the report extra (matplotlib) is not installed")
    summaries = []
    for extra in ((), ("--tie-rate", "0.9")):
        out = tmp_path / f"report{len(extra)}"
        result = run(
            "report",
            workspace / "train.csv",
            "--model",
            workspace / "model",
            "--out",
            out,
            "--format",
            "json",
            *extra,
        )
        assert result.exit_code == 0, result.output
        summaries.append(json.loads(result.stdout))
    plain, shifted = summaries
    assert shifted["metrics"]["log_loss"] != plain["metrics"]["log_loss"]
    assert any("in-sample" in w for w in plain["warnings"])
    assert any("--tie-rate" in w for w in shifted["warnings"])
    assert "warning" in (tmp_path / "report2" / "index.html").read_text()
    assert_one_line_error(
        run("report", workspace / "train.csv", "--out", tmp_path / "x", "--tie-rate", "0.3"),
        "--model",
    )


def test_train_warns_when_worse_than_the_class_prior():
    assert training_caveats({"log_loss": 0.9, "prior_log_loss": 1.0}) == []
    (caveat,) = training_caveats({"log_loss": 1.01, "prior_log_loss": 1.0})
    assert "worse than the class prior" in caveat


def test_a_teacher_student_says_its_score_is_not_nested(workspace, tmp_path):
    frame = pd.read_csv(workspace / "train.csv")
    teacher = tmp_path / "teacher.csv"
    pd.DataFrame(
        {"id": frame["id"], "fold": 0, LABELS[0]: 0.4, LABELS[1]: 0.4, LABELS[2]: 0.2}
    ).to_csv(teacher, index=False)
    result = run(
        "train",
        workspace / "train.csv",
        "--out",
        tmp_path / "student",
        "--config",
        workspace / "config.yaml",
        "--teacher",
        teacher,
    )
    assert result.exit_code == 0, result.output
    assert "not nested" in result.stderr
    plain = run(
        "train",
        workspace / "train.csv",
        "--out",
        tmp_path / "plain",
        "--config",
        workspace / "config.yaml",
    )
    assert "not nested" not in plain.stderr


def test_a_score_on_a_members_training_rows_is_in_sample(workspace):
    """An ensemble or cascade blended on other battles is still in-sample on the battles
    its members were trained on: every part's recorded battles count."""
    from arenajudge.models.cascade import CascadeModel
    from arenajudge.models.ensemble import EnsembleModel
    from arenajudge.models.registry import load_model

    def fitted(cls, **attributes):  # the fitted state that fit() or load() sets
        model = object.__new__(cls)
        vars(model).update(attributes)
        return model

    member = load_model(workspace / "model")  # trained on train.csv
    fresh = read_battles(workspace / "fresh.csv")
    blend = fitted(EnsembleModel, training_=data_summary(fresh), members_=[])
    ensemble = fitted(EnsembleModel, training_=data_summary(fresh), members_=[member, blend])
    cascade = fitted(CascadeModel, training_=data_summary(fresh), first_=blend, then_=ensemble)
    train = read_battles(workspace / "train.csv")
    for composite in (ensemble, cascade):
        sections = trained_sections(composite)
        assert rows_in_training(battle_keys_of(train), sections) == len(train)
        assert rows_in_training(battle_keys_of(fresh), sections) == len(fresh)
        caveats = score_caveats(train.target, battle_keys_of(train), sections)
        assert any("240 of 240 rows were in the model's training data" in c for c in caveats)
    # the composite's own section alone misses them
    assert rows_in_training(battle_keys_of(train), blend.training_) == 0
