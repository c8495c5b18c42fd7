"""One leaderboard per category (``--by COLUMN``), and where their ranks differ."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from arenajudge.data.schema import Battles
from arenajudge.data.tables import read_table
from arenajudge.errors import DataError
from arenajudge.leaderboard.board import Leaderboard
from arenajudge.leaderboard.bradley_terry import model_pairs


def category_values(battles: Battles, column: str, format: str | None = None) -> np.ndarray:
    """The value of ``column`` for each battle, as text, shape (n,).

    ``source`` comes from the battles when they carry it; any other column is read
    from the file the battles came from (the reader keeps only the columns it knows),
    whose rows are the battles in order.
    """
    if column == "source" and battles.source is not None:
        return np.asarray(battles.source, dtype=str)
    if battles.path is None:
        raise DataError(f"--by {column}: these battles come from no file to read it from")
    frame = read_table(battles.path, format)
    if column not in frame.columns:
        raise DataError(
            f"has no column {column!r} for --by; found: {', '.join(map(str, frame.columns))}",
            file=battles.path,
        )
    if len(frame) != len(battles):
        raise DataError(
            f"has {len(frame)} rows but {len(battles)} battles were read", file=battles.path
        )
    return np.array(
        ["" if value is None or value != value else str(value).strip() for value in frame[column]],
        dtype=str,
    )


@dataclass(frozen=True)
class CategoryBoards:
    """Boards of the categories with enough battles.

    Attributes
    ----------
    column : str
        The column the battles were split by.
    boards : dict
        Category value -> its :class:`Leaderboard`, largest category first.
    too_small : dict
        Category value -> battles, for those under ``min_battles`` (not rated).
    """

    column: str
    boards: dict[str, Leaderboard]
    too_small: dict[str, int]

    def rank_changes(self, overall: Leaderboard) -> dict[str, list[dict[str, Any]]]:
        """Per category, the models whose rank there differs from their rank among the
        same models on the overall board: ``{model, overall_rank, rank}``."""
        order = list(overall.table["model"])
        changes = {}
        for value, board in self.boards.items():
            models = list(board.table["model"])
            overall_order = sorted(models, key=order.index)
            changes[value] = [
                {"model": model, "overall_rank": overall_order.index(model) + 1, "rank": rank}
                for rank, model in enumerate(models, start=1)
                if overall_order[rank - 1] != model
            ]
        return changes

    def summary(self, overall: Leaderboard) -> dict[str, Any]:
        changes = self.rank_changes(overall)
        return {
            "column": self.column,
            "boards": {
                value: {**board.summary(), "rank_changes": changes[value]}
                for value, board in self.boards.items()
            },
            "too_small": self.too_small,
        }


def fit_category_boards(
    battles: Battles,
    values: np.ndarray,
    column: str,
    min_battles: int,
    fit: Callable[[np.ndarray], Leaderboard],
) -> CategoryBoards:
    """``fit(mask)`` the battles of each category of ``values`` (n,) that has at least
    ``min_battles`` battles between two named models (``mask`` boolean, shape (n,)).

    Raises
    ------
    DataError
        A category's comparison graph is disconnected (its message names the category).
    """
    keep = model_pairs(battles)[0]
    kinds, counts = np.unique(values[keep], return_counts=True)
    boards, too_small = {}, {}
    for value, count in sorted(
        zip(kinds.tolist(), counts.tolist()), key=lambda item: (-item[1], item[0])
    ):
        if count < min_battles:
            too_small[str(value)] = int(count)
            continue
        try:
            boards[str(value)] = fit(values == value)
        except DataError as error:
            error.message = (
                f"--by {column}: category {value!r} ({count:,} battles): "
                f"{error.message}; or raise --min-battles to leave it out"
            )
            raise
    return CategoryBoards(column, boards, too_small)
