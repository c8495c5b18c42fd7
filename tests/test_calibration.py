"""Calibration: Davidson's tie model, the prior shift, honest training figures, baselines."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from arenajudge.calibration import (
    CALIBRATION_FOLDS,
    MIN_TIES,
    PROBA_FLOOR,
    Calibration,
    fit_calibration,
    smoothed_prior,
)
from arenajudge.cli import main
from arenajudge.data import read_battles
from arenajudge.errors import ModelLoadError
from arenajudge.evaluate import (
    fit_length_baseline,
    length_baseline_proba,
    relative_length_difference,
)
from arenajudge.metrics import log_loss, prior_log_loss
from arenajudge.models.composite import Blend
from arenajudge.models.gbdt import GBDTModel
from arenajudge.models.gbdt_config import GBDTConfig
from arenajudge.ties import CALIBRATION_TIE_MODELS, TieModel, davidson, fit_davidson
from conftest import synthetic_frame

FAST = GBDTConfig(
    n_estimators=40,
    min_child_samples=5,
    num_leaves=7,
    holdout_share=0.25,
    early_stopping_rounds=10,
    embedding_dim=16,
    n_jobs=1,
)
CONFIG = {
    "n_estimators": 30,
    "min_child_samples": 5,
    "num_leaves": 7,
    "holdout_share": 0.25,
    "early_stopping_rounds": 10,
    "embedding_dim": 16,
    "n_jobs": 1,
}


def _davidson_votes(n: int, nu: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from Davidson's model at ``nu`` and the A-vs-B odds they came from."""
    rng = np.random.default_rng(seed)
    q = rng.beta(2, 2, size=n)
    truth = davidson(np.column_stack([q, 1 - q, np.zeros(n)]), nu)
    labels = (rng.random(n)[:, None] > truth.cumsum(axis=1)).sum(axis=1)
    noise = rng.dirichlet(np.ones(3), size=n)  # a tie column the fit must ignore
    return labels, np.column_stack([q * 0.9, (1 - q) * 0.9, 0.1 * noise[:, 0]])


def test_davidson_recovers_a_known_tie_parameter():
    labels, proba = _davidson_votes(6000, nu=0.8, seed=0)
    assert fit_davidson(labels, proba) == pytest.approx(0.8, rel=0.10)


def _target(labels: np.ndarray) -> np.ndarray:
    return np.eye(3)[labels]


def test_few_ties_choose_davidson_and_hit_the_tie_rate():
    labels, proba = _davidson_votes(3000, nu=0.05, seed=1)
    assert (labels == 2).sum() < MIN_TIES
    calibration, report = fit_calibration(
        _target(labels), proba, np.arange(3000) % 3, (0.49, 0.49, 0.02)
    )
    assert calibration.tie_model == report["tie_model"] == "davidson"
    shifted = calibration.transform(proba, tie_rate=0.25)
    assert shifted[:, 2].mean() == pytest.approx(0.25, abs=0.01)
    # ties follow the margin: the closest tenth of pairs ties more than the clearest
    margin = np.abs(proba[:, 0] - proba[:, 1])
    assert (
        shifted[margin < np.quantile(margin, 0.1), 2].mean()
        > shifted[margin > np.quantile(margin, 0.9), 2].mean() + 0.1
    )


def test_learnt_ties_choose_the_prior_shift():
    """Ties that a model predicts from something other than the margin: its own tie
    column beats Davidson's model, and --tie-rate shifts that column by Bayes' rule."""
    rng = np.random.default_rng(2)
    n = 3000
    tie_chance = rng.choice([0.05, 0.6], size=n)  # what the model learnt about ties
    q = rng.beta(2, 2, size=n)
    proba = np.column_stack([(1 - tie_chance) * q, (1 - tie_chance) * (1 - q), tie_chance])
    labels = (rng.random(n)[:, None] > proba.cumsum(axis=1)).sum(axis=1)
    assert (labels == 2).sum() >= MIN_TIES
    prior = tuple(_target(labels).mean(axis=0))
    calibration, report = fit_calibration(_target(labels), proba, np.arange(n) % 3, prior)
    assert calibration.tie_model == "prior_shift"
    assert (
        report["tie_model_evidence"]["log_loss_tie_column"]
        < report["tie_model_evidence"]["log_loss_davidson"]
    )
    assert report["log_loss"] < prior_log_loss(labels)
    low, high = (calibration.transform(proba, tie_rate=r)[:, 2] for r in (0.1, 0.6))
    assert high.mean() > low.mean() + 0.2
    # Bayes' rule keeps the order of the tie column
    assert np.all(np.diff(high[np.argsort(low)]) > -1e-9)


