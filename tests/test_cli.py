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

FAST_CONFIG = {
    "n_estimators": 30,
    "min_child_samples": 5,
    "num_leaves": 7,
    "holdout_share": 0.25,
    "early_stopping_rounds": 10,
    "embedding_dim": 16,
    "n_jobs": 1,
}


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
    test = synthetic_frame(n=60, seed=5).drop(
        columns=["winner_model_a", "winner_model_b", "winner_tie"]
    )
    test.to_csv(root / "test.csv", index=False)
    (root / "config.yaml").write_text(yaml.safe_dump(FAST_CONFIG))
    result = run(
        "train", root / "train.csv", "--out", root / "model", "--config", root / "config.yaml"
    )
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
    forced = run(
        "predict",
        workspace / "test.csv",
        "--model",
        workspace / "model",
        "--out",
        out,
        "--force",
        "--tie-rate",
        "0.31",
    )
    assert forced.exit_code == 0
    assert pd.read_csv(out)["winner_tie"].mean() > submission["winner_tie"].mean()


def test_train_refuses_existing_model_dir(workspace):
    result = run("train", workspace / "train.csv", "--out", workspace / "model")
    assert_one_line_error(result, "already exists")


def test_train_weighs_sources_from_a_sources_file(workspace, tmp_path):
    ids = pd.read_csv(workspace / "train.csv")["id"]
    sources = tmp_path / "sources.csv"
    pd.DataFrame({"id": ids, "source": ["big"] * 200 + ["small"] * 40}).to_csv(sources, index=False)
    result = run(
        "train",
        workspace / "train.csv",
        "--out",
        tmp_path / "model",
        "--config",
        workspace / "config.yaml",
        "--sources",
        sources,
    )
    assert result.exit_code == 0, result.output
    training = json.loads((tmp_path / "model" / "manifest.json").read_text())["training"]
    assert training["sources"] == {"big": 200, "small": 40}
    weight = training["source_weight"]
    assert weight["small"] / weight["big"] == pytest.approx(5**0.5)


def test_cv_json_and_oof(workspace):
    oof = workspace / "oof.csv"
    result = run(
        "cv",
        workspace / "train.csv",
        "--folds",
        "3",
        "--oof",
        oof,
        "--format",
        "json",
        "--config",
        workspace / "config.yaml",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert len(payload["folds"]) == 3
    assert payload["overall"]["log_loss"] < payload["overall"]["prior_log_loss"]
    frame = pd.read_csv(oof)
    assert list(frame.columns) == ["id", "fold", "winner_model_a", "winner_model_b", "winner_tie"]
    assert len(frame) == 240


def test_evaluate_reports_metrics(workspace):
    result = run(
        "evaluate", workspace / "train.csv", "--model", workspace / "model", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    overall = json.loads(result.stdout)["overall"]
    assert {"log_loss", "prior_log_loss", "accuracy", "ece", "rows"} <= set(overall)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["predict", "{ws}/test.csv", "--model", "{ws}", "--out", "{ws}/x.csv"], ["manifest.json"]),
        (
            [
                "predict",
                "{ws}/test.csv",
                "--model",
                "{ws}/model",
                "--out",
                "{ws}/y.csv",
                "--tie-rate",
                "1.5",
            ],
            ["--tie-rate"],
        ),
        (["evaluate", "{ws}/test.csv", "--model", "{ws}/model"], ["no label columns"]),
        (["cv", "{ws}/train.csv", "--folds", "1"], ["--folds"]),
    ],
)
def test_user_errors_are_one_line(workspace, args, fragments):
    result = run(*[a.format(ws=workspace) for a in args])
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (
            [
                "predict",
                "{ws}/test.csv",
                "--model",
                "{ws}/model",
                "--out",
                "{ws}/u.csv",
                "--tie-rate",
                "abc",
            ],
            ["--tie-rate", "predict --help`)"],
        ),
        (["validate", "{ws}"], ["DATA", "is a directory"]),
        (["train", "{ws}/train.csv", "--out", "{ws}/m9", "--seed", "-1"], ["--seed"]),
        (["train", "{ws}/train.csv", "--out", "{ws}/m9", "--backend", "svm"], ["--backend"]),
        # the backend is --backend; --model names a model directory only
        (["train", "{ws}/train.csv", "--out", "{ws}/m9", "--model", "llm"], ["--backend"]),
        (["nonsense"], ["No such command"]),
    ],
)
def test_usage_errors_are_one_line(workspace, args, fragments):
    assert_one_line_error(run(*[a.format(ws=workspace) for a in args]), *fragments)


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "{ws}/test.csv", "--out", "{ws}/u.csv"],
        ["evaluate", "{ws}/train.csv"],
        ["pseudo-label", "{ws}/test.csv", "--out", "{ws}/u.csv"],
        ["leaderboard", "{ws}/train.csv"],
        ["report", "{ws}/train.csv", "--out", "{ws}/r"],
        ["winrate", "{ws}/train.csv", "--baseline", "x"],
    ],
)
def test_a_missing_model_dir_is_the_same_one_line_error_everywhere(workspace, args):
    """--model is one option: every command leaves the directory to the loader, whose
    error says what a MODEL_DIR is and how to make one."""
    result = run(*[a.format(ws=workspace) for a in args], "--model", f"{workspace}/nope")
    assert_one_line_error(result, f"{workspace}/nope: is not a model directory", "train")


