"""Nothing is lost (issue 24): --force replaces only an output of the same kind that
arenajudge wrote, an output is never one of the command's inputs, a path that appears
during a run is never replaced without --force, SIGTERM/SIGHUP clean up like Ctrl-C and
errors of the operating system end as one line naming the file, the old output kept."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from arenajudge import no_replace, outputs
from arenajudge.cli import main
from arenajudge.errors import OutputError, OutputExistsError
from arenajudge.outputs import MARKER, atomic_path, check_output, written_output
from conftest import synthetic_frame


@pytest.fixture()
def model_dir(tiny_model_dir) -> Path:
    return tiny_model_dir


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "internal error" not in lines[0]
    return lines[0]


def _write_dir(path: Path, output: str, text: str = "new") -> None:
    with atomic_path(path, True, kind="directory", output=output) as staged:
        staged.mkdir()
        (staged / "content.txt").write_text(text, encoding="utf-8")


def _foreign(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work", encoding="utf-8")
    (folder / "figures").mkdir()
    return folder


# ------------------------------------------------------------------ 1: what --force replaces
def test_force_never_replaces_a_directory_arenajudge_did_not_write(tmp_path):
    folder = _foreign(tmp_path)
    with pytest.raises(
        OutputError,
        match=r"holds 2 entries \(figures, thesis.tex\) and no "
        r"arenajudge manifest",
    ):
        check_output(folder, True, "directory", output="report")
    with pytest.raises(OutputError, match="replaces only what it wrote"):
        _write_dir(folder, "report")
    assert (folder / "thesis.tex").read_text(encoding="utf-8") == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no staging left


@pytest.mark.parametrize(
    "command",
    [
        ["report", "{data}", "--out", "{out}", "--force"],
        ["train", "{data}", "--out", "{out}", "--force"],
        ["demo", "--out", "{out}", "--force"],
    ],
)
def test_cli_force_keeps_a_foreign_directory(tmp_path, battles_csv, command):
    folder = _foreign(tmp_path)
    result = CliRunner().invoke(main, [a.format(data=battles_csv, out=folder) for a in command])
    assert "no arenajudge manifest" in _one_error_line(result)
    assert (folder / "thesis.tex").read_text(encoding="utf-8") == "years of work"


def test_force_replaces_only_an_output_of_the_same_kind(tmp_path, model_dir):
    report = tmp_path / "report"
    _write_dir(report, "report", "old")
    assert written_output(report) == "report"
    assert json.loads((report / MARKER).read_text())["package"] == "arenajudge"
    with pytest.raises(OutputError, match="holds an arenajudge report, not a model"):
        _write_dir(report, "model")
    _write_dir(report, "report", "new")
    assert (report / "content.txt").read_text(encoding="utf-8") == "new"
    # a model saved before markers existed is known by its manifest
    (model_dir / MARKER).rename(tmp_path / "marker")
    try:
        assert written_output(model_dir) == "model"
        check_output(model_dir, True, "directory", output="model")
        with pytest.raises(OutputError, match="not a report"):
            check_output(model_dir, True, "directory", output="report")
    finally:
        (tmp_path / "marker").rename(model_dir / MARKER)


def test_an_empty_directory_is_replaced_with_force(tmp_path):
    (tmp_path / "out").mkdir()
    _write_dir(tmp_path / "out", "report")
    assert (tmp_path / "out" / "content.txt").exists()


def test_a_failed_replacement_puts_the_old_output_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    _write_dir(out, "report", "old")
    real = no_replace.move_no_replace

    def fail_for_the_new_one(src, dst):
        if src.name == "out":  # the staged output; moving the old one back still works
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real(src, dst)

    monkeypatch.setattr(no_replace, "move_no_replace", fail_for_the_new_one)
    with pytest.raises(OutputError, match="no space left on device.*previous output"):
        _write_dir(out, "report", "new")
    assert (out / "content.txt").read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ------------------------------------------------------------- 2: an output that is an input
@pytest.mark.parametrize(
    "command",
    [
        ["predict", "{data}", "--model", "{model}", "--out", "{data}", "--force"],
        ["predict", "{data}", "--model", "{model}", "--out", "{model}/manifest.json", "--force"],
        ["train", "{data}", "--out", "{tmp}", "--force"],  # a parent of DATA
        ["train", "{data}", "--teacher", "{data}", "--out", "{tmp}/m"],  # fine: m is new ...
        ["cv", "{data}", "--oof", "{data}", "--force"],
        ["report", "{data}", "--out", "{tmp}", "--force"],
        ["report", "{data}", "--model", "{model}", "--out", "{model}", "--force"],
        [
            "ensemble",
            "{model}",
            "--oof",
            "{data}",
            "--data",
            "{data}",
            "--out",
            "{model}",
            "--force",
        ],
        [
            "ensemble",
            "{model}",
            "--oof",
            "{data}",
            "--data",
            "{data}",
            "--out",
            "{tmp}/e",
            "--write-oof",
            "{data}",
            "--force",
        ],
        [
            "cascade",
            "--first",
            "{model}",
            "--then",
            "{model}",
            "--oof-first",
            "{data}",
            "--oof-then",
            "{data}",
            "--data",
            "{data}",
            "--out",
            "{model}/..",
            "--force",
        ],
        ["pseudo-label", "{data}", "--model", "{model}", "--out", "{link}", "--force"],
    ],
)
def test_an_output_that_is_an_input_is_refused_before_any_work(tmp_path, model_dir, command):
    data = tmp_path / "battles.csv"
    synthetic_frame(n=30).to_csv(data, index=False)
    (tmp_path / "link.csv").symlink_to(data)  # resolved paths are compared
    before = {p: p.read_bytes() for p in (data, *model_dir.iterdir())}
    args = [
        a.format(data=data, model=model_dir, tmp=tmp_path, link=tmp_path / "link.csv")
        for a in command
    ]
    if "--teacher" in command:  # the teacher is an input as much as DATA
        args[args.index("--out") + 1] = str(tmp_path)
    result = CliRunner().invoke(main, args)
    assert "is also an input of this command" in _one_error_line(result)
    assert {p: p.read_bytes() for p in before} == before


# --------------------------------------------------- 3: a path that appeared during the run
@pytest.mark.parametrize("no_renameat2", [False, True], ids=["renameat2", "fallback"])
@pytest.mark.parametrize(
    "kind,appears",
    [
        ("file", "file"),
        ("file", "directory"),
        ("directory", "empty directory"),
        ("directory", "file"),
    ],
)
def test_without_force_a_path_that_appeared_is_never_replaced(
    tmp_path, monkeypatch, kind, appears, no_renameat2
):
    if no_renameat2:
        monkeypatch.setattr(no_replace, "_RENAMEAT2", None)
    out = tmp_path / "out"
    with pytest.raises(OutputExistsError, match="already exists; pass --force"):
        with atomic_path(out, kind=kind, output="report") as staged:
            if kind == "directory":
                staged.mkdir()
            staged.write_text("ours", encoding="utf-8") if kind == "file" else None
            # another run publishes the same --out meanwhile
            out.mkdir() if appears.endswith("directory") else out.write_text("theirs")
    assert (out.is_dir() and not any(out.iterdir())) or out.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_with_force_a_foreign_directory_that_appeared_is_kept(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(OutputError, match="no arenajudge manifest"):
        with atomic_path(out, True, kind="directory", output="report") as staged:
            staged.mkdir()
            _foreign(tmp_path)
    assert (out / "thesis.tex").read_text(encoding="utf-8") == "years of work"


def test_publishing_without_force_still_writes_a_new_output(tmp_path, monkeypatch):
    for fallback in (False, True):
        if fallback:
            monkeypatch.setattr(no_replace, "_RENAMEAT2", None)
        _write_dir(tmp_path / f"dir{fallback}", "report")
        outputs.write_text("x", tmp_path / f"file{fallback}.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dirFalse",
        "dirTrue",
        "fileFalse.txt",
        "fileTrue.txt",
    ]


# ------------------------------------------------------------------------ 4: SIGTERM, SIGHUP
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_terminating_signal_cleans_up_and_exits_128_plus_it(
    tmp_path, battles_csv, monkeypatch, signum
):
    import arenajudge.models.gbdt as gbdt

    def signalled(*args, **kwargs):  # while the model directory is being staged
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises here, at once
        raise AssertionError("the signal was not handled")

    monkeypatch.setattr(gbdt, "write_manifest", signalled)
    # under `nohup` (a CI runner may use it) SIGHUP starts ignored, and stays so by design
    before = signal.signal(signum, signal.SIG_DFL)
    try:
        result = CliRunner().invoke(
            main, ["train", str(battles_csv), "--out", str(tmp_path / "m"), "--n-estimators", "5"]
        )
        after = signal.getsignal(signum)
    finally:
        signal.signal(signum, before)
    assert result.exit_code == 128 + signum, result.output
    # after the training stages, the one line
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: terminated ({signal.Signals(signum).name})"
    )
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [battles_csv.name]
    assert after == signal.SIG_DFL  # handlers restored after the command


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            children = {int(c) for c in task.read_text().split()}
            todo += children - found
            found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:")[1][:4]
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
@pytest.mark.parametrize(
    "signum,group",
    [(signal.SIGTERM, False), (signal.SIGHUP, True)],
    ids=["kill-PID", "hangup-of-the-group"],
)
def test_a_signal_during_predict_with_workers_leaves_no_process_or_staging(
    tmp_path, model_dir, signum, group
):
    data = tmp_path / "test.csv"
    frame = synthetic_frame(n=2000)  # x 10: blocks of 8,192 rows go to the workers
    pd.concat([frame.assign(id=frame["id"].astype(str) + f"-{k}") for k in range(10)]).to_csv(
        data, index=False
    )
    out = tmp_path / "out" / "submission.csv"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "arenajudge",
            "predict",
            str(data),
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--workers",
            "2",
        ],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # under `nohup` SIGHUP is inherited ignored, and an ignored hangup stays ignored
        preexec_fn=lambda: signal.signal(signum, signal.SIG_DFL),
    )
    workers: set[int] = set()
    for _ in range(600):  # wait until the resource tracker and both workers run
        workers = _descendants(process.pid)
        if len(workers) >= 3 or process.poll() is not None:
            break
        time.sleep(0.1)
    assert len(workers) >= 3, "no worker processes started"
    time.sleep(0.5)  # past their start, while which a hangup is ignored (as Ctrl-C is)
    if group:  # a closed terminal signals every process of the group, workers included
        os.killpg(process.pid, signum)
    else:  # `kill PID`: the parent only
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines()[-1] == f"error: terminated ({signum.name})"
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    for _ in range(100):  # workers that exit are gone within seconds
        if not any(map(_alive, workers)):
            break
        time.sleep(0.1)
    assert not any(map(_alive, workers))
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


# ------------------------------------------------------------ 5: errors of the system
def test_a_file_size_limit_ends_in_one_line_and_keeps_the_old_output(tmp_path, model_dir):
    data, out = tmp_path / "test.csv", tmp_path / "sub.csv"
    synthetic_frame(n=400).to_csv(data, index=False)
    out.write_text("old submission", encoding="utf-8")
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from arenajudge._entry import main\n"
        "sys.argv = ['arenajudge'] + sys.argv[1:]\n"
        "main()\n"
    )
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "predict",
            str(data),
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--force",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = process.stderr.strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1, process.stderr
    assert lines[0].startswith(f"error: {out}: could not be written (file too large)")
    assert out.read_text(encoding="utf-8") == "old submission"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv", "test.csv"]


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
@pytest.mark.parametrize("out", ["/proc/arenajudge-sub.csv", "/proc/self/new/sub.csv"])
def test_a_pseudo_file_system_ends_in_one_line(tmp_path, model_dir, out):
    data = tmp_path / "test.csv"
    synthetic_frame(n=20).to_csv(data, index=False)
    result = CliRunner().invoke(
        main, ["predict", str(data), "--model", str(model_dir), "--out", out]
    )
    assert _one_error_line(result).startswith(f"error: {out}: ")


def test_permissions_changed_during_the_run_keep_the_old_output(tmp_path, monkeypatch):
    out = tmp_path / "out.csv"
    out.write_text("old", encoding="utf-8")

    def denied(src, dst):  # the folder was made read-only while the output was written
        raise PermissionError(errno.EACCES, "Permission denied", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(OutputError, match=r"out.csv: could not be written \(permission denied"):
        outputs.write_text("new", out, force=True)
    assert out.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_any_other_error_of_the_system_names_its_file(tmp_path, battles_csv, monkeypatch):
    import arenajudge.cli.report_commands as report_commands

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/var/cache/fonts.json")

    monkeypatch.setattr(report_commands, "read_battles", disk_full)
    result = CliRunner().invoke(main, ["report", str(battles_csv), "--out", str(tmp_path / "r")])
    assert _one_error_line(result) == (
        "error: /var/cache/fonts.json: no space left on device; free some space or write elsewhere"
    )
