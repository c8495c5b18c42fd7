"""Streaming predict: blocks of a file give exactly the whole file's output, errors and
all, and a failure leaves no output."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from arenajudge.cli import main
from arenajudge.data import LABELS, read_battles
from arenajudge.data.blocks import battle_blocks
from arenajudge.engines import local
from arenajudge.errors import ArenaJudgeError, DataError
from arenajudge.evaluate import evaluate_predictions
from arenajudge.models.gbdt import GBDTModel
from arenajudge.models.registry import load_model
from arenajudge.models.transformer.embed import write_embeddings
from arenajudge.outputs import write_csv
from conftest import synthetic_frame

BLOCK = 17
"""Rows per block in these tests: 230 rows make 14 blocks, the last one short."""


@pytest.fixture()
def model_dir(tiny_model_dir):
    return tiny_model_dir


def _write(frame: pd.DataFrame, path) -> None:
    """``frame`` in ``path``'s format, compressed as pandas infers from its extension."""
    if ".jsonl" in path.suffixes:
        frame.to_json(path, orient="records", lines=True)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)


def _whole_file_submission(model_dir, data, path, tie_rate=None, **read_kwargs) -> str:
    battles = read_battles(data, **read_kwargs)
    frame = pd.DataFrame(
        load_model(model_dir).predict_proba(battles, tie_rate=tie_rate), columns=list(LABELS)
    )
    frame.insert(0, "id", battles.id)
    write_csv(frame, path)
    return path.read_text()


def _pairs_frame(n: int) -> pd.DataFrame:
    kaggle = synthetic_frame(n=n, seed=4)
    return pd.DataFrame(
        {
            "prompt": kaggle["prompt"],
            "chosen": kaggle["response_a"],
            "rejected": kaggle["response_b"],
        }
    )


WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "2-workers"])


@WORKERS
@pytest.mark.parametrize(
    "name",
    [
        "test.csv",
        "test.csv.gz",
        "test.jsonl",
        "test.parquet",
        "pairs.csv",
        "test.csv.bz2",
        "test.jsonl.xz",
        "test.csv.zip",
    ],
)
def test_streaming_output_equals_whole_file_output(model_dir, tmp_path, name, workers):
    data = tmp_path / name
    frame = (
        _pairs_frame(230)
        if name.startswith("pairs")
        else synthetic_frame(n=230).drop(columns=list(LABELS)).sample(frac=1, random_state=0)
    )
    _write(frame, data)
    out = tmp_path / "streamed.csv"
    n = local.stream_predict(data, load_model(model_dir), out, block_rows=BLOCK, workers=workers)
    assert n == 230
    assert out.read_text() == _whole_file_submission(model_dir, data, tmp_path / "whole.csv")


def test_preference_pairs_keep_the_whole_file_ab_order_and_ids(tmp_path):
    data = tmp_path / "pairs.jsonl"
    _write(_pairs_frame(120), data)
    whole = read_battles(data)
    blocks = list(battle_blocks(data, block_rows=BLOCK))
    assert [first for first, _ in blocks] == list(range(0, 120, BLOCK))
    assert [i for _, b in blocks for i in b.id] == list(whole.id)
    assert [a for _, b in blocks for a in b.response_a] == whole.response_a
    np.testing.assert_array_equal(np.vstack([b.target for _, b in blocks]), whole.target)
    # both orders occur: the draw is not constant within a block
    assert 0.3 < whole.target[:, 1].mean() < 0.7


def _jsonl_with_late_keys(tmp_path, frame: pd.DataFrame, late: list[str], from_row: int):
    """``frame`` as JSON lines whose rows before ``from_row`` lack the keys ``late``: the
    first blocks have no such columns, the whole file has them, empty in those rows."""
    data = tmp_path / "late.jsonl"
    with open(data, "w", encoding="utf-8") as handle:
        for position, record in enumerate(frame.to_dict(orient="records")):
            if position < from_row:
                record = {k: v for k, v in record.items() if k not in late}
            handle.write(json.dumps(record) + "\n")
    return data


def _assert_same_battles(blocks, whole) -> None:
    for name in ("id", "model_a", "model_b", "source", "target", "both_bad"):
        parts = [getattr(b, name) for _, b in blocks]
        expected = getattr(whole, name)
        if expected is None:
            assert all(part is None for part in parts), name
        else:
            assert all(part is not None for part in parts), name
            np.testing.assert_array_equal(np.concatenate(parts), expected, err_msg=name)
    for name in ("prompt", "response_a", "response_b"):
        assert [t for _, b in blocks for t in getattr(b, name)] == getattr(whole, name), name