def test_every_model_option_is_the_one_definition():
    """No command defines its own --model: help, type and metavar are the shared ones."""
    from arenajudge.cli import main

    options = {
        name: next(p for p in command.params if "--model" in getattr(p, "opts", ()))
        for name, command in main.commands.items()
        if any("--model" in getattr(p, "opts", ()) for p in command.params)
    }
    assert {"predict", "evaluate", "serve", "leaderboard", "winrate"} <= set(options)
    shapes = {
        (o.help, o.metavar, o.type.exists, o.type.file_okay, o.type.dir_okay)
        for o in options.values()
    }
    assert shapes == {
        ("A model directory written by `arenajudge train`.", "MODEL_DIR", False, False, True)
    }


def test_a_damaged_model_file_is_one_line_before_lightgbm_sees_it(workspace, tmp_path):
    import shutil

    damaged = tmp_path / "model"
    shutil.copytree(workspace / "model", damaged)
    booster = damaged / "model.txt"
    booster.write_bytes(booster.read_bytes()[:1000])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "arenajudge",
            "predict",
            str(workspace / "test.csv"),
            "--model",
            str(damaged),
            "--out",
            str(tmp_path / "s.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {booster}: is corrupt (its sha256 differs from the manifest's); restore "
        "the file or retrain the model"
    ]


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
    proc = subprocess.run(
        [sys.executable, "-m", "arenajudge", "validate", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "name,rows", [("human_dev.csv", 9526), ("arena_bench_gpt4_pairs.csv.gz", 30977)]
)
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
    result = run(
        "predict",
        workspace / "test.csv",
        "--model",
        workspace / "model",
        "--out",
        workspace / "z.csv",
        "--engine",
        "ray",
        "--embeddings",
        workspace / "test.csv",
    )
    assert_one_line_error(result, "--embeddings needs --engine local")


def test_address_needs_the_ray_engine(workspace):
    result = run(
        "predict",
        workspace / "test.csv",
        "--model",
        workspace / "model",
        "--out",
        workspace / "z.csv",
        "--address",
        "auto",
    )
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


# ------------------------------------------------------------- hand-edited manifests
def _manifest_edits():
    """(name, edit) pairs that break a manifest's structure: every field replaced by a
    value of another type, every object two levels deep replaced by a list, every field
    removed, and text that is not JSON."""
    from arenajudge.models.manifest import _STRUCTURE

    fields_ = [keys[0] for keys in _STRUCTURE]
    for key in fields_:
        for replacement in ([], "x", 7, None, {}):
            yield f"{key}={json.dumps(replacement)}", key, replacement
        yield f"no {key}", key, KeyError
    for key in ("training", "metrics"):
        yield f"{key}.*=[]", key, "nested"
    yield "not JSON", None, "{"


def _edit(manifest, key, replacement):
    if replacement is KeyError:
        del manifest[key]
    elif replacement == "nested":
        for inner, value in manifest[key].items():
            if isinstance(value, dict):
                manifest[key][inner] = []
    else:
        manifest[key] = replacement
    return manifest


def _is_type_change(original, replacement, key):
    """Whether an edit breaks the structure: a value of an allowed type (a wrong format
    number, another package name) has its own, more specific, message."""
    if replacement in (KeyError, "nested") or key is None:
        return True
    if key == "feature_schema" and replacement is None:
        return False
    return type(original) is not type(replacement)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize(
    "name, key, replacement", list(_manifest_edits()), ids=[edit[0] for edit in _manifest_edits()]
)
def test_a_hand_edited_manifest_is_corrupt_never_an_internal_error(
    workspace, tmp_path, command, name, key, replacement
):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(workspace / "model", model)
    manifest_path = model / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    original = manifest.get(key) if key is not None else None
    if key is None:
        manifest_path.write_text(replacement)
    else:
        manifest_path.write_text(json.dumps(_edit(manifest, key, replacement)))
    extra = ["--out", tmp_path / "s.csv"] if command == "predict" else []
    result = run(
        command,
        workspace / ("test.csv" if command == "predict" else "train.csv"),
        "--model",
        model,
        *extra,
    )
    if key is not None and not _is_type_change(original, replacement, key):
        # a value of the right type is no structural problem: it loads (a field no loader
        # reads) or has its own message (a wrong format number, another package name)
        if result.exit_code != 0:
            assert_one_line_error(result, f"error: {model}")
        assert "internal error" not in result.stderr
        return
    # a JSON file that names no package may be another tool's manifest
    what = (
        "is not an arenajudge manifest"
        if (key, replacement) == ("package", KeyError)
        else "is corrupt"
    )
    assert_one_line_error(result, f"{manifest_path}: {what}")
    assert "internal error" not in result.stderr


# ------------------------------------------------------------------------- help
def test_bare_arenajudge_prints_the_help_on_stdout_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "arenajudge"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == ""
    helped = subprocess.run(
        [sys.executable, "-m", "arenajudge", "--help"], capture_output=True, text=True
    )
    assert proc.stdout == helped.stdout and "Commands:" in proc.stdout


def test_the_command_list_gives_whole_sentences():
    import click

    listing = run("--help").stdout.split("Commands:\n")[1]
    described: dict[str, str] = {}
    for line in listing.splitlines():
        if line.startswith("  ") and not line.startswith("   "):  # a command's first line
            name, _, text = line.strip().partition(" ")
            described[name] = text
        elif line.strip():
            described[name] += " " + line.strip()
    assert sorted(described) == sorted(main.list_commands(click.Context(main)))
    for name, text in described.items():
        text = " ".join(text.split())
        assert "..." not in text and "\u2026" not in text, name
        assert text.endswith((".", "!", "?")), f"{name}: {text}"


def test_help_ranges_print_readable_numbers():
    import re

    import click

    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        text = run(name, "--help").stdout
        assert not re.search(r"\d\.\d{7,}", text), name


# ------------------------------------------------------------------------ train
def test_train_prints_its_result_on_stdout_and_its_stages_on_stderr(workspace, tmp_path):
    result = run(
        "train",
        workspace / "train.csv",
        "--out",
        tmp_path / "m",
        "--config",
        workspace / "config.yaml",
    )
    assert result.exit_code == 0, result.output
    [line] = result.stdout.strip().splitlines()
    assert line.startswith("trained on 240 battles") and "out-of-sample calibrated" in line
    assert "training: the final model" in result.stderr
    assert "calibration cross-fit, fold 5 of 5" in result.stderr
    assert result.stdout not in result.stderr


def test_train_format_json_is_one_object_with_the_out_of_sample_score(workspace, tmp_path):
    result = run(
        "train",
        workspace / "train.csv",
        "--out",
        tmp_path / "m",
        "--config",
        workspace / "config.yaml",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["backend"], payload["battles"]) == ("gbdt", 240)
    saved = json.loads((tmp_path / "m" / "manifest.json").read_text())["metrics"]["holdout"]
    assert payload["validation"] == saved
    assert payload["validation"]["log_loss"] < payload["validation"]["prior_log_loss"]


def test_the_build_system_floor_covers_the_licence_metadata():
    """A PEP 639 licence string (license = "Apache-2.0") needs setuptools >= 77; an older
    floor lets pip pick a setuptools that rejects the metadata."""
    import re
    from pathlib import Path

    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    [setuptools] = [r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    floor = re.search(r">=\s*(\d+)", setuptools)
    if isinstance(pyproject["project"].get("license"), str):
        assert floor is not None and int(floor.group(1)) >= 77, setuptools


def test_a_retired_seed_warns_and_changes_nothing(workspace, tmp_path):
    """--seed only ever drew the A/B order of chosen/rejected pairs on predict: that order
    is now a function of the row, so the option is kept for scripts, warns, and two seeds
    write the same file."""
    frame = synthetic_frame(n=40, seed=9)
    pairs = tmp_path / "pairs.jsonl"
    pd.DataFrame(
        {"prompt": frame["prompt"], "chosen": frame["response_a"], "rejected": frame["response_b"]}
    ).to_json(pairs, orient="records", lines=True)
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}.csv"
        result = run("predict", pairs, "--model", workspace / "model", "--out", out, "--seed", seed)
        assert result.exit_code == 0, result.output
        assert "--seed no longer changes anything" in result.stderr
        outputs.append(out.read_text())
    assert outputs[0] == outputs[1]
    assert "--seed" not in run("predict", "--help").stdout
