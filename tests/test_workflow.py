"""The winners' workflow: OOF ensembles, distillation, pseudo-labels and the cascade."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from arenajudge.cli import main
from arenajudge.data import LABELS, read_battles, swap_proba
from arenajudge.data.soft_labels import read_oof
from arenajudge.errors import ModelLoadError
from arenajudge.evaluate import cross_validate, oof_frame
from arenajudge.metrics import log_loss
from arenajudge.models.cascade import CascadeConfig, CascadeModel, entropy
from arenajudge.models.composite import Blend
from arenajudge.models.ensemble import EnsembleModel
from arenajudge.models.gbdt import GBDTModel
from arenajudge.models.gbdt_config import GBDTConfig
from arenajudge.models.manifest import file_sha256, read_manifest
from arenajudge.models.registry import load_model
from conftest import synthetic_frame, wait_until

FAST = GBDTConfig(
    n_estimators=40,
    min_child_samples=5,
    num_leaves=7,
    holdout_share=0.25,
    early_stopping_rounds=10,
    embedding_dim=16,
    n_jobs=1,
)
OTHER = replace(FAST, num_leaves=3, embedding_dim=4, learning_rate=0.1, seed=1)


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> dict[str, Path]:
    """Labelled and unlabelled files, two gbdt members with different settings, their
    3-fold OOF files and an ensemble of the two, all in one tmp dir."""
    root = tmp_path_factory.mktemp("workflow")
    files = {"train": root / "train.csv", "test": root / "test.csv"}
    synthetic_frame(n=240).to_csv(files["train"], index=False)
    test = synthetic_frame(n=80, seed=3).drop(columns=list(LABELS))
    test["id"] += 10_000
    test.to_csv(files["test"], index=False)
    battles = read_battles(files["train"])
    for name, config in (("fast", FAST), ("other", OTHER)):
        GBDTModel(config).fit(battles).save(root / name)
        result = cross_validate(
            lambda config=config: GBDTModel(config), battles, n_folds=3, progress=False
        )
        oof_frame(battles, result).to_csv(root / f"{name}_oof.csv", index=False)
        files[name], files[f"{name}_oof"] = root / name, root / f"{name}_oof.csv"
    out = run(
        "ensemble",
        files["fast"],
        files["other"],
        "--oof",
        files["fast_oof"],
        "--oof",
        files["other_oof"],
        "--data",
        files["train"],
        "--out",
        root / "ensemble",
        "--format",
        "json",
        "--write-oof",
        root / "blend_oof.csv",
    )
    assert out.exit_code == 0, out.output
    files["ensemble"], files["ensemble_scores"] = root / "ensemble", json.loads(out.stdout)
    files["blend_oof"] = root / "blend_oof.csv"
    return files


@pytest.fixture(scope="module")
def test_battles(workdir):
    return read_battles(workdir["test"])


# ------------------------------------------------------------------------- ensemble
def test_ensemble_saves_loads_and_predicts_identically(workdir, test_battles, tmp_path):
    ensemble = load_model(workdir["ensemble"])
    assert isinstance(ensemble, EnsembleModel)
    proba = ensemble.predict_proba(test_battles)
    assert np.allclose(proba.sum(axis=1), 1)
    ensemble.save(tmp_path / "again")
    assert np.array_equal(load_model(tmp_path / "again").predict_proba(test_battles), proba)
    # it is the calibrated log-space blend of the members, not one of them
    members = [load_model(workdir[name]).predict_proba(test_battles) for name in ("fast", "other")]
    assert np.allclose(ensemble.blend_.transform(members), proba)
    assert not np.allclose(proba, members[0]) and not np.allclose(proba, members[1])
    swapped = ensemble.predict_proba(test_battles.swap())
    assert np.abs(swapped - swap_proba(proba)).max() <= 1e-9


def test_an_ensemble_of_two_backends_saves_loads_and_predicts_identically(tmp_path):
    torch = pytest.importorskip("torch", reason="needs the transformers extra")
    pytest.importorskip("transformers", reason="needs the transformers extra")
    from arenajudge.models.registry import build_model
    from tiny import BASE_OF, make_battles, save_base
    from tiny import FAST as TINY

    torch.set_num_threads(1)
    train, held = make_battles(60, seed=0), make_battles(60, seed=1)
    base = save_base(tmp_path / "base", BASE_OF["siamese"])
    build_model("siamese", {**TINY, "base": str(base)}).fit(train).save(tmp_path / "siamese")
    GBDTModel(replace(FAST, holdout_share=0)).fit(train).save(tmp_path / "gbdt")
    ensemble = EnsembleModel(
        member_dirs=[tmp_path / "gbdt", tmp_path / "siamese"], load_member=load_model
    ).fit(held)
    ensemble.save(tmp_path / "ensemble")
    loaded = load_model(tmp_path / "ensemble")
    assert [type(m).backend for m in loaded.members_] == ["gbdt", "siamese"]
    assert np.array_equal(loaded.predict_proba(held), ensemble.predict_proba(held))


def test_an_ensemble_of_cpu_models_streams_through_worker_processes(workdir, tmp_path):
    from arenajudge.engines.local import stream_predict

    ensemble = load_model(workdir["ensemble"])
    assert ensemble.worker_copy() is not None
    outputs = [tmp_path / f"workers-{n}.csv" for n in (1, 2)]
    for workers, out in zip((1, 2), outputs):
        stream_predict(workdir["test"], ensemble, out, block_rows=13, workers=workers)
    assert outputs[0].read_text() == outputs[1].read_text()


def test_ensemble_reports_members_and_an_honest_blend_score(workdir):
    scores = workdir["ensemble_scores"]
    weights = list(scores["weights"].values())
    assert len(weights) == 2 and min(weights) >= 0 and sum(weights) == pytest.approx(1)
    members = list(scores["oof_log_loss"].values())
    assert scores["gain"] == pytest.approx(min(members) - scores["blend_log_loss"])
    battles = read_battles(workdir["train"])
    cross_fitted = read_oof(workdir["blend_oof"], battles)
    assert log_loss(battles.target, cross_fitted) == pytest.approx(scores["blend_log_loss"])


def test_blend_weights_are_a_simplex_and_shun_a_useless_member():
    rng = np.random.default_rng(0)
    target = np.eye(3)[rng.integers(0, 3, size=300)]
    good = 0.6 * target + 0.4 * rng.dirichlet(np.ones(3), size=300)
    noise = rng.dirichlet(np.ones(3), size=300)
    blend = Blend.fit([noise, good], target)
    assert min(blend.weights) >= 0 and sum(blend.weights) == pytest.approx(1)
    assert blend.weights[1] > 0.8
    assert blend.score([noise, good], target) <= blend.score([good, good], target) + 1e-6


def test_a_moved_member_is_one_line_naming_it(workdir, tmp_path):
    root = tmp_path / "copy"
    for name in ("fast", "other", "ensemble"):
        shutil.copytree(workdir[name], root / name)
    assert load_model(root / "ensemble").predict_proba(read_battles(workdir["test"])).shape
    shutil.rmtree(root / "other")
    out = run(
        "predict", workdir["test"], "--model", root / "ensemble", "--out", tmp_path / "sub.csv"
    )
    assert out.exit_code == 2
    assert out.stderr.count("\n") == 1 and "member '../other' is missing" in out.stderr


def test_a_changed_member_is_refused(workdir, tmp_path):
    root = tmp_path / "copy"
    for name in ("fast", "other", "ensemble"):
        shutil.copytree(workdir[name], root / name)
    GBDTModel(replace(OTHER, seed=5)).fit(read_battles(workdir["train"])).save(
        root / "other", force=True
    )
    with pytest.raises(ModelLoadError, match="member '../other' has changed"):
        load_model(root / "ensemble")


def test_ensemble_evaluates_and_predicts_through_the_cli(workdir, test_battles, tmp_path):
    out = run(
        "predict", workdir["test"], "--model", workdir["ensemble"], "--out", tmp_path / "sub.csv"
    )
    assert out.exit_code == 0, out.output
    written = pd.read_csv(tmp_path / "sub.csv")[list(LABELS)].to_numpy()
    expected = load_model(workdir["ensemble"]).predict_proba(test_battles)
    np.testing.assert_allclose(written, expected, atol=1e-12)
    scored = run("evaluate", workdir["train"], "--model", workdir["ensemble"], "--format", "json")
    assert scored.exit_code == 0 and json.loads(scored.stdout)["overall"]["rows"] == 240


def test_ensemble_through_serve_equals_predict(workdir, test_battles):
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    from fastapi.testclient import TestClient

    from arenajudge import serve

    settings = serve.Settings(str(workdir["ensemble"]))
    rows = [
        {"id": str(i), "prompt": list(p), "response_a": list(a), "response_b": list(b)}
        for i, p, a, b in zip(
            test_battles.id[:5],
            test_battles.prompt,
            test_battles.response_a,
            test_battles.response_b,
        )
    ]
    with TestClient(serve.create_app(settings)) as client:
        # the model loads in the background: poll /health with a pause, up to a deadline
        wait_until(lambda: client.get("/health").status_code == 200, timeout=60)
        body = client.post("/v1/judge", json={"battles": rows}).json()
    served = np.array([[result[label] for label in LABELS] for result in body["results"]])
    expected = load_model(workdir["ensemble"]).predict_proba(test_battles.take(range(5)))
    np.testing.assert_allclose(served, expected, atol=1e-12)


def test_ensemble_through_ray_equals_predict(workdir, test_battles):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from arenajudge.engines.ray_engine import predict_with_ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        ids, proba = predict_with_ray(
            str(workdir["test"]), str(workdir["ensemble"]), read_kwargs={}, batch_size=40
        )
    finally:
        ray.shutdown()
    assert list(ids) == list(test_battles.id)
    expected = load_model(workdir["ensemble"]).predict_proba(test_battles)
    np.testing.assert_allclose(proba, expected, atol=1e-9)


# --------------------------------------------------------------------- distillation
def _kl(teacher: np.ndarray, student: np.ndarray) -> float:
    return float((teacher * np.log(teacher / student)).sum(axis=1).mean())


def test_a_student_moves_toward_its_teacher(workdir, tmp_path):
    battles = read_battles(workdir["train"])
    # a teacher the labels alone would not teach: it expects far more ties
    oof = read_oof(workdir["fast_oof"], battles)
    teacher = 0.5 * oof + 0.5 * np.array([0.2, 0.2, 0.6])
    frame = pd.DataFrame(teacher, columns=list(LABELS))
    frame.insert(0, "id", battles.id)
    frame.to_csv(tmp_path / "teacher.csv", index=False)
    flags = [
        "--n-estimators",
        "40",
        "--num-leaves",
        "7",
        "--min-child-samples",
        "5",
        "--embedding-dim",
        "16",
        "--n-jobs",
        "1",
    ]
    plain = run("train", workdir["train"], "--out", tmp_path / "plain", *flags)
    student = run(
        "train",
        workdir["train"],
        "--out",
        tmp_path / "student",
        *flags,
        "--teacher",
        tmp_path / "teacher.csv",
        "--teacher-weight",
        "0.8",
    )
    assert plain.exit_code == 0 and student.exit_code == 0, student.output
    kl = {
        name: _kl(teacher, load_model(tmp_path / name).predict_proba(battles))
        for name in ("plain", "student")
    }
    assert kl["student"] < kl["plain"]
    recorded = read_manifest(tmp_path / "student")["training"]["teacher"]
    assert recorded["sha256"] == file_sha256(tmp_path / "teacher.csv")
    assert recorded["weight"] == 0.8


def test_a_teacher_missing_a_row_is_one_line(workdir, tmp_path):
    pd.read_csv(workdir["fast_oof"]).iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    out = run(
        "train", workdir["train"], "--out", tmp_path / "m", "--teacher", tmp_path / "short.csv"
    )
    assert out.exit_code == 2 and out.stderr.count("\n") == 1
    assert "short.csv" in out.stderr and "row id 1000" in out.stderr


# ------------------------------------------------------ one reader of probability files
def _probability_commands(workdir, path: Path, out: Path) -> dict[str, list]:
    """Every command that reads a probability file, reading ``path`` as its first."""
    data, fast, other = workdir["train"], workdir["fast"], workdir["other"]
    members = ["--data", data, "--out", out]
    return {
        "teacher": ["train", data, "--teacher", path, "--out", out, "--n-estimators", "5"],
        "ensemble": ["ensemble", fast, other, "--oof", path, "--oof", workdir["other_oof"]]
        + members,
        "cascade": ["cascade", "--first", fast, "--then", other, "--oof-first", path]
        + ["--oof-then", workdir["other_oof"], *members],
        "report": ["report", data, "--oof", path, "--out", out],
    }


@pytest.mark.parametrize("command", ["teacher", "ensemble", "cascade", "report"])
@pytest.mark.parametrize(
    "case",
    ["no_fold", "sum_off", "empty_cell"],
)
def test_every_command_reads_a_probability_file_by_the_same_rules(workdir, tmp_path, command, case):
    """A predictions file without ``fold`` is read everywhere (``report`` refused it);
    a row 5e-4 from summing to 1 (``report`` accepted it) or an empty cell is refused
    everywhere, as one line naming the file, the row id and the column."""
    if command == "report" and case == "no_fold":  # the report it then writes draws plots
        pytest.importorskip("matplotlib", reason="the report extra (matplotlib) is not installed")
    frame = pd.read_csv(workdir["fast_oof"], dtype={"id": str})
    row_id = frame["id"][3]
    if case == "no_fold":
        frame = frame.drop(columns="fold")
    elif case == "sum_off":
        frame.loc[3, "winner_tie"] += 5e-4
    else:
        frame["winner_tie"] = frame["winner_tie"].astype(object)
        frame.loc[3, "winner_tie"] = ""
    path = tmp_path / f"{case}.csv"
    frame.to_csv(path, index=False)
    out = run(*_probability_commands(workdir, path, tmp_path / "out")[command])
    if case == "no_fold":
        assert out.exit_code == 0, out.output
        return
    column = "winner_tie" if case == "empty_cell" else ",".join(LABELS)
    assert out.exit_code == 2 and out.stderr.count("\n") == 1, out.output
    assert out.stderr.startswith(f"error: {path}: row id {row_id}: column {column}: ")


# ---------------------------------------------------------------------- pseudo-labels
def test_pseudo_labels_round_trip_through_train(workdir, test_battles, tmp_path):
    out = run(
        "pseudo-label",
        workdir["test"],
        "--model",
        workdir["ensemble"],
        "--out",
        tmp_path / "pl.csv",
        "--min-confidence",
        "0.5",
    )
    assert out.exit_code == 0, out.output
    labelled = read_battles(tmp_path / "pl.csv")
    proba = load_model(workdir["ensemble"]).predict_proba(test_battles)
    kept = proba.max(axis=1) >= 0.5
    assert 0 < kept.sum() < len(test_battles)
    assert list(labelled.id) == list(test_battles.id[kept])
    np.testing.assert_allclose(labelled.target, proba[kept], atol=1e-9)
    assert set(labelled.source) == {"pseudo-label"}
    assert labelled.prompt == [test_battles.prompt[i] for i in np.flatnonzero(kept)]
    both = pd.concat([pd.read_csv(workdir["train"]), pd.read_csv(tmp_path / "pl.csv")])
    both.to_csv(tmp_path / "both.csv", index=False)
    trained = run(
        "train",
        tmp_path / "both.csv",
        "--out",
        tmp_path / "m",
        "--n-jobs",
        "1",
        "--n-estimators",
        "20",
    )
    assert trained.exit_code == 0, trained.output
    assert read_manifest(tmp_path / "m")["training"]["rows"] == 240 + kept.sum()


# --------------------------------------------------------------------------- cascade
def _cascade(workdir, share: float) -> CascadeModel:
    battles = read_battles(workdir["train"])
    oof = (read_oof(workdir["fast_oof"], battles), read_oof(workdir["other_oof"], battles))
    return CascadeModel(
        CascadeConfig(share=share),
        first_dir=workdir["fast"],
        then_dir=workdir["other"],
        load_member=load_model,
    ).fit(battles, oof=oof)


def test_cascade_share_zero_is_the_first_model(workdir, test_battles):
    first = load_model(workdir["fast"]).predict_proba(test_battles)
    assert np.array_equal(_cascade(workdir, 0.0).predict_proba(test_battles), first)


def test_cascade_share_one_is_the_blend_on_every_row(workdir, test_battles):
    cascade = _cascade(workdir, 1.0)
    probas = [load_model(workdir[name]).predict_proba(test_battles) for name in ("fast", "other")]
    np.testing.assert_allclose(
        cascade.predict_proba(test_battles), cascade.blend_.transform(probas), atol=1e-12
    )


def test_cascade_rescores_the_uncertain_share_and_reports_it(
    workdir, test_battles, tmp_path, caplog
):
    out = run(
        "cascade",
        "--first",
        workdir["fast"],
        "--then",
        workdir["other"],
        "--share",
        "0.3",
        "--oof-first",
        workdir["fast_oof"],
        "--oof-then",
        workdir["other_oof"],
        "--data",
        workdir["train"],
        "--out",
        tmp_path / "c",
        "--format",
        "json",
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["rescored_share"] == pytest.approx(0.3, abs=0.02)
    cascade = load_model(tmp_path / "c")
    first = load_model(workdir["fast"]).predict_proba(test_battles)
    proba = cascade.predict_proba(test_battles)
    rescored = entropy(first) >= cascade.threshold_
    assert np.array_equal(proba[~rescored], first[~rescored])
    assert not np.allclose(proba[rescored], first[rescored])
    # one row at a time gives the same answers: the gate is a threshold, not a rank
    single = np.vstack([cascade.predict_proba(test_battles.take([i])) for i in range(5)])
    np.testing.assert_allclose(single, proba[:5], atol=1e-12)
    predicted = run(
        "-v", "predict", workdir["test"], "--model", tmp_path / "c", "--out", tmp_path / "sub.csv"
    )
    assert f"second stage {rescored.sum()} " in predicted.stderr


def test_a_student_is_calibrated_and_scored_against_the_votes(workdir):
    """The teacher changes what the model is taught, never what it is scored against:
    its calibration and printed figure are those of the votes."""
    from arenajudge.data.soft_labels import teacher_targets
    from arenajudge.metrics import prior_log_loss

    battles = read_battles(workdir["train"])
    uniform = np.full((len(battles), 3), 1 / 3)
    student = GBDTModel(FAST).fit(teacher_targets(battles, uniform, 0.9))
    assert student.validation_["prior_log_loss"] == pytest.approx(prior_log_loss(battles.target))
    plain = GBDTModel(FAST).fit(battles)
    # against the votes, a student taught near-uniform targets scores near the plain
    # model; against those targets its cross-entropy could not fall below log 3
    assert abs(student.validation_["log_loss"] - plain.validation_["log_loss"]) < 0.1