@pytest.mark.parametrize("late", [["model_a", "model_b"], ["source"]], ids="+".join)
def test_a_key_only_later_blocks_have_reads_as_in_the_whole_file(tmp_path, late):
    frame = synthetic_frame(n=120, seed=3).drop(columns=list(LABELS)).assign(source="arena")
    data = _jsonl_with_late_keys(tmp_path, frame, late, from_row=2 * BLOCK + 5)
    whole = read_battles(data)
    blocks = list(battle_blocks(data, block_rows=BLOCK))
    _assert_same_battles(blocks, whole)
    assert getattr(whole, late[0])[0] == ""  # the first rows' names are blank


def test_a_pairs_prompt_only_later_rows_have_is_the_whole_files_error(tmp_path):
    """Read whole, the first rows have an empty prompt cell (an error); a block without
    the key must not take the prompt from ``chosen`` instead."""
    data = _jsonl_with_late_keys(tmp_path, _pairs_frame(120), ["prompt"], from_row=BLOCK + 3)
    with pytest.raises(DataError) as whole:
        read_battles(data)
    with pytest.raises(DataError) as streamed:
        list(battle_blocks(data, block_rows=BLOCK))
    assert "row id 1: column prompt: is empty" in str(whole.value)
    assert "row id 1: column prompt: is empty" in str(streamed.value)


