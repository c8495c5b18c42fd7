"""Readers, validation and folds: dirty-but-valid files load, malformed ones fail clearly."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arenajudge.data import LABELS, folds, read_battles, validate
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
    path = write(tmp_path, HEADER
                 + '1,"[""hi""]","[null, ""a""]","[]",1,0,0\n'
                 + '2,"[""hi""]","[""\\ud83d broken""]","[""ok""]",0.0,1.0,0.0\n'
                 + '3,"[""q""]","[""x""]","[""y""]",0.2,0.3,0.5\n')
    battles = read_battles(path)
    assert battles.response_a[0] == ("", "a")
    assert battles.response_b[0] == ()
    assert battles.response_a[1] == ("\ufffd broken",)
    assert battles.repaired_surrogates == 1
    assert battles.label.tolist() == [0, 1, 2]
    assert battles.target[2].tolist() == [0.2, 0.3, 0.5]


def test_extra_columns_and_unlabelled_files_are_valid(tmp_path):
    path = write(tmp_path, 'id,prompt,response_a,response_b,notes\n1,"[""p""]","[""a""]",'
                 '"[""b""]",whatever\n')
    battles = read_battles(path)
    assert not battles.labelled and len(battles) == 1


def test_gzip_jsonl_and_parquet_match_csv(tmp_path, battles_csv):
    frame = synthetic_frame()
    records = frame.to_dict(orient="records")
    jsonl = tmp_path / "data.jsonl.gz"
    with gzip.open(jsonl, "wt", encoding="utf-8") as handle:
        for record in records:  # lists as native JSON, not strings
            record = {**record, **{c: json.loads(record[c]) for c in
                                   ("prompt", "response_a", "response_b")}}
            handle.write(json.dumps(record) + "\n")
    parquet = tmp_path / "data.parquet"
    frame.assign(**{c: frame[c].map(json.loads) for c in ("prompt", "response_a", "response_b")}
                 ).to_parquet(parquet)
    reference = read_battles(battles_csv)
    for path in (jsonl, parquet):
        battles = read_battles(path)
        assert battles.id.tolist() == reference.id.tolist()
        assert battles.response_b == reference.response_b
        assert np.array_equal(battles.target, reference.target)


def test_arena_conversation_layout(tmp_path):
    conv = lambda answer: [{"role": "user", "content": "hello"},  # noqa: E731
                           {"role": "assistant", "content": answer}]
    rows = [{"question_id": "q1", "model_a": "x", "model_b": "y", "conversation_a": conv("A"),
             "conversation_b": conv("B"), "winner": "tie (bothbad)"},
            {"question_id": "q2", "model_a": "x", "model_b": "y", "conversation_a": conv("A"),
             "conversation_b": conv("B"), "winner": "model_b"}]
    path = tmp_path / "arena.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    battles = read_battles(path)
    assert battles.id.tolist() == ["q1", "q2"]
    assert battles.prompt[0] == ("hello",) and battles.response_b[0] == ("B",)
    assert battles.label.tolist() == [2, 1]


def test_chosen_rejected_pairs_are_balanced_and_seeded(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
            for i in range(400)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    battles = read_battles(path, seed=3)
    share_a = (battles.label == 0).mean()
    assert 0.4 < share_a < 0.6
    winners = [a if label == 0 else b for a, b, label in
               zip(battles.response_a, battles.response_b, battles.label)]
    assert all(w[0].startswith("good") for w in winners)
    assert np.array_equal(read_battles(path, seed=3).label, battles.label)


def test_column_mapping(tmp_path):
    path = write(tmp_path, 'qid,question,answer1,answer2\n7,"[""p""]","[""a""]","[""b""]"\n')
    battles = read_battles(path, columns={"id": "qid", "prompt": "question",
                                          "response_a": "answer1", "response_b": "answer2"})
    assert battles.response_b == [("b",)]


MALFORMED = {
    "broken_json": (HEADER + '1,"[""p""]","[""a""","[""b""]",1,0,0\n', "response_a",
                    "not valid JSON"),
    "not_a_list": (HEADER + '1,"[""p""]","{""a"": 1}","[""b""]",1,0,0\n', "response_a",
                   "not a list"),
    "number_turn": (HEADER + '1,"[""p""]","[""a""]","[1]",1,0,0\n', "response_b", "not a string"),
    "empty_cell": (HEADER + '1,,"[""a""]","[""b""]",1,0,0\n', "prompt", "is empty"),
    "duplicate_id": (HEADER + '1,"[""p""]","[""a""]","[""b""]",1,0,0\n'
                     '1,"[""q""]","[""a""]","[""b""]",0,1,0\n', "row id 1", "duplicate"),
    "missing_id": (HEADER + ',"[""p""]","[""a""]","[""b""]",1,0,0\n', "column id", "empty"),
    "two_winners": (HEADER + '1,"[""p""]","[""a""]","[""b""]",1,1,0\n', "row id 1",
                    "not one winner"),
    "negative_label": (HEADER + '1,"[""p""]","[""a""]","[""b""]",1.5,-0.5,0\n', "row id 1",
                       "not one winner"),
    "text_label": (HEADER + '1,"[""p""]","[""a""]","[""b""]",yes,0,0\n', "row id 1",
                   "not one winner"),
    "missing_label_column": ('id,prompt,response_a,response_b,winner_model_a,winner_model_b\n'
                             '1,"[""p""]","[""a""]","[""b""]",1,0\n', "winner_tie", "missing"),
    "missing_response_column": ('id,prompt,response_a\n1,"[""p""]","[""a""]"\n', "response_b",
                                "missing"),
    "no_battle_columns": ("x,y\n1,2\n", "data.csv", "no battle columns"),
    "header_only": (HEADER, "data.csv", "no rows"),
    "empty_file": ("", "data.csv", "is empty"),
    "bad_winner": ('id,prompt,response_a,response_b,winner\n1,"[""p""]","[""a""]","[""b""]",'
                   'model_c\n', "winner", "expected one of"),
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
    path = write(tmp_path, HEADER + '1,"[""p""]","[""a""","[""b""]",1,0,0\n'
                 + '1,"[""p""]","[""a""]","[""b""]",1,1,0\n')
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
    unnamed = type(unnamed)(**{**unnamed.__dict__, "model_a": np.array([""] * 10,
                                                                        dtype=object)})
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
