"""The model contract, run on every backend, plus GBDT artifacts and calibration.

The contract: rows are probabilities above the floor; swapping A and B swaps the
outputs; identical responses never favour a side; save then load predicts identically;
a changed artifact is refused; the same seed gives the same model; NotFitted before fit.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss as sklearn_log_loss

from arenajudge.calibration import PROBA_FLOOR, Calibration, apply_floor, fit_temperature
from arenajudge.data import read_battles, swap_proba
from arenajudge.data.sources import source_weights
from arenajudge.errors import ConfigError, ModelLoadError, NotFittedError, OutputExistsError
from arenajudge.evaluate import cross_validate
from arenajudge.metrics import expected_calibration_error, log_loss, prior_log_loss
from arenajudge.models.cascade import CascadeConfig, CascadeModel
from arenajudge.models.contract import LoadsWithOptions
from arenajudge.models.ensemble import EnsembleModel
from arenajudge.models.gbdt import GBDTModel
from arenajudge.models.gbdt_config import GBDTConfig
from arenajudge.models.registry import (
    BACKENDS,
    COMPOSITES,
    build_model,
    load_model,
    model_class,
    prefers_gpu,
)
from arenajudge.models.transformer import TransformerModel
from conftest import synthetic_frame
from tiny import BASE_OF, make_battles, tiny_bases
from tiny import FAST as TINY

FAST = GBDTConfig(
    n_estimators=40,
    min_child_samples=5,
    num_leaves=7,
    holdout_share=0.25,
    early_stopping_rounds=10,
    embedding_dim=16,
    n_jobs=1,
)
NEEDS_TORCH = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None or importlib.util.find_spec("peft") is None,
    reason="needs the transformers extra",
)
CONTRACT_BACKENDS = [
    pytest.param(name, marks=NEEDS_TORCH if issubclass(model_class(name), TransformerModel) else ())
    for name in BACKENDS
]
"""Every backend of the registry: a line added there joins the contract test (composites
with their members, built in ``make``)."""


@pytest.fixture(scope="module")
def battles(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.csv"
    synthetic_frame(n=240).to_csv(path, index=False)
    return read_battles(path)


@pytest.fixture(scope="module")
def contract_battles():
    return make_battles(n=60)


@pytest.fixture(scope="module")
def make(tmp_path_factory):
    """``make(backend, seed)``: a fresh, fast, unfitted model of any backend."""
    bases: dict = {}
    members = tmp_path_factory.mktemp("members")

    def composite(name: str):
        """An ensemble or cascade of two small gbdt members with different settings,
        fitted on other battles than the contract's (the blend is fitted on held-out rows)."""
        if not (members / "b").exists():
            train = make_battles(n=80, seed=7)
            GBDTModel(FAST).fit(train).save(members / "a")
            GBDTModel(replace(FAST, num_leaves=3, embedding_dim=4, seed=1)).fit(train).save(
                members / "b"
            )
        if name == "ensemble":
            return EnsembleModel(member_dirs=[members / "a", members / "b"], load_member=load_model)
        if name == "cascade":
            return CascadeModel(
                CascadeConfig(share=0.5),
                first_dir=members / "a",
                then_dir=members / "b",
                load_member=load_model,
            )
        raise AssertionError(f"a new composite {name!r}: build it from members a and b here")

    def factory(name: str, seed: int = 0):
        if name == "gbdt":
            return GBDTModel(replace(FAST, seed=seed))
        if name in COMPOSITES:
            return composite(name)
        if name not in BASE_OF:  # a new backend runs with its defaults until given fast ones
            return build_model(name, {"seed": seed})
        if not bases:
            import torch

            torch.set_num_threads(1)  # tiny models: threads only spin
            bases.update(tiny_bases(tmp_path_factory.mktemp("bases")))
        return build_model(name, {**TINY, "base": str(bases[BASE_OF[name]]), "seed": seed})

    return factory


@pytest.fixture(scope="module", params=CONTRACT_BACKENDS)
def fitted(request, make, contract_battles):
    return request.param, make(request.param).fit(contract_battles)


def test_probabilities_are_valid(fitted, contract_battles):
    _, model = fitted
    proba = model.predict_proba(contract_battles.without_labels())
    assert proba.shape == (len(contract_battles), 3)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-12)
    assert proba.min() >= PROBA_FLOOR - 1e-15


def test_swapping_inputs_swaps_outputs(fitted, contract_battles):
    _, model = fitted
    proba = model.predict_proba(contract_battles)
    swapped = model.predict_proba(contract_battles.swap())
    assert np.abs(swapped - swap_proba(proba)).max() <= 1e-6


def test_identical_responses_are_never_extreme(fitted, contract_battles):
    _, model = fitted
    same = replace(contract_battles, response_b=contract_battles.response_a)
    proba = model.predict_proba(same)
    assert np.abs(proba[:, 0] - proba[:, 1]).max() <= 1e-6
    assert proba[:, :2].max() <= 0.5 + 1e-6