@pytest.mark.parametrize("labelled_first", [True, False], ids=["blank-late", "blank-first"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_labels_only_some_blocks_have_are_an_error_as_in_the_whole_file(
    tmp_path, fmt, labelled_first
):
    frame = synthetic_frame(n=120, seed=5)
    blank = slice(3 * BLOCK, None) if labelled_first else slice(0, 2 * BLOCK)
    first_blank = str(frame["id"].iloc[blank].iloc[0])
    if fmt == "csv":
        frame[list(LABELS)] = frame[list(LABELS)].astype(object)
        frame.loc[frame.index[blank], list(LABELS)] = ""
        data = tmp_path / "partly.csv"
        frame.to_csv(data, index=False)
    elif labelled_first:
        data = _jsonl_with_late_keys(tmp_path, frame.iloc[::-1], list(LABELS), 120 - 3 * BLOCK)
        lines = data.read_text().splitlines()[::-1]  # the unlabelled rows last
        data.write_text("\n".join(lines) + "\n")
    else:
        data = _jsonl_with_late_keys(tmp_path, frame, list(LABELS), from_row=2 * BLOCK)
    with pytest.raises(DataError) as whole:
        read_battles(data)
    with pytest.raises(DataError) as streamed:
        list(battle_blocks(data, block_rows=BLOCK))
    assert f"row id {first_blank}" in str(whole.value)
    assert f"row id {first_blank}" in str(streamed.value)


@WORKERS
@pytest.mark.parametrize("layout", ["kaggle", "pairs"])
def test_an_error_in_a_late_block_leaves_no_output_and_names_the_row(
    model_dir, tmp_path, layout, workers
):
    if layout == "kaggle":
        frame, column = synthetic_frame(n=230), "response_b"
        frame.loc[200, column] = "not json"
        where = "row id 1200: column response_b"
    else:  # no id column: rows are numbered across blocks as in the whole file
        frame, column = _pairs_frame(230), "chosen"
        frame.loc[200, column] = '[{"role": "wizard", "content": "hi"}]'  # unknown role
        where = "row id 201: column chosen"
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "out" / "submission.csv"
    with pytest.raises(DataError) as streamed:
        local.stream_predict(data, load_model(model_dir), out, block_rows=BLOCK, workers=workers)
    assert where in str(streamed.value)
    assert not out.exists() and list(out.parent.iterdir()) == []  # no temp file left
    with pytest.raises(DataError) as whole:
        read_battles(data)
    assert str(streamed.value) == str(whole.value)


@WORKERS
def test_duplicate_ids_across_blocks_are_caught(model_dir, tmp_path, workers):
    frame = synthetic_frame(n=120)
    frame.loc[100, "id"] = frame.loc[3, "id"]  # blocks 0 and 5
    data = tmp_path / "dupes.jsonl"
    _write(frame, data)
    out = tmp_path / "submission.csv"
    with pytest.raises(DataError) as streamed:
        local.stream_predict(data, load_model(model_dir), out, block_rows=BLOCK, workers=workers)
    with pytest.raises(DataError) as whole:
        read_battles(data)
    assert str(streamed.value) == str(whole.value)
    assert "row id 1003: column id: is a duplicate (first seen in row 4)" in str(whole.value)
    assert not out.exists()


def test_an_empty_file_is_refused_as_the_whole_file_reader_refuses_it(model_dir, tmp_path):
    data = tmp_path / "empty.csv"
    data.write_text("id,prompt,response_a,response_b\n")
    with pytest.raises(DataError, match="has no rows"):
        list(local.score_blocks(data, load_model(model_dir)))


@WORKERS
def test_cli_evaluate_over_blocks_equals_the_whole_file_metrics(
    model_dir, tmp_path, monkeypatch, workers
):
    frame = synthetic_frame(n=230, seed=7)
    frame["source"] = np.where(np.arange(230) % 3 == 0, "hh", "arena")
    data = tmp_path / "labelled.csv"
    frame.to_csv(data, index=False)
    battles = read_battles(data)
    proba = load_model(model_dir).predict_proba(battles)
    monkeypatch.setattr(
        "arenajudge.cli.scoring_commands.score_blocks",
        functools.partial(local.score_blocks, block_rows=BLOCK),
    )
    result = CliRunner().invoke(
        main,
        [
            "evaluate",
            str(data),
            "--model",
            str(model_dir),
            "--format",
            "json",
            "--workers",
            str(workers),
        ],
    )
    assert result.exit_code == 0, result.output
    reported = json.loads(result.stdout)
    overall, by_source = evaluate_predictions(battles, proba)
    assert reported["overall"] == overall
    assert reported["by_source"]["hh"] == by_source["hh"]


def test_embeddings_are_attached_block_by_block(tmp_path):
    frame = synthetic_frame(n=120, seed=2)
    data = tmp_path / "train.csv"
    frame.to_csv(data, index=False)
    battles = read_battles(data)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(120, 3, 6)).astype(np.float32)
    emb = tmp_path / "emb.parquet"
    # the file's rows in another order than the data's: attached by id
    order = rng.permutation(120)
    write_embeddings(
        battles.id[order],
        {
            name: vectors[order, k]
            for k, name in enumerate(("prompt_emb", "response_a_emb", "response_b_emb"))
        },
        {
            "format": "arenajudge.embeddings",
            "version": 1,
            "encoder": "/models/x",
            "model_type": "llama",
            "dim": 6,
            "max_length": 64,
            "pooling": "mean",
        },
        emb,
    )
    from arenajudge.data.embeddings import attach_embeddings

    model = GBDTModel(
        n_estimators=10, holdout_share=0, embedding_dim=8, embedding_components=3
    ).fit(attach_embeddings(battles, emb))
    streamed = np.vstack(
        [
            block.proba
            for block in local.score_blocks(data, model, embeddings_path=emb, block_rows=BLOCK)
        ]
    )
    np.testing.assert_array_equal(streamed, model.predict_proba(attach_embeddings(battles, emb)))


def test_a_failing_scorer_stops_the_reader_thread(model_dir, tmp_path):
    data = tmp_path / "test.csv"
    synthetic_frame(n=230).to_csv(data, index=False)

    def refuse(battles):
        if battles.id[0] != "1000":
            raise DataError("stop here")

    with pytest.raises(DataError, match="stop here"):
        list(local.score_blocks(data, load_model(model_dir), block_rows=BLOCK, check=refuse))
    import threading

    assert not any(t.name == "arenajudge-reader" for t in threading.enumerate())


@pytest.mark.parametrize("tie_rate", [None, 0.3])
def test_worker_processes_write_the_in_process_output(model_dir, tmp_path, tie_rate):
    data = tmp_path / "test.csv"
    synthetic_frame(n=230).drop(columns=list(LABELS)).to_csv(data, index=False)
    outputs = []
    for workers in (1, 2):
        outputs.append(tmp_path / f"workers-{workers}.csv")
        assert (
            local.stream_predict(
                data,
                load_model(model_dir),
                outputs[-1],
                tie_rate=tie_rate,
                block_rows=BLOCK,
                workers=workers,
            )
            == 230
        )
    assert (
        outputs[0].read_text()
        == outputs[1].read_text()
        == _whole_file_submission(model_dir, data, tmp_path / "whole.csv", tie_rate=tie_rate)
    )


def test_a_late_bad_row_with_workers_leaves_no_output(model_dir, tmp_path):
    frame = synthetic_frame(n=230)
    frame.loc[200, "response_b"] = "not json"
    data = tmp_path / "bad.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "out" / "submission.csv"
    with pytest.raises(DataError, match="row id 1200: column response_b"):
        local.stream_predict(data, load_model(model_dir), out, block_rows=BLOCK, workers=2)
    assert not out.exists() and list(out.parent.iterdir()) == []


class DyingModel(GBDTModel):
    """Its worker copies die while scoring, as a process killed for memory does."""

    def worker_copy(self):
        clone = super().worker_copy()
        clone.dies = True
        return clone

    def predict_proba(self, battles, tie_rate=None):
        if getattr(self, "dies", False):
            import os

            os._exit(9)
        return super().predict_proba(battles, tie_rate)


def test_a_worker_that_dies_is_one_clear_error_and_no_output(model_dir, tmp_path):
    data = tmp_path / "test.csv"
    synthetic_frame(n=100).to_csv(data, index=False)
    model = DyingModel.load(model_dir)
    out = tmp_path / "submission.csv"
    with pytest.raises(
        ArenaJudgeError,
        match=r"worker process stopped while scoring rows "
        r"1-17 .*--workers 1",
    ):
        local.stream_predict(data, model, out, block_rows=BLOCK, workers=2)
    assert not out.exists()
    assert local.stream_predict(data, model, out, block_rows=BLOCK, workers=1) == 100


@pytest.mark.parametrize("case", ["no worker copy", "shorter than a block"])
def test_models_without_a_worker_copy_and_short_files_score_in_this_process(
    model_dir, tmp_path, monkeypatch, case
):
    data = tmp_path / "test.csv"
    synthetic_frame(n=100 if case == "no worker copy" else BLOCK - 1).to_csv(data, index=False)
    model = load_model(model_dir)
    if case == "no worker copy":
        monkeypatch.setattr(model, "worker_copy", lambda: None)
    monkeypatch.setattr("arenajudge.engines.scoring.ProcessPoolExecutor", None)  # unused
    blocks = list(local.score_blocks(data, model, block_rows=BLOCK, workers=2))
    np.testing.assert_array_equal(
        np.vstack([b.proba for b in blocks]),
        load_model(model_dir).predict_proba(read_battles(data)),
    )


def test_a_script_without_a_main_guard_fails_clearly_instead_of_hanging(model_dir, tmp_path):
    data = tmp_path / "test.csv"
    synthetic_frame(n=60).to_csv(data, index=False)
    script = tmp_path / "unguarded.py"  # every spawned worker reruns this file
    script.write_text(
        "from arenajudge.engines.local import stream_predict\n"
        "from arenajudge.models.registry import load_model\n"
        f"stream_predict(r'{data}', load_model(r'{model_dir}'), r'{tmp_path / 'out.csv'}',"
        " block_rows=17, workers=2)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert 'outside `if __name__ == "__main__":`' in result.stderr
    assert not (tmp_path / "out.csv").exists()


@WORKERS
def test_a_warning_of_every_block_is_logged_once(model_dir, tmp_path, caplog, workers):
    data = tmp_path / "no-ids.csv"
    _pairs_frame(100).to_csv(data, index=False)
    with caplog.at_level("WARNING", logger="arenajudge"):
        blocks = list(
            local.score_blocks(data, load_model(model_dir), block_rows=BLOCK, workers=workers)
        )
    assert len(blocks) == 6
    warned = [r.getMessage() for r in caplog.records if "has no id column" in r.getMessage()]
    assert warned == [f"{data}: has no id column; rows are numbered from 1 as their ids"]


def test_predict_hands_back_ids_without_texts(model_dir, tmp_path):
    data = tmp_path / "test.csv"
    synthetic_frame(n=60).to_csv(data, index=False)
    block = next(
        local.score_blocks(
            data, load_model(model_dir), block_rows=BLOCK, workers=2, keep_texts=False
        )
    )
    assert list(block.ids) == [str(1000 + i) for i in range(BLOCK)]
    assert block.battles.prompt == [()] * BLOCK and block.target is not None


def test_ctrl_c_with_workers_stops_them_quietly_and_leaves_no_output(model_dir, tmp_path):
    data = tmp_path / "test.csv"
    synthetic_frame(n=20_000).to_csv(data, index=False)
    out = tmp_path / "out" / "submission.csv"
    out.parent.mkdir()
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from arenajudge.engines.local import stream_predict\n"
        "from arenajudge.models.registry import load_model\n"
        "if __name__ == '__main__':\n"
        "    print('started', flush=True)\n"
        "    try:\n"
        f"        stream_predict(r'{data}', load_model(r'{model_dir}'), r'{out}',"
        " block_rows=17, workers=2)\n"
        "    except KeyboardInterrupt:\n"
        "        sys.exit(130)\n"
    )
    # a terminal's Ctrl-C reaches the whole process group, the workers included
    process = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout.readline() == "started\n"
    time.sleep(1.5)  # the workers are starting or scoring
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert list(out.parent.iterdir()) == []
