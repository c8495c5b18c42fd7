"""Readers, validation and folds: dirty-but-valid files load, malformed ones fail clearly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arenajudge.data import LABELS, folds, read_battles, validate
from arenajudge.data.blocks import battle_blocks
from arenajudge.errors import DataError
from conftest import synthetic_frame

HEADER = "id,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"


def write(tmp_path: Path, body: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def test_kaggle_csv_round_trip(battles_csv):
    battles = read_battles(battles_csv)
    assert len(battles) == 160
    assert battles.target.shape == (160, 3)
    assert np.allclose(battles.target.sum(axis=1), 1)
    assert battles.has_models and battles.prompt[0][0].startswith("question 0")


def test_dirty_but_valid_cells(tmp_path):
    path = write(
        tmp_path,
        HEADER
        + '1,"[""hi""]","[null, ""a""]","[]",1,0,0\n'
        + '2,"[""hi""]","[""\\ud83d broken""]","[""ok""]",0.0,1.0,0.0\n'
        + '3,"[""q""]","[""x""]","[""y""]",0.2,0.3,0.5\n',
    )
    battles = read_battles(path)
    assert battles.response_a[0] == ("", "a")
    assert battles.response_b[0] == ()
    assert battles.response_a[1] == ("\ufffd broken",)
    assert battles.repaired_surrogates == 1
    assert battles.label.tolist() == [0, 1, 2]
    assert battles.target[2].tolist() == [0.2, 0.3, 0.5]


def test_extra_columns_and_unlabelled_files_are_valid(tmp_path):
    path = write(
        tmp_path,
        'id,prompt,response_a,response_b,notes\n1,"[""p""]","[""a""]","[""b""]",whatever\n',
    )
    battles = read_battles(path)
    assert not battles.labelled and len(battles) == 1


def test_gzip_jsonl_and_parquet_match_csv(tmp_path, battles_csv):
    frame = synthetic_frame()
    records = frame.to_dict(orient="records")
    jsonl = tmp_path / "data.jsonl.gz"
    with gzip.open(jsonl, "wt", encoding="utf-8") as handle:
        for record in records:  # lists as native JSON, not strings
            record = {
                **record,
                **{c: json.loads(record[c]) for c in ("prompt", "response_a", "response_b")},
            }
            handle.write(json.dumps(record) + "\n")
    parquet = tmp_path / "data.parquet"
    frame.assign(
        **{c: frame[c].map(json.loads) for c in ("prompt", "response_a", "response_b")}
    ).to_parquet(parquet)
    reference = read_battles(battles_csv)
    for path in (jsonl, parquet):
        battles = read_battles(path)
        assert battles.id.tolist() == reference.id.tolist()
        assert battles.response_b == reference.response_b
        assert np.array_equal(battles.target, reference.target)


# --------------------------------------------------------------------------- compression
def _zstd_installed() -> bool:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


COMPRESSED = [
    ".gz",
    ".bz2",
    ".zip",
    ".xz",
    pytest.param(
        ".zst",
        marks=pytest.mark.skipif(not _zstd_installed(), reason="writing .zst needs zstandard"),
    ),
]


def _write_compressed(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` as CSV or JSON lines, compressed as pandas infers from ``path``."""
    if ".jsonl" in path.suffixes:
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", COMPRESSED)
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_every_compression_pandas_infers_reads_on_every_path(tmp_path, battles_csv, fmt, suffix):
    from click.testing import CliRunner

    from arenajudge.cli import main
    from arenajudge.data.blocks import battle_blocks

    path = _write_compressed(synthetic_frame(), tmp_path / f"data.{fmt}{suffix}")
    reference = read_battles(battles_csv)
    whole = read_battles(path)  # the whole-file reader
    assert whole.id.tolist() == reference.id.tolist()
    assert whole.response_b == reference.response_b
    np.testing.assert_array_equal(whole.target, reference.target)
    blocks = [b for _, b in battle_blocks(path, block_rows=37)]  # streaming predict's
    assert [i for b in blocks for i in b.id] == reference.id.tolist()
    assert [a for b in blocks for a in b.response_a] == reference.response_a
    assert validate(path).valid
    board = CliRunner().invoke(main, ["leaderboard", str(path), "--ci", "none"])
    assert board.exit_code == 0, board.output