def test_save_load_gives_identical_predictions(fitted, contract_battles, tmp_path):
    _, model = fitted
    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert np.array_equal(
        loaded.predict_proba(contract_battles), model.predict_proba(contract_battles)
    )


def test_a_changed_artifact_is_refused_before_loading(fitted, tmp_path):
    _, model = fitted
    model.save(tmp_path / "model")
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    biggest = max(manifest["artifacts"], key=lambda n: (tmp_path / "model" / n).stat().st_size)
    path = tmp_path / "model" / biggest
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ModelLoadError, match=f"{biggest}: is corrupt"):
        load_model(tmp_path / "model")


def test_same_seed_same_predictions(fitted, make, contract_battles):
    name, model = fitted
    again = make(name).fit(contract_battles)
    assert np.array_equal(
        again.predict_proba(contract_battles), model.predict_proba(contract_battles)
    )


@pytest.mark.parametrize("name", CONTRACT_BACKENDS)
def test_not_fitted_raises(name, make, contract_battles):
    with pytest.raises(NotFittedError):
        make(name).predict_proba(contract_battles)


def test_gbdt_learns_better_than_prior(battles):
    result = cross_validate(lambda: GBDTModel(FAST), battles, n_folds=3, progress=False)
    assert result.overall["log_loss"] < result.overall["prior_log_loss"] - 0.05


def test_soft_labels_are_followed(battles):
    """Every row says "tie with probability 0.3": the model must move its ties toward 0.3,
    which a model that took the argmax of soft labels (the hard labels here) would not."""
    hard = battles.target
    soft = np.column_stack(
        [
            0.7 * hard[:, 0] + 0.35 * hard[:, 2],
            0.7 * hard[:, 1] + 0.35 * hard[:, 2],
            np.full(len(hard), 0.3),
        ]
    )
    weights = np.linspace(0.5, 1.5, len(battles))
    ties = {}
    for name, target in (("hard", hard), ("soft", soft)):
        model = GBDTModel(FAST).fit(replace(battles, target=target), sample_weight=weights)
        ties[name] = model.predict_proba(battles.without_labels())[:, 2].mean()
    assert hard[:, 2].mean() < 0.2
    assert ties["soft"] > ties["hard"] + 0.05
    assert abs(ties["soft"] - 0.3) < abs(ties["hard"] - 0.3)


def test_source_weights_balance_sources():
    source = np.array(["big"] * 90 + ["small"] * 10, dtype=object)
    assert source_weights(None, 0.5) is None
    assert np.allclose(source_weights(source, 0)[1], 1)
    per_source, equal = source_weights(source, 1)
    assert equal.mean() == pytest.approx(1)
    assert equal[source == "big"].sum() == pytest.approx(equal[source == "small"].sum())
    assert per_source == pytest.approx({"big": equal[0], "small": equal[-1]})


def _tie_source(n: int, seed: int) -> pd.DataFrame:
    """Battles of raters who call every pair a tie, recognisable by a shouted prompt."""
    frame = synthetic_frame(n=n, seed=seed)
    frame["id"] += 10_000 * seed
    frame["prompt"] = [json.dumps([json.loads(p)[0].upper()]) for p in frame["prompt"]]
    frame[["winner_model_a", "winner_model_b", "winner_tie"]] = [0, 0, 1]
    return frame.assign(source="small")


def test_source_balance_lets_a_small_source_be_heard(tmp_path):
    mixed, unseen = tmp_path / "mixed.csv", tmp_path / "unseen.csv"
    pd.concat(
        [synthetic_frame(n=600, seed=1).assign(source="big"), _tie_source(30, seed=2)]
    ).to_csv(mixed, index=False)
    _tie_source(100, seed=3).to_csv(unseen, index=False)
    mixed, unseen = read_battles(mixed), read_battles(unseen)
    losses = {}
    for balance in (0.0, 1.0):
        model = GBDTModel(replace(FAST, source_balance=balance)).fit(mixed)
        losses[balance] = log_loss(unseen.target, model.predict_proba(unseen.without_labels()))
    assert losses[1.0] < losses[0.0] - 0.1
    assert model.training_["sources"] == {"big": 600, "small": 30}
    assert model.training_["source_weight"]["small"] == pytest.approx(
        20 * model.training_["source_weight"]["big"]
    )


def test_tie_rate_shifts_ties(fitted, contract_battles):
    _, model = fitted
    low = model.predict_proba(contract_battles, tie_rate=0.05)[:, 2].mean()
    high = model.predict_proba(contract_battles, tie_rate=0.5)[:, 2].mean()
    assert high > low + 0.1


