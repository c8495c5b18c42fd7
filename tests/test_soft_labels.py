"""The one reader of probability files (OOF / predictions CSVs): its rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arenajudge.data import LABELS, read_battles
from arenajudge.data.soft_labels import ROW_SUM_TOLERANCE, read_oof
from arenajudge.errors import DataError
from conftest import synthetic_frame


@pytest.fixture
def battles(tmp_path: Path):
    path = tmp_path / "battles.csv"
    synthetic_frame(n=30).to_csv(path, index=False)
    return read_battles(path)


def probability_frame(battles, seed: int = 0) -> pd.DataFrame:
    proba = np.random.default_rng(seed).dirichlet([2, 2, 1], len(battles))
    frame = pd.DataFrame(proba, columns=list(LABELS))
    frame.insert(0, "fold", np.arange(len(battles)) % 5)
    frame.insert(0, "id", battles.id)
    return frame


def write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_rows_are_joined_on_id_whatever_their_order(battles, tmp_path):
    frame = probability_frame(battles)
    path = write(frame.iloc[::-1], tmp_path / "oof.csv")
    np.testing.assert_allclose(read_oof(path, battles), frame[list(LABELS)].to_numpy())


def test_fold_and_other_columns_are_optional(battles, tmp_path):
    """An OOF file and a predictions file (no ``fold``) of the same numbers read alike."""
    frame = probability_frame(battles)
    with_fold = read_oof(write(frame, tmp_path / "oof.csv"), battles)
    without = read_oof(write(frame.drop(columns="fold"), tmp_path / "pred.csv"), battles)
    np.testing.assert_array_equal(with_fold, without)


def test_rows_off_by_rounding_are_renormalised(battles, tmp_path):
    frame = probability_frame(battles)
    frame[list(LABELS)] = frame[list(LABELS)].round(5)  # rows now sum to 1 +- 1.5e-5
    proba = read_oof(write(frame, tmp_path / "rounded.csv"), battles)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=0, atol=1e-12)


def test_ids_are_read_as_written(battles, tmp_path):
    """ "NA" is an id like any other, as in the battles file."""
    frame = synthetic_frame(n=30)
    frame["id"] = ["NA", *frame["id"].astype(str)[1:]]
    frame.to_csv(tmp_path / "battles.csv", index=False)
    named = read_battles(tmp_path / "battles.csv")
    path = write(probability_frame(named), tmp_path / "oof.csv")
    assert read_oof(path, named).shape == (30, 3)


@pytest.mark.parametrize(
    ("change", "column", "message"),
    [
        (lambda f: f.drop(columns="winner_tie"), "winner_tie", "needs columns id, winner_model_a"),
        (lambda f: f.assign(id=f.id.where(f.index != 4, f.id[3])), "id", "appears twice"),
        (
            lambda f: f.assign(winner_tie=f.winner_tie.astype(object).where(f.index != 3, "")),
            "winner_tie",
            "is empty or not a finite number",
        ),
        (
            lambda f: f.assign(winner_model_b=f.winner_model_b.where(f.index != 3, -0.1)),
            "winner_model_b",
            "is negative",
        ),
        (
            lambda f: f.assign(winner_tie=f.winner_tie + (f.index == 3) * 10 * ROW_SUM_TOLERANCE),
            ",".join(LABELS),
            "sum to 1.001, not 1",
        ),
        (lambda f: f.drop(index=3), "id", "has no prediction for 1 of the 30 battles"),
    ],
    ids=["column", "duplicate", "empty", "negative", "sum", "absent"],
)
def test_a_bad_file_is_refused_naming_file_row_and_column(
    battles, tmp_path, change, column, message
):
    path = write(change(probability_frame(battles)), tmp_path / "bad.csv")
    with pytest.raises(DataError, match=message) as error:
        read_oof(path, battles)
    assert error.value.file == str(path) and error.value.column == column
    if "needs columns" not in message:
        assert error.value.row_id == str(battles.id[3])