def test_zst_without_zstandard_is_one_error_naming_the_package(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from arenajudge.cli import main
    from arenajudge.data.blocks import battle_blocks
    from arenajudge.errors import MissingDependencyError

    monkeypatch.setitem(__import__("sys").modules, "zstandard", None)  # as if not installed
    path = write(tmp_path, "not really zstd", "data.csv.zst")
    for read in (read_battles, lambda p: list(battle_blocks(p)), validate):
        with pytest.raises(MissingDependencyError, match="pip install zstandard"):
            read(path)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        (
            f"error: {path}: is zstd-compressed and reading it needs the zstandard package, "
            "which is not installed; install it with `pip install zstandard` or decompress "
            "the file"
        )
    ]


def test_zip_of_several_files_and_corrupt_compressed_files_are_one_error(tmp_path):
    import zipfile

    several = tmp_path / "data.csv.zip"
    with zipfile.ZipFile(several, "w") as archive:
        archive.writestr("a.csv", HEADER)
        archive.writestr("b.csv", HEADER)
    with pytest.raises(DataError, match="zip archive of 2 files"):
        read_battles(several)
    for suffix in (".bz2", ".xz", ".zip", ".gz"):
        corrupt = write(tmp_path, "plain text, not compressed", f"bad.csv{suffix}")
        with pytest.raises(DataError, match="cannot be read"):
            read_battles(corrupt)


def test_arena_conversation_layout(tmp_path):
    def conv(answer):
        return [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": answer},
        ]

    rows = [
        {
            "question_id": "q1",
            "model_a": "x",
            "model_b": "y",
            "conversation_a": conv("A"),
            "conversation_b": conv("B"),
            "winner": "tie (bothbad)",
        },
        {
            "question_id": "q2",
            "model_a": "x",
            "model_b": "y",
            "conversation_a": conv("A"),
            "conversation_b": conv("B"),
            "winner": "model_b",
        },
    ]
    path = tmp_path / "arena.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    battles = read_battles(path)
    assert battles.id.tolist() == ["q1", "q2"]
    assert battles.prompt[0] == ("hello",) and battles.response_b[0] == ("B",)
    assert battles.label.tolist() == [2, 1]


def _order_by_prompt(battles) -> dict:
    return {
        p: (a, b, label)
        for p, a, b, label in zip(
            battles.prompt, battles.response_a, battles.response_b, battles.label
        )
    }


def test_chosen_rejected_pair_order_is_a_function_of_the_row(tmp_path):
    """Not of the seed, the row's position or the format: an OOF or teacher file written
    in one run lines up with the pairs read in any other."""
    rows = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(400)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    battles = read_battles(path)
    share_a = (battles.label == 0).mean()
    assert 0.4 < share_a < 0.6
    winners = [
        a if label == 0 else b
        for a, b, label in zip(battles.response_a, battles.response_b, battles.label)
    ]
    assert all(w[0].startswith("good") for w in winners)
    blocks = [b for _, b in battle_blocks(path, block_rows=7)]
    assert [a for b in blocks for a in b.response_a] == battles.response_a
    shuffled = tmp_path / "shuffled.csv"
    pd.DataFrame(rows).sample(frac=1, random_state=0).to_csv(shuffled, index=False)
    assert _order_by_prompt(read_battles(shuffled)) == _order_by_prompt(battles)


# --------------------------------------------------------------------------- votes only
VOTES_ONLY = {  # labelled files whose text columns are missing or misnamed
    "winner": "id,model_a,model_b,winner\n1,x,y,model_a\n2,y,x,tie\n3,x,y,model_b\n",
    "label columns": (
        "id,model_a,model_b,question,answer_a,answer_b,winner_model_a,"
        "winner_model_b,winner_tie\n1,x,y,q,a,b,1,0,0\n2,y,x,q,a,b,0,1,0\n"
    ),
    "prompt only": 'id,model_a,model_b,prompt,winner\n1,x,y,"[""q""]",model_a\n',
}


