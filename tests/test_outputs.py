"""Outputs: a destination that cannot be written fails before any work, in one line,
and a written submission never holds a NaN."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from arenajudge.cli import main
from arenajudge.errors import OutputError, OutputExistsError
from arenajudge.outputs import atomic_path, check_output, write_submission
from conftest import synthetic_frame

AS_ROOT = os.geteuid() == 0


@pytest.fixture
def places(tmp_path):
    (tmp_path / "file").write_text("a file", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("keep me", encoding="utf-8")
    (tmp_path / "link").symlink_to(tmp_path / "folder")
    return tmp_path


@pytest.mark.parametrize(
    "name,kind,message",
    [
        ("file/sub.csv", "file", "file is a file, not a directory"),
        ("file/deeper/model", "directory", "file is a file, not a directory"),
        ("folder", "file", "is a directory, and a file is written here"),
        ("file", "directory", "is a file, and a directory is written here"),
        ("link", "directory", "is a symbolic link"),
    ],
)
def test_unwritable_destinations_fail_with_force_too(places, name, kind, message):
    with pytest.raises(OutputError, match=message):
        check_output(places / name, True, kind)


def test_existing_output_needs_force(places):
    (places / "empty").mkdir()
    for name, kind in (("file", "file"), ("empty", "directory")):
        with pytest.raises(OutputExistsError, match="--force"):
            check_output(places / name, False, kind)
        assert check_output(places / name, True, kind) == places / name


def test_a_directory_is_never_deleted_to_write_a_file(places):
    with pytest.raises(OutputError), atomic_path(places / "folder", force=True) as staged:
        staged.write_text("csv", encoding="utf-8")
    assert (places / "folder" / "keep.txt").read_text(encoding="utf-8") == "keep me"
    assert (places / "link").is_symlink()


@pytest.mark.skipif(AS_ROOT, reason="root ignores directory permissions")
def test_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="locked is not writable"):
            check_output(locked / "new" / "sub.csv", False, "file")
    finally:
        locked.chmod(0o755)


def test_unwritable_folder_is_refused_as_any_user(tmp_path, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path) != tmp_path and real_access(path, mode)
    )
    with pytest.raises(OutputError, match="is not writable"):
        check_output(tmp_path / "a" / "b" / "sub.csv", False, "file")
    assert not (tmp_path / "a").exists()


def test_submission_with_nan_is_not_written(tmp_path):
    proba = np.array([[0.5, 0.3, 0.2], [np.nan, 0.5, 0.5], [0.2, 0.2, 0.6]])
    out = tmp_path / "sub.csv"
    with pytest.raises(OutputError, match=r"1 row\(s\).*first: row id b") as info:
        write_submission(np.array(["a", "b", "c"]), proba, out)
    assert "\n" not in str(info.value) and not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind
    write_submission(np.array(["a", "b", "c"]), np.nan_to_num(proba, nan=0.25), out)
    assert pd.read_csv(out)["id"].tolist() == ["a", "b", "c"]


@pytest.mark.parametrize(
    "command",
    [
        ["train", "{data}", "--out", "{bad}/model"],
        ["cv", "{data}", "--oof", "{bad}/oof.csv"],
        ["predict", "{data}", "--model", "{tmp}", "--out", "{bad}/sub.csv"],
        ["report", "{data}", "--out", "{bad}/report"],
        ["leaderboard", "{data}", "--plot", "{bad}/board.png"],
        ["embed", "{data}", "--base", "{tmp}", "--out", "{bad}/emb.parquet"],
    ],
)
def test_every_writing_command_checks_its_output_first(tmp_path, command):
    data = tmp_path / "broken.csv"  # reading it would fail: the output check must come first
    data.write_text("id,prompt,response_a,response_b\n1,[,[,[\n", encoding="utf-8")
    (tmp_path / "file").write_text("", encoding="utf-8")
    args = [a.format(data=data, bad=tmp_path / "file", tmp=tmp_path) for a in command]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "is a file, not a directory" in lines[0]


def test_predict_accepts_blank_label_columns(tmp_path):
    from arenajudge.data import read_battles
    from arenajudge.models.gbdt import GBDTModel
    from arenajudge.models.gbdt_config import GBDTConfig

    synthetic_frame(n=120).to_csv(tmp_path / "train.csv", index=False)
    config = GBDTConfig(
        n_estimators=10, min_child_samples=5, num_leaves=7, embedding_dim=8, n_jobs=1
    )
    GBDTModel(config).fit(read_battles(tmp_path / "train.csv")).save(tmp_path / "m")
    test = synthetic_frame(n=20, seed=4)
    test[["winner_model_a", "winner_model_b", "winner_tie"]] = ""
    test.to_csv(tmp_path / "test.csv", index=False)
    result = CliRunner().invoke(
        main,
        [
            "predict",
            str(tmp_path / "test.csv"),
            "--model",
            str(tmp_path / "m"),
            "--out",
            str(tmp_path / "s.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "s.csv")) == 20


@pytest.mark.parametrize("name", ["new/", "new//", "folder/", "folder", "link", "link/"])
@pytest.mark.parametrize("force", [False, True])
def test_a_file_output_naming_a_directory_is_refused(places, name, force):
    """`--out results/` must not write a file named results (Path drops the slash), nor
    say "pass --force" when --force could never write a file there."""
    with pytest.raises(OutputError, match="directory, and a file is written here") as info:
        check_output(f"{places}/{name}", force, "file")
    assert not isinstance(info.value, OutputExistsError)
    assert not (places / "new").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "{data}", "--model", "{tmp}", "--out", "{tmp}/out/"],
        ["cv", "{data}", "--oof", "{tmp}/out/"],
    ],
)
def test_a_command_refuses_a_file_output_ending_with_a_slash(tmp_path, command):
    data = tmp_path / "broken.csv"
    data.write_text("id,prompt,response_a,response_b\n1,[,[,[\n", encoding="utf-8")
    result = CliRunner().invoke(main, [a.format(data=data, tmp=tmp_path) for a in command])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "ends with a slash, naming a directory" in line
    assert not (tmp_path / "out").exists()