@pytest.fixture(scope="module")
def tie_free(tmp_path_factory):
    frame = synthetic_frame(n=240)
    tied = frame["winner_tie"] == 1
    frame.loc[tied, ["winner_model_a", "winner_tie"]] = [1, 0]
    path = tmp_path_factory.mktemp("tie_free") / "train.csv"
    frame.to_csv(path, index=False)
    battles = read_battles(path)
    return battles, GBDTModel(FAST).fit(battles)


@pytest.mark.parametrize("tie_rate", [0.001, 0.3, 0.95])
def test_tie_rate_on_a_tie_free_model_stays_within_bounds(tie_free, tie_rate):
    battles, model = tie_free
    assert model.calibration_.tie_model == "davidson"
    proba = model.predict_proba(battles.without_labels(), tie_rate=tie_rate)
    assert proba.min() >= PROBA_FLOOR - 1e-12 and proba.max() <= 1
    assert np.allclose(proba.sum(axis=1), 1)
    assert proba[:, 2].mean() == pytest.approx(tie_rate, abs=0.05)


def test_train_reports_an_out_of_sample_calibrated_figure(tie_free):
    battles, model = tie_free
    report = model.validation_
    assert report["rows"] == len(battles) and report["folds"] == CALIBRATION_FOLDS
    assert report["log_loss"] < report["prior_log_loss"]


@pytest.mark.parametrize(
    "field,value", [("temperature", "NaN"), ("train_prior", "Infinity"), ("margins", "NaN")]
)
def test_non_finite_calibration_is_refused(tmp_path, field, value):
    path = tmp_path / "calibration.json"
    Calibration(tie_model="davidson", margins=(0.1, 0.3)).save(path)
    text = json.loads(path.read_text())
    text[field] = [0.3, value, 0.3] if isinstance(text[field], list) else value
    path.write_text(json.dumps(text).replace(f'"{value}"', value))
    with pytest.raises(ModelLoadError, match="is corrupt"):
        Calibration.load(path)


def test_calibration_round_trips(tmp_path):
    calibration = Calibration(
        temperature=1.3,
        train_prior=(0.45, 0.45, 0.1),
        tie_model="davidson",
        margins=(0.1, 0.2, 0.5),
        source_temperatures=(("arena", 1.1), ("hh", 0.9)),
    )
    calibration.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == calibration


def test_a_non_finite_source_temperature_is_refused(tmp_path):
    path = tmp_path / "calibration.json"
    Calibration(source_temperatures=(("arena", 1.1),)).save(path)
    path.write_text(path.read_text().replace("1.1", "NaN"))
    with pytest.raises(ModelLoadError, match="is corrupt"):
        Calibration.load(path)


def _two_sources(n: int, seed: int):
    """Labels from known probabilities; "sharp" rows are predicted with them, "over"
    rows with the same probabilities sharpened (cubed): overconfident."""
    rng = np.random.default_rng(seed)
    truth = rng.dirichlet([2, 2, 1], size=2 * n)
    labels = (rng.random(2 * n)[:, None] > truth.cumsum(axis=1)).sum(axis=1)
    over = truth**3 / (truth**3).sum(axis=1, keepdims=True)
    source = np.array(["sharp"] * n + ["over"] * n)
    proba = np.where((source == "over")[:, None], over, truth)
    return np.eye(3)[labels], proba, source


def test_each_large_source_gets_its_own_temperature():
    target, proba, source = _two_sources(3000, seed=0)
    prior = (0.4, 0.4, 0.2)
    fold = np.arange(len(target)) % 3
    calibration, report = fit_calibration(target, proba, fold, prior, source)
    by_source = dict(calibration.source_temperatures)
    assert abs(by_source["sharp"] - 1) < 0.1 and abs(by_source["over"] - 3) < 0.4
    assert report["source_temperatures"] == by_source
    plain, plain_report = fit_calibration(target, proba, fold, prior)
    assert plain.source_temperatures == ()
    assert report["log_loss"] < plain_report["log_loss"]  # out of sample, both
    # rows of a source it never saw, or without a source, take the overall temperature
    unseen = calibration.transform(proba[:5], source=np.array(["new"] * 5))
    np.testing.assert_array_equal(unseen, calibration.transform(proba[:5]))
    np.testing.assert_array_equal(
        unseen,
        Calibration(temperature=calibration.temperature, train_prior=prior).transform(proba[:5]),
    )


