"""The command line as a user meets it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from arenajudge.cli import main

from conftest import requires_shared_data, synthetic_frame
from test_data import MALFORMED

FAST_CONFIG = {"n_estimators": 30, "min_child_samples": 5, "num_leaves": 7,
               "holdout_share": 0.25, "early_stopping_rounds": 10, "embedding_dim": 16,
               "n_jobs": 1}


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_validate_malformed_exits_2_with_one_line(tmp_path, case):
    body, where, what = MALFORMED[case]
    path = tmp_path / "data.csv"
    path.write_text(body, encoding="utf-8")
    assert_one_line_error(run("validate", path), where, what)


@pytest.mark.parametrize("case", ["broken_json", "duplicate_id", "no_battle_columns"])
def test_train_on_malformed_data_exits_2(tmp_path, case):
    body, where, what = MALFORMED[case]
    path = tmp_path / "data.csv"
    path.write_text(body, encoding="utf-8")
    assert_one_line_error(run("train", path, "--out", tmp_path / "m"), where, what)
    assert not (tmp_path / "m").exists()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    synthetic_frame(n=240).to_csv(root / "train.csv", index=False)
    test = synthetic_frame(n=60, seed=5).drop(columns=["winner_model_a", "winner_model_b",
                                                       "winner_tie"])
    test.to_csv(root / "test.csv", index=False)
    (root / "config.yaml").write_text(yaml.safe_dump(FAST_CONFIG))
    result = run("train", root / "train.csv", "--out", root / "model", "--config",
                 root / "config.yaml")
    assert result.exit_code == 0, result.output
    return root


def test_validate_json_report(workspace):
    result = run("validate", workspace / "train.csv", "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["rows"] == 240 and report["labelled"] is True
    assert sum(report["class_counts"].values()) == 240
    assert report["errors"] == [] and isinstance(report["warnings"], list)


def test_predict_writes_submission_in_input_order(workspace):
    out = workspace / "submission.csv"
    result = run("predict", workspace / "test.csv", "--model", workspace / "model", "--out", out)
    assert result.exit_code == 0, result.output
    submission = pd.read_csv(out)
    assert list(submission.columns) == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    assert submission["id"].tolist() == pd.read_csv(workspace / "test.csv")["id"].tolist()
    assert np.allclose(submission.iloc[:, 1:].sum(axis=1), 1)
    again = run("predict", workspace / "test.csv", "--model", workspace / "model", "--out", out)
    assert_one_line_error(again, "already exists", "--force")
    forced = run("predict", workspace / "test.csv", "--model", workspace / "model", "--out", out,
                 "--force", "--tie-rate", "0.31")
    assert forced.exit_code == 0
    assert pd.read_csv(out)["winner_tie"].mean() > submission["winner_tie"].mean()


def test_train_refuses_existing_model_dir(workspace):
    result = run("train", workspace / "train.csv", "--out", workspace / "model")
    assert_one_line_error(result, "already exists")


def test_train_weighs_sources_from_a_sources_file(workspace, tmp_path):
    ids = pd.read_csv(workspace / "train.csv")["id"]
    sources = tmp_path / "sources.csv"
    pd.DataFrame({"id": ids, "source": ["big"] * 200 + ["small"] * 40}).to_csv(sources,
                                                                              index=False)
    result = run("train", workspace / "train.csv", "--out", tmp_path / "model", "--config",
                 workspace / "config.yaml", "--sources", sources)
    assert result.exit_code == 0, result.output
    training = json.loads((tmp_path / "model" / "manifest.json").read_text())["training"]
    assert training["sources"] == {"big": 200, "small": 40}
    weight = training["source_weight"]
    assert weight["small"] / weight["big"] == pytest.approx(5 ** 0.5)


def test_cv_json_and_oof(workspace):
    oof = workspace / "oof.csv"
    result = run("cv", workspace / "train.csv", "--folds", "3", "--oof", oof, "--format", "json",
                 "--config", workspace / "config.yaml")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert len(payload["folds"]) == 3
    assert payload["overall"]["log_loss"] < payload["overall"]["prior_log_loss"]
    frame = pd.read_csv(oof)
    assert list(frame.columns) == ["id", "fold", "winner_model_a", "winner_model_b", "winner_tie"]
    assert len(frame) == 240


def test_evaluate_reports_metrics(workspace):
    result = run("evaluate", workspace / "train.csv", "--model", workspace / "model",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    overall = json.loads(result.stdout)["overall"]
    assert {"log_loss", "prior_log_loss", "accuracy", "ece", "rows"} <= set(overall)


@pytest.mark.parametrize("args,fragments", [
    (["predict", "{ws}/test.csv", "--model", "{ws}", "--out", "{ws}/x.csv"], ["manifest.json"]),
    (["predict", "{ws}/test.csv", "--model", "{ws}/model", "--out", "{ws}/y.csv",
      "--tie-rate", "1.5"], ["--tie-rate"]),
    (["evaluate", "{ws}/test.csv", "--model", "{ws}/model"], ["no label columns"]),
    (["cv", "{ws}/train.csv", "--folds", "1"], ["--folds"]),
])
def test_user_errors_are_one_line(workspace, args, fragments):
    result = run(*[a.format(ws=workspace) for a in args])
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize("args,fragments", [
    (["predict", "{ws}/test.csv", "--model", "{ws}/model", "--out", "{ws}/u.csv", "--tie-rate",
      "abc"], ["--tie-rate", "predict --help`)"]),
    (["validate", "{ws}"], ["DATA", "is a directory"]),
    (["predict", "{ws}/test.csv", "--model", "{ws}/nope", "--out", "{ws}/u.csv"],
     ["--model", "does not exist"]),
    (["train", "{ws}/train.csv", "--out", "{ws}/m9", "--seed", "-1"], ["--seed"]),
    (["train", "{ws}/train.csv", "--out", "{ws}/m9", "--backend", "svm"], ["--backend"]),
    # the backend is --backend; --model names a model directory only
    (["train", "{ws}/train.csv", "--out", "{ws}/m9", "--model", "llm"], ["--backend"]),
    (["nonsense"], ["No such command"]),
])
def test_usage_errors_are_one_line(workspace, args, fragments):
    assert_one_line_error(run(*[a.format(ws=workspace) for a in args]), *fragments)


def test_a_damaged_model_file_is_one_line_before_lightgbm_sees_it(workspace, tmp_path):
    import shutil

    damaged = tmp_path / "model"
    shutil.copytree(workspace / "model", damaged)
    booster = damaged / "model.txt"
    booster.write_bytes(booster.read_bytes()[:1000])
    proc = subprocess.run([sys.executable, "-m", "arenajudge", "predict",
                           str(workspace / "test.csv"), "--model", str(damaged), "--out",
                           str(tmp_path / "s.csv")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {booster}: is corrupt (its sha256 differs from the manifest's); restore "
        "the file or retrain the model"]


def test_ctrl_c_while_importing_is_one_line(monkeypatch, capsys):
    import types

    from arenajudge import _entry

    class Interrupted(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "arenajudge.cli", Interrupted("arenajudge.cli"))
    with pytest.raises(SystemExit) as exit_info:
        _entry.main()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_unknown_config_key(workspace, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_estimators: 10\nleaves: 3\n")
    result = run("train", workspace / "train.csv", "--out", tmp_path / "m", "--config", bad)
    assert_one_line_error(result, "unknown config key", "leaves")


def test_console_script_reports_errors_without_traceback(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(MALFORMED["two_winners"][0])
    proc = subprocess.run([sys.executable, "-m", "arenajudge", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name,rows", [("human_dev.csv", 9526),
                                       ("arena_bench_gpt4_pairs.csv.gz", 30977)])
def test_validate_real_data(name, rows):
    path = requires_shared_data(name)
    result = run("validate", path, "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["rows"] == rows


def test_transformer_flags_need_a_transformer_backend(workspace, tmp_path):
    result = run("train", workspace / "train.csv", "--out", tmp_path / "m", "--lr", "1e-4")
    assert_one_line_error(result, "--lr", "--backend siamese|cross|llm")


def test_ray_flag_errors_do_not_need_the_ray_extra(workspace, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the ray extra were not installed
    monkeypatch.delitem(sys.modules, "arenajudge.engines.ray_engine", raising=False)
    result = run("predict", workspace / "test.csv", "--model", workspace / "model", "--out",
                 workspace / "z.csv", "--engine", "ray", "--embeddings", workspace / "test.csv")
    assert_one_line_error(result, "--embeddings needs --engine local")


def test_address_needs_the_ray_engine(workspace):
    result = run("predict", workspace / "test.csv", "--model", workspace / "model", "--out",
                 workspace / "z.csv", "--address", "auto")
    assert_one_line_error(result, "--engine ray")


GENERIC_METAVARS = ("RANGE", "DIRECTORY", "PATH", "TEXT", "FILENAME", "INTEGER", "BOOLEAN")


def _every_option():
    import click
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        for param in command.params:
            if isinstance(param, click.Option) and not param.is_flag:
                yield name, param, param.make_metavar(click.Context(command))


def test_every_option_names_what_it_takes_in_one_vocabulary():
    """One metavar per kind: DATA, MODEL_DIR and OUT for paths, N for counts, never
    click's generic INTEGER RANGE / DIRECTORY / TEXT."""
    seen = list(_every_option())
    assert len(seen) > 50
    for command, param, metavar in seen:
        where = f"{command} {param.opts[0]}: {metavar}"
        assert not any(word in metavar for word in GENERIC_METAVARS), where
        if param.name == "model_dir":
            assert metavar == "MODEL_DIR", where
        if param.opts[0] == "--out":
            assert metavar in ("OUT", "MODEL_DIR"), where
        if param.name == "seed":
            assert param.help.startswith("Seed of "), where