@pytest.mark.parametrize("case", sorted(VOTES_ONLY))
def test_votes_only_files_are_refused_where_texts_are_needed(tmp_path, case):
    path = write(tmp_path, VOTES_ONLY[case])
    with pytest.raises(DataError) as raised:
        read_battles(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: has votes")
    assert "prompt, response_a, response_b" in message and "--columns" in message
    assert "leaderboard" in message and "\n" not in message
    votes = read_battles(path, needs_texts=False)  # a leaderboard from the votes
    assert votes.layout == "votes" and votes.labelled and votes.has_models
    report = validate(path)
    assert report.valid and report.layout.startswith("votes only")
    assert report.usable_by.startswith("leaderboard only")


def test_votes_only_file_read_in_blocks_is_refused(tmp_path):
    from arenajudge.data.blocks import battle_blocks

    path = write(tmp_path, VOTES_ONLY["winner"])
    with pytest.raises(DataError, match="has votes .* but no battle texts"):
        list(battle_blocks(path, block_rows=2))


def _votes_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    names = np.array(["x", "y", "z"])
    pairs = rng.choice(3, size=(60, 2))
    frame = pd.DataFrame(
        {
            "id": range(60),
            "model_a": names[pairs[:, 0]],
            "model_b": names[(pairs[:, 0] + 1 + pairs[:, 1] % 2) % 3],
            "winner": rng.choice(["model_a", "model_b", "tie"], size=60),
        }
    )
    path = tmp_path / "votes.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["train", "{data}", "--out", "{tmp}/model"],
        ["cv", "{data}", "--oof", "{tmp}/oof.csv"],
        ["report", "{data}", "--out", "{tmp}/report"],
        ["winrate", "{data}", "--baseline", "x"],
        ["leaderboard", "{data}", "--style-control"],
    ],
    ids=lambda args: " ".join(args[:1] + [a for a in args[2:] if a.startswith("--")][:1]),
)
def test_commands_that_need_texts_refuse_votes_only_in_one_line(tmp_path, args):
    from click.testing import CliRunner

    from arenajudge.cli import main

    data = _votes_file(tmp_path)
    result = CliRunner().invoke(main, [a.format(data=data, tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {data}: has votes"), lines
    assert "prompt, response_a, response_b" in lines[0] and "--columns" in lines[0]
    assert not list(tmp_path.glob("model*")) and not (tmp_path / "oof.csv").exists()


def test_leaderboard_and_validate_read_votes_only(tmp_path):
    from click.testing import CliRunner

    from arenajudge.cli import main

    data = _votes_file(tmp_path)
    board = CliRunner().invoke(main, ["leaderboard", str(data), "--ci", "none"])
    assert board.exit_code == 0, board.output
    checked = CliRunner().invoke(main, ["validate", str(data)])
    assert checked.exit_code == 0, checked.output
    assert "layout: votes only" in checked.stdout
    assert "usable by: leaderboard only" in checked.stdout
    assert "empty responses" not in checked.stdout  # no texts to measure


def test_validate_names_the_layout_and_its_commands(tmp_path, battles_csv):
    report = validate(battles_csv)
    assert report.layout == "battles (prompt, response_a, response_b)"
    assert report.usable_by == "every command"
    unlabelled = tmp_path / "test.csv"
    pd.read_csv(battles_csv).drop(columns=list(LABELS)).to_csv(unlabelled, index=False)
    assert validate(unlabelled).usable_by.startswith("predict")


def test_column_mapping(tmp_path):
    path = write(tmp_path, 'qid,question,answer1,answer2\n7,"[""p""]","[""a""]","[""b""]"\n')
    battles = read_battles(
        path,
        columns={
            "id": "qid",
            "prompt": "question",
            "response_a": "answer1",
            "response_b": "answer2",
        },
    )
    assert battles.response_b == [("b",)]


MALFORMED = {
    "broken_json": (
        HEADER + '1,"[""p""]","[""a""","[""b""]",1,0,0\n',
        "response_a",
        "not valid JSON",
    ),
    "not_a_list": (
        HEADER + '1,"[""p""]","{""a"": 1}","[""b""]",1,0,0\n',
        "response_a",
        "not a list",
    ),
    "number_turn": (HEADER + '1,"[""p""]","[""a""]","[1]",1,0,0\n', "response_b", "not a string"),
    "empty_cell": (HEADER + '1,,"[""a""]","[""b""]",1,0,0\n', "prompt", "is empty"),
    "duplicate_id": (
        HEADER + '1,"[""p""]","[""a""]","[""b""]",1,0,0\n1,"[""q""]","[""a""]","[""b""]",0,1,0\n',
        "row id 1",
        "duplicate",
    ),
    "missing_id": (HEADER + ',"[""p""]","[""a""]","[""b""]",1,0,0\n', "column id", "empty"),
    "two_winners": (
        HEADER + '1,"[""p""]","[""a""]","[""b""]",1,1,0\n',
        "row id 1",
        "not one winner",
    ),
    "negative_label": (
        HEADER + '1,"[""p""]","[""a""]","[""b""]",1.5,-0.5,0\n',
        "row id 1",
        "not one winner",
    ),
    "text_label": (
        HEADER + '1,"[""p""]","[""a""]","[""b""]",yes,0,0\n',
        "row id 1",
        "not one winner",
    ),
    "missing_label_column": (
        "id,prompt,response_a,response_b,winner_model_a,winner_model_b\n"
        '1,"[""p""]","[""a""]","[""b""]",1,0\n',
        "winner_tie",
        "missing",
    ),
    "missing_response_column": (
        'id,prompt,response_a\n1,"[""p""]","[""a""]"\n',
        "response_b",
        "missing",
    ),
    "no_battle_columns": ("x,y\n1,2\n", "data.csv", "no battle columns"),
    "header_only": (HEADER, "data.csv", "no rows"),
    "empty_file": ("", "data.csv", "is empty"),
    "bad_winner": (
        'id,prompt,response_a,response_b,winner\n1,"[""p""]","[""a""]","[""b""]",model_c\n',
        "winner",
        "expected one of",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_inputs_raise_one_clear_error(tmp_path, case):
    body, where, what = MALFORMED[case]
    path = write(tmp_path, body)
    with pytest.raises(DataError) as info:
        read_battles(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and where in message and what in message


def test_not_utf8_and_unreadable_files(tmp_path):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes((HEADER + '1,"[""caf\xe9""]","[""a""]","[""b""]",1,0,0\n').encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_battles(latin1)
    corrupt = tmp_path / "corrupt.csv.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00 definitely not gzip")
    with pytest.raises(DataError, match="cannot be read"):
        read_battles(corrupt)
    with pytest.raises(DataError, match="does not exist"):
        read_battles(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="unknown extension"):
        read_battles(write(tmp_path, "x", name="data.txt"))


def test_validate_collects_every_error(tmp_path):
    path = write(
        tmp_path,
        HEADER
        + '1,"[""p""]","[""a""","[""b""]",1,0,0\n'
        + '1,"[""p""]","[""a""]","[""b""]",1,1,0\n',
    )
    report = validate(path)
    assert not report.valid
    assert report.n_errors == 3  # broken JSON, duplicate id, two winners
    assert report.rows == 2


def test_validate_summary(battles_csv):
    report = validate(battles_csv)
    assert report.valid and report.rows == 160 and report.labelled
    assert sum(report.class_counts.values()) == 160
    assert set(report.class_counts) == set(LABELS)
    assert report.distinct_prompts == 80 and report.duplicate_prompt_rows == 80


def test_folds_by_model_never_split_a_pair_of_models(battles_csv):
    battles = read_battles(battles_csv)
    fold_of = folds(battles, n_folds=3, seed=1, by="model")
    pairs = [" ".join(sorted((a, b))) for a, b in zip(battles.model_a, battles.model_b)]
    assert (pd.Series(fold_of).groupby(pairs).nunique() == 1).all()
    assert set(fold_of) == {0, 1, 2}
    unnamed = battles.take(np.arange(10))
    unnamed = type(unnamed)(**{**unnamed.__dict__, "model_a": np.array([""] * 10, dtype=object)})
    with pytest.raises(DataError, match="without both model names"):
        folds(unnamed, n_folds=2, by="model")


def test_folds_never_split_a_prompt(battles_csv):
    battles = read_battles(battles_csv)
    fold_of = folds(battles, n_folds=5, seed=1)
    prompt_folds = pd.Series(fold_of).groupby([p[0] for p in battles.prompt]).nunique()
    assert (prompt_folds == 1).all()
    assert set(fold_of) == set(range(5))
    assert np.array_equal(fold_of, folds(battles, n_folds=5, seed=1))
    assert not np.array_equal(fold_of, folds(battles, n_folds=5, seed=2))
