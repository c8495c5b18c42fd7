"""Cross-validation and evaluation of preference models, overall and per source."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from arenajudge.data.folds import folds
from arenajudge.data.schema import LABELS, Battles
from arenajudge.errors import DataError
from arenajudge.metrics import scores
from arenajudge.models.contract import PreferenceModel, check_labelled


@dataclass
class CVResult:
    """Out-of-fold predictions and their scores."""

    oof: np.ndarray
    fold: np.ndarray
    folds: list[dict[str, Any]] = field(default_factory=list)
    overall: dict[str, float] = field(default_factory=dict)
    by_source: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"overall": self.overall, "folds": self.folds, "by_source": self.by_source}


def scores_by_source(battles: Battles, proba: np.ndarray) -> dict[str, dict[str, float]]:
    """Scores of each source's rows (empty when the battles have no source)."""
    if battles.source is None:
        return {}
    return {str(name): scores(battles.target[battles.source == name],
                              proba[battles.source == name])
            for name in np.unique(battles.source)}


def cross_validate(make_model: Callable[[], PreferenceModel], battles: Battles, *,
                   n_folds: int = 5, seed: int = 0, progress: bool = True) -> CVResult:
    """Prompt-grouped K-fold CV: fit a fresh model per fold, predict its held-out rows.

    Returns out-of-fold probabilities, shape (n, 3), with per-fold, overall and
    per-source log loss, accuracy, ECE and the class-prior log loss of the same rows.
    """
    check_labelled(battles)
    fold_of = folds(battles, n_folds=n_folds, seed=seed)
    oof = np.zeros((len(battles), len(LABELS)))
    result = CVResult(oof=oof, fold=fold_of)
    for fold in tqdm(range(n_folds), desc="cv folds", disable=not progress, unit="fold"):
        held = fold_of == fold
        model = make_model().fit(battles.take(~held))
        oof[held] = model.predict_proba(battles.take(held).without_labels())
        result.folds.append({"fold": fold, **scores(battles.target[held], oof[held])})
    result.overall = scores(battles.target, oof)
    result.by_source = scores_by_source(battles, oof)
    return result


def oof_frame(battles: Battles, result: CVResult) -> pd.DataFrame:
    """OOF.csv rows: ``id, fold, winner_model_a, winner_model_b, winner_tie``."""
    frame = pd.DataFrame(result.oof, columns=list(LABELS))
    frame.insert(0, "fold", result.fold)
    frame.insert(0, "id", battles.id)
    return frame


def attach_sources(battles: Battles, sources_path: str | Path) -> Battles:
    """Battles with ``source`` taken from a CSV of ``id,source`` (e.g. human_dev_sources.csv)."""
    from dataclasses import replace

    path = Path(sources_path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot be read as a CSV of id,source ({exc})", file=path) from None
    if not {"id", "source"} <= set(table.columns):
        raise DataError(f"needs columns id and source; found {', '.join(table.columns)}",
                        file=path)
    lookup = dict(zip(table["id"], table["source"]))
    missing = [row_id for row_id in battles.id if row_id not in lookup]
    if missing:
        raise DataError(f"has no source for {len(missing)} row(s) of the data, e.g. this one",
                        file=path, row_id=str(missing[0]), column="id")
    return replace(battles, source=np.array([lookup[i] for i in battles.id], dtype=object))
