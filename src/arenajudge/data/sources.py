"""Where battles come from: a sources file attached by id, and per-source weights for
training on mixed sets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from arenajudge.data.schema import Battles
from arenajudge.errors import DataError


def source_weights(
    source: np.ndarray | None, balance: float
) -> tuple[dict[str, float], np.ndarray] | None:
    """Weights, mean 1 over the battles, in which each source weighs (its battles) ** -balance.

    ``balance`` 0 weighs every battle alike, 1 gives every source the same total weight.
    Returns the weight of one battle of each source and the weight of every battle; None
    when the battles name no source.
    """
    if source is None:
        return None
    names, which, counts = np.unique(source.astype(str), return_inverse=True, return_counts=True)
    per_source = counts.astype(np.float64) ** -balance
    per_source /= per_source[which].mean()
    return dict(zip(names.tolist(), per_source.tolist())), per_source[which]


def attach_sources(battles: Battles, sources_path: str | Path) -> Battles:
    """Battles with ``source`` taken from a CSV of ``id,source`` (e.g. human_dev_sources.csv)."""
    path = Path(sources_path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot be read as a CSV of id,source ({exc})", file=path) from None
    if not {"id", "source"} <= set(table.columns):
        raise DataError(f"needs columns id and source; found {', '.join(table.columns)}", file=path)
    lookup = dict(zip(table["id"], table["source"]))
    missing = [row_id for row_id in battles.id if row_id not in lookup]
    if missing:
        raise DataError(
            f"has no source for {len(missing)} row(s) of the data, e.g. this one",
            file=path,
            row_id=str(missing[0]),
            column="id",
        )
    return replace(battles, source=np.array([lookup[i] for i in battles.id], dtype=object))