def _sources_with_and_without_ties(n: int, seed: int):
    """Decisive odds known to the model; "votes" rows never tie, "graded" rows tie as
    Davidson's model with nu = 0.3 says; the model's tie column is the pooled share."""
    rng = np.random.default_rng(seed)
    q = rng.beta(2, 2, size=2 * n)
    source = np.array(["votes"] * n + ["graded"] * n)
    truth = davidson(np.column_stack([q, 1 - q, np.zeros(2 * n)]), 0.3)
    truth[source == "votes"] = np.column_stack([q, 1 - q, np.zeros(2 * n)])[source == "votes"]
    labels = (rng.random(2 * n)[:, None] > truth.cumsum(axis=1)).sum(axis=1).clip(0, 2)
    pooled_tie = float((labels == 2).mean())
    proba = np.column_stack(
        [(1 - pooled_tie) * q, (1 - pooled_tie) * (1 - q), np.full(2 * n, pooled_tie)]
    )
    return np.eye(3)[labels], proba, source


def test_each_large_source_is_moved_to_its_own_share_of_ties():
    target, proba, source = _sources_with_and_without_ties(3000, seed=0)
    fold = np.arange(len(target)) % 3
    prior = tuple(target.mean(axis=0))
    calibration, report = fit_calibration(target, proba, fold, prior, source)
    rates = dict(calibration.source_tie_rates)
    assert report["source_tie_rates"] == rates
    assert rates["votes"] < 0.001 < 0.05 < rates["graded"]
    moved = calibration.transform(proba, source=source)
    assert moved[source == "votes", 2].mean() < 0.002
    graded = source == "graded"
    assert moved[graded, 2].mean() == pytest.approx(target[graded, 2].mean(), rel=0.1)
    plain, plain_report = fit_calibration(target, proba, fold, prior)
    assert plain.source_tie_rates == ()
    assert report["log_loss"] < plain_report["log_loss"] - 0.02  # out of sample, both
    # an unseen source or none keeps the model's own tie column; --tie-rate beats sources
    unseen = calibration.transform(proba[:5], source=np.array(["new"] * 5))
    np.testing.assert_array_equal(unseen, calibration.transform(proba[:5]))
    np.testing.assert_array_equal(
        calibration.transform(proba, 0.2, source),
        dataclasses.replace(calibration, source_tie_rates=()).transform(proba, 0.2, source),
    )


def test_an_out_of_range_source_tie_rate_is_refused(tmp_path):
    path = tmp_path / "calibration.json"
    Calibration(source_tie_rates=(("votes", 0.0),)).save(path)
    with pytest.raises(ModelLoadError, match="out-of-range"):
        Calibration.load(path)
    Calibration(source_tie_rates=(("votes", 0.01),)).save(path)
    assert Calibration.load(path).source_tie_rates == (("votes", 0.01),)


def test_a_small_source_takes_the_overall_temperature():
    target, proba, source = _two_sources(3000, seed=1)
    source[:100] = "tiny"
    calibration, _ = fit_calibration(
        target, proba, np.arange(len(target)) % 3, (0.4, 0.4, 0.2), source
    )
    assert "tiny" not in dict(calibration.source_temperatures)