def test_save_refuses_to_overwrite(fitted, tmp_path):
    _, model = fitted
    model.save(tmp_path / "m")
    with pytest.raises(OutputExistsError, match="--force"):
        model.save(tmp_path / "m")
    model.save(tmp_path / "m", force=True)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_manifest(path, **changes):
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: _edit_manifest(p, package_version="9.9.0"), "incompatible"),
        (lambda p: _edit_manifest(p, format_version=99), "format"),
        (lambda p: _edit_manifest(p, labels=["b", "a", "t"]), "label order"),
        (lambda p: _edit_manifest(p, feature_schema="0000"), "feature schema"),
        (lambda p: (p / "model.txt").unlink(), "missing"),
        (lambda p: (p / "model.txt").write_text("garbage"), "model.txt: is corrupt"),
        (lambda p: _truncate(p / "model.txt"), "model.txt: is corrupt .its sha256"),
        (lambda p: _edit_manifest(p, artifacts={}), "lists no artifact hashes"),
        (lambda p: (p / "calibration.json").write_text("{"), "corrupt"),
        (lambda p: (p / "manifest.json").unlink(), "manifest.json"),
        (
            lambda p: (p / "manifest.json").write_text('{"format_version": ' + "9" * 5000 + "}"),
            "manifest.json: is corrupt",
        ),
        (
            lambda p: (p / "calibration.json").write_text("[" * 100_000),
            "calibration.json: is corrupt",
        ),
    ],
)
def test_damaged_artifacts_fail_to_load(battles, tmp_path, damage, message):
    path = tmp_path / "m"
    GBDTModel(FAST).fit(battles).save(path)
    damage(path)
    with pytest.raises(ModelLoadError, match=message):
        load_model(path)


def test_log_loss_matches_sklearn():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=200)
    proba[0] = [1.0, 0.0, 0.0]
    y = rng.integers(0, 3, size=200)
    y[0] = 1
    assert log_loss(y, proba) == pytest.approx(
        sklearn_log_loss(y, proba, labels=[0, 1, 2]), rel=1e-9
    )
    assert prior_log_loss(np.array([0, 1, 1, 2])) == pytest.approx(
        sklearn_log_loss([0, 1, 1, 2], np.tile([0.25, 0.5, 0.25], (4, 1)))
    )


def test_temperature_softens_overconfident_predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=2000)
    honest = np.where(y[:, None] == np.arange(3), 0.6, 0.2)
    flipped = rng.random(2000) < 0.4
    honest[flipped] = honest[flipped][:, [1, 0, 2]]
    overconfident = apply_floor(honest**6)
    temperature = fit_temperature(y, overconfident)
    assert temperature > 2
    calibrated = Calibration(temperature=temperature).transform(overconfident)
    assert log_loss(y, calibrated) < log_loss(y, overconfident)
    assert expected_calibration_error(y, calibrated) < expected_calibration_error(y, overconfident)


def test_floor_bounds_every_probability():
    proba = apply_floor(np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]))
    assert proba.min() >= PROBA_FLOOR and np.allclose(proba.sum(axis=1), 1)


def test_copied_model_dir_loads(fitted, tmp_path):
    _, model = fitted
    model.save(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert load_model(tmp_path / "b").config == model.config


def test_composites_load_members_with_the_loader_they_are_handed(make, contract_battles, tmp_path):
    """Backends never import the registry: a composite loads its members with the loader
    its builder hands it (load_model does), and says so when it has none."""
    make("ensemble").fit(contract_battles).save(tmp_path / "ensemble")
    with pytest.raises(ConfigError, match="load_member"):
        EnsembleModel.load(tmp_path / "ensemble")
    seen = []
    loaded = EnsembleModel.load(
        tmp_path / "ensemble", load_member=lambda path: seen.append(path) or load_model(path)
    )
    assert len(seen) == 2 and len(loaded.members_) == 2
    assert loaded.member_dirs == seen  # the directories it keeps are the ones it loaded


def test_only_backends_that_take_settings_at_load_get_runtime_flags(
    make, contract_battles, tmp_path
):
    """One definition of a backend taking prediction-time settings (LoadsWithOptions):
    the registry hands them to its ``load`` and refuses them for any other backend."""
    assert isinstance(TransformerModel, LoadsWithOptions)
    assert not isinstance(GBDTModel, LoadsWithOptions)
    make("gbdt").fit(contract_battles).save(tmp_path / "gbdt")
    with pytest.raises(ConfigError, match=r"^--batch-size apply to transformer models; "):
        load_model(tmp_path / "gbdt", {"batch_size": 8})


def test_a_composite_prefers_a_gpu_when_a_member_does(
    make, contract_battles, tmp_path, monkeypatch
):
    make("cascade").fit(contract_battles).save(tmp_path / "cascade")
    assert not prefers_gpu(tmp_path / "cascade")
    monkeypatch.setattr(GBDTModel, "prefers_gpu", True)
    assert prefers_gpu(tmp_path / "cascade")
    assert model_class("siamese").prefers_gpu
