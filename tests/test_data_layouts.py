"""Every layout in every format: native lists and structs, text that looks like JSON,
repeated columns and hostile JSON all give battles or one located error."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from arenajudge.data import read_battles
from arenajudge.errors import DataError

pa = pytest.importorskip("pyarrow", reason="parquet files need pyarrow")
pq = pytest.importorskip("pyarrow.parquet", reason="parquet files need pyarrow")


def write_parquet(tmp_path: Path, rows: list[dict], name: str = "data.parquet") -> Path:
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def conversation(*texts: str) -> list[dict]:
    return [
        {"role": "user" if k % 2 == 0 else "assistant", "content": text}
        for k, text in enumerate(texts)
    ]


def test_parquet_kaggle_layout_with_native_lists_of_turns(tmp_path):
    rows = [
        {
            "id": "r1",
            "prompt": ["hi", "and then?"],
            "response_a": ["a1", "a2"],
            "response_b": ["b1", None],
            "winner_model_a": 1,
            "winner_model_b": 0,
            "winner_tie": 0,
        },
        {
            "id": "r2",
            "prompt": ["q"],
            "response_a": [],
            "response_b": ["x", "y", "z"],
            "winner_model_a": 0,
            "winner_model_b": 0,
            "winner_tie": 1,
        },
    ]
    battles = read_battles(write_parquet(tmp_path, rows))
    assert battles.prompt == [("hi", "and then?"), ("q",)]
    assert battles.response_a == [("a1", "a2"), ()]
    assert battles.response_b == [("b1", ""), ("x", "y", "z")]
    assert battles.label.tolist() == [0, 2]


def test_parquet_arena_layout_with_struct_messages(tmp_path):
    rows = [
        {
            "question_id": "q1",
            "conversation_a": conversation("hello", "A1", "more", "A2"),
            "conversation_b": conversation("hello", "B1", "more", "B2"),
            "winner": "model_a",
        },
        {
            "question_id": "q2",
            "conversation_a": conversation("x", "A"),
            "conversation_b": conversation("x", "B"),
            "winner": "tie (bothbad)",
        },
    ]
    battles = read_battles(write_parquet(tmp_path, rows))
    assert battles.prompt[0] == ("hello", "more")
    assert battles.response_a[0] == ("A1", "A2") and battles.response_b[0] == ("B1", "B2")
    assert battles.label.tolist() == [0, 2]


def test_parquet_arena_layout_with_multimodal_content_lists(tmp_path):
    def parts(text):
        return [{"type": "text", "text": text}, {"type": "image_url", "text": None}]

    rows = [
        {
            "id": "1",
            "winner": "model_b",
            "conversation_a": [
                {"role": "user", "content": parts("look")},
                {"role": "assistant", "content": parts("a cat")},
            ],
            "conversation_b": [
                {"role": "user", "content": parts("look")},
                {"role": "assistant", "content": parts("a dog")},
            ],
        }
    ]
    battles = read_battles(write_parquet(tmp_path, rows))
    assert battles.prompt == [("look\n",)] and battles.response_b == [("a dog\n",)]


@pytest.mark.parametrize("as_messages", [False, True])
def test_parquet_pairs_layout_with_lists_and_message_lists(tmp_path, as_messages):
    if as_messages:
        rows = [
            {
                "chosen": conversation(f"p{i}", f"good {i}", "again", f"good {i} too"),
                "rejected": conversation(f"p{i}", f"bad {i}", "again", f"bad {i} too"),
            }
            for i in range(20)
        ]
    else:
        rows = [
            {
                "prompt": [f"p{i}", "again"],
                "chosen": [f"good {i}", f"good {i} too"],
                "rejected": [f"bad {i}", f"bad {i} too"],
            }
            for i in range(20)
        ]
    battles = read_battles(write_parquet(tmp_path, rows))
    assert battles.prompt[3] == ("p3", "again")
    winners = [
        a if label == 0 else b
        for a, b, label in zip(battles.response_a, battles.response_b, battles.label)
    ]
    assert winners[3] == ("good 3", "good 3 too")
    assert len(set(battles.label.tolist())) == 2


def test_parquet_bad_native_cell_names_file_row_and_column(tmp_path):
    rows = [
        {"id": "r1", "prompt": ["p"], "response_a": [1, 2], "response_b": [3]},
        {"id": "r2", "prompt": ["p"], "response_a": [4, 5], "response_b": [6]},
    ]
    path = write_parquet(tmp_path, rows)
    with pytest.raises(DataError) as info:
        read_battles(path)
    message = str(info.value)
    assert message.startswith(f"{path}: row id r1: column response_a: ")
    assert "not a string" in message and "\n" not in message


@pytest.mark.parametrize(
    "text",
    ["[1, 2, 3]", '["Ann", "Bob"]', "[]", '{"a": 1}', '[{"name": "Ann"}]', "[" * 5000, "1" * 5000],
)
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_pair_text_that_looks_like_json_is_one_turn(tmp_path, text, suffix):
    rows = [{"prompt": "Answer in JSON", "chosen": text, "rejected": "plain"}]
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    battles = read_battles(path)
    assert battles.prompt == [("Answer in JSON",)]
    assert {battles.response_a[0], battles.response_b[0]} == {(text,), ("plain",)}


def test_pair_text_holding_a_json_message_list_is_the_messages(tmp_path):
    chosen = json.dumps(conversation("hello", "hi there"))
    rejected = json.dumps(conversation("hello", "go away"))
    path = tmp_path / "pairs.csv"
    pd.DataFrame([{"chosen": chosen, "rejected": rejected}]).to_csv(path, index=False)
    battles = read_battles(path)
    assert battles.prompt == [("hello",)]
    assert {battles.response_a[0], battles.response_b[0]} == {("hi there",), ("go away",)}


def test_repeated_columns_are_refused_in_every_format(tmp_path):
    header = "id,prompt,response_a,response_b,response_a\n"
    csv = tmp_path / "data.csv"
    csv.write_text(header + '1,"[""p""]","[""a""]","[""b""]","[""c""]"\n', encoding="utf-8")
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text(
        '{"id": "1", "prompt": ["p"], "response_a": ["a"], "response_b": ["b"],'
        ' "response_a": ["c"]}\n',
        encoding="utf-8",
    )
    as_json = tmp_path / "data.json"
    as_json.write_text("[" + jsonl.read_text().strip() + "]", encoding="utf-8")
    parquet = tmp_path / "data.parquet"
    columns = [pa.array(["1"]), *(pa.array([[t]]) for t in "pabc")]
    pq.write_table(pa.Table.from_arrays(columns, names=header.strip().split(",")), parquet)
    for path in (csv, jsonl, as_json, parquet):
        with pytest.raises(DataError, match="response_a") as info:
            read_battles(path)
        assert str(path) in str(info.value) and "twice" in str(info.value)
    unnamed = tmp_path / "unnamed.csv"  # trailing commas: blank names, not repeated ones
    unnamed.write_text(
        'id,prompt,response_a,response_b,,\n1,"[""p""]","[""a""]","[""b""]",,\n', encoding="utf-8"
    )
    assert len(read_battles(unnamed)) == 1


HOSTILE = {"deep": "[" * 100_000 + "]" * 100_000, "huge_int": "[" + "9" * 5000 + "]"}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_json_in_a_cell_is_a_located_error(tmp_path, case):
    path = tmp_path / "data.csv"
    pd.DataFrame(
        [{"id": "7", "prompt": '["p"]', "response_a": HOSTILE[case], "response_b": '["b"]'}]
    ).to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        read_battles(path)
    assert str(info.value).startswith(f"{path}: row id 7: column response_a: is JSON")


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_hostile_json_lines_and_files_are_located_errors(tmp_path, case, suffix):
    path = tmp_path / f"data{suffix}"
    record = '{"id": "1", "prompt": ["p"], "response_a": ["a"], "response_b": ["b"]}'
    body = f"{record}\n{HOSTILE[case]}\n" if suffix == ".jsonl" else f"[{record}, {HOSTILE[case]}]"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_battles(path)
    where = f"{path}: line 2 is JSON" if suffix == ".jsonl" else f"{path}: is JSON"
    assert str(info.value).startswith(where) and "\n" not in str(info.value)


def test_label_columns_blank_in_every_row_mean_unlabelled(tmp_path):
    header = "id,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"
    row = '"[""p""]","[""a""]","[""b""]"'
    blank = tmp_path / "test.csv"
    blank.write_text(header + f"1,{row},,,\n2,{row}, ,,\n", encoding="utf-8")
    assert not read_battles(blank).labelled
    winner = tmp_path / "winner.jsonl"
    winner.write_text(
        '{"id": "1", "prompt": ["p"], "response_a": ["a"], "response_b": ["b"], "winner": null}\n',
        encoding="utf-8",
    )
    assert not read_battles(winner).labelled
    partly = tmp_path / "partly.csv"
    partly.write_text(header + f"1,{row},1,0,0\n2,{row},,,\n", encoding="utf-8")
    with pytest.raises(DataError, match="row id 2: column winner_model_a"):
        read_battles(partly)


def test_unknown_extension_names_the_input_format_flag(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="pass --input-format with one of csv"):
        read_battles(path)