def test_length_baseline_is_symmetric_and_learns_length(tmp_path):
    path = tmp_path / "train.csv"
    synthetic_frame(n=240).to_csv(path, index=False)
    battles = read_battles(path)
    diff = relative_length_difference(battles)
    params = fit_length_baseline(diff, battles.target)
    proba = length_baseline_proba(params, diff)
    swapped = length_baseline_proba(params, relative_length_difference(battles.swap()))
    np.testing.assert_allclose(swapped, proba[:, [1, 0, 2]], atol=1e-12)
    assert log_loss(battles.target, proba) < prior_log_loss(battles.target) - 0.05


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A synthetic training file and the model `arenajudge train` made of it."""
    root = tmp_path_factory.mktemp("cli")
    synthetic_frame(n=240).to_csv(root / "train.csv", index=False)
    (root / "config.json").write_text(json.dumps(CONFIG))
    trained = CliRunner().invoke(
        main,
        [
            "train",
            str(root / "train.csv"),
            "--out",
            str(root / "model"),
            "--config",
            str(root / "config.json"),
        ],
    )
    assert trained.exit_code == 0, trained.output
    return root, trained.stdout  # train prints its result on stdout


def test_cli_train_says_its_figure_is_out_of_sample_and_calibrated(workspace):
    root, stderr = workspace
    assert "out-of-sample calibrated log loss" in stderr
    manifest = json.loads((root / "model" / "manifest.json").read_text())
    figure = manifest["metrics"]["holdout"]["log_loss"]
    assert f"{figure:.4f}" in stderr
    assert manifest["metrics"]["holdout"]["tie_model"] in ("davidson", "prior_shift")
    assert "tie_model" in json.loads((root / "model" / "calibration.json").read_text())


@pytest.mark.parametrize("command", ["cv", "evaluate"])
def test_cv_and_evaluate_print_the_length_baseline(workspace, command):
    root, _ = workspace
    extra = (
        ["--folds", "3", "--config", str(root / "config.json")]
        if command == "cv"
        else ["--model", str(root / "model")]
    )
    text = CliRunner().invoke(main, [command, str(root / "train.csv"), *extra])
    assert text.exit_code == 0, text.output
    overall = next(line for line in text.stdout.splitlines() if line.startswith("overall"))
    assert "prior" in overall and "length" in overall
    payload = json.loads(
        CliRunner()
        .invoke(main, [command, str(root / "train.csv"), *extra, "--format", "json"])
        .stdout
    )
    scores = payload["overall"]
    assert scores["prior_log_loss"] > scores["length_log_loss"] > 0


# ------------------------------------------------- one tie model, one class prior
def test_calibration_and_leaderboards_share_one_davidson_model():
    """The calibration's Davidson probabilities are the Bradley–Terry Davidson
    likelihood's at the same A-vs-B log-odds and nu: one model, not two that drift."""
    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1, 1, 1], size=200)
    nu = 0.37
    eta = np.log(proba[:, 0]) - np.log(proba[:, 1])
    rating_terms = TieModel("davidson").terms(eta, np.log([nu]))
    np.testing.assert_array_equal(davidson(proba, nu), np.exp(rating_terms.log_proba))
    assert TieModel("davidson").parameter(np.log([nu])) == pytest.approx(nu)


def test_davidson_without_ties_and_with_extreme_odds_is_finite():
    proba = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1e-320, 1.0, 0.0]])
    assert davidson(proba, 0.0)[:, 2].tolist() == [0.0, 0.0, 0.0]
    out = davidson(proba, 2.0)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(axis=1), 1)
    assert out[1, 2] == pytest.approx(2 * 0.5 / (1 + 2 * 0.5))  # nu m / (1 + nu m), m = 0.5


def test_a_calibration_loads_every_tie_model_it_can_fit(tmp_path):
    for tie_model in CALIBRATION_TIE_MODELS:
        calibration = Calibration(tie_model=tie_model, margins=(0.2, 0.4))
        calibration.save(tmp_path / "c.json")
        assert Calibration.load(tmp_path / "c.json") == calibration


def test_smoothed_prior_counts_both_orders_add_one():
    target = np.array([[1.0, 0, 0], [1, 0, 0], [0, 0, 1]])
    weight = np.array([1.0, 2.0, 1.0])
    # both orders: A wins 3, B wins 3, ties 2 of weight 8; add one to each class
    assert smoothed_prior(target, weight) == pytest.approx((4 / 11, 4 / 11, 3 / 11))
    assert smoothed_prior(target) == pytest.approx((3 / 9, 3 / 9, 3 / 9))


def test_every_calibration_takes_the_one_smoothed_prior(battles_csv):
    """gbdt's calibration and a blend's (ensemble, cascade) hold the same train_prior
    for the same labels: a prior shift moves both the same way."""
    battles = read_battles(battles_csv)
    config = GBDTConfig(n_estimators=5, holdout_share=0.0, embedding_dim=4, n_jobs=1)
    model = GBDTModel(config).fit(battles)
    assert model.calibration_.train_prior == smoothed_prior(battles.target)
    blend = Blend.fit([np.full((len(battles), 3), 1 / 3)], battles.target)
    assert blend.calibration.train_prior == smoothed_prior(battles.target)
