"""Soft labels from other models: OOF files as teachers, and pseudo-labelled battles.

An OOF file (``arenajudge cv --oof``) holds ``id, fold`` and the three probabilities
of every labelled row; :func:`read_oof`, the one reader of probability files, aligns one
(or a ``predict`` file) to a set of battles by id.
:func:`teacher_targets` mixes a teacher's probabilities into hard labels (knowledge
distillation), :func:`pseudo_label_frame` writes model predictions of unlabelled
battles in the Kaggle layout, ready to train on.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from arenajudge.data.schema import LABELS, Battles
from arenajudge.errors import ConfigError, DataError

PSEUDO_SOURCE = "pseudo-label"
PROBABILITY_COLUMNS = ("id", *LABELS)
"""The columns a probability file needs (``cv --oof`` and ``predict`` files have them);
others, such as ``cv --oof``'s ``fold``, are ignored."""
ROW_SUM_TOLERANCE = 1e-4
"""How far a row's three probabilities may sum from 1 (rounding of a written file); such
rows are renormalised, rows further off are refused."""


def read_oof(path: str | Path, battles: Battles) -> np.ndarray:
    """The probabilities of an OOF or predictions CSV for each of ``battles``, joined on
    ``id``: shape (n, 3) in ``LABELS`` order, each row renormalised to sum to 1.

    The one reader of probability files (``ensemble --oof``, ``cascade --oof-*``,
    ``train --teacher``, ``report --oof``). The file needs columns ``id`` and the three
    ``LABELS``; extra columns and extra rows are ignored. Ids are read as written
    ("NA" is an id, as in the battles). Every row must hold three numbers >= 0 summing
    to 1 within ``ROW_SUM_TOLERANCE``, and each id appear once.

    Raises
    ------
    DataError
        Naming the file, row id and column: unreadable, a column missing, an id twice,
        an empty or non-numeric cell, a negative probability, a row not summing to 1,
        or a battle without a row.
    """
    frame = _read_probability_csv(Path(path))
    values = frame[list(LABELS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    _check_probabilities(values, frame, Path(path))
    position = dict(zip(frame["id"], range(len(frame))))
    absent = [row_id for row_id in battles.id if str(row_id) not in position]
    if absent:
        raise DataError(
            f"has no prediction for {len(absent):,} of the {len(battles):,} battles of "
            f"{battles.path or 'the data'}, e.g. this one; it must cover the same rows "
            "(was it made from this data file?)",
            file=path,
            row_id=str(absent[0]),
            column="id",
        )
    rows = values[np.array([position[str(row_id)] for row_id in battles.id], dtype=int)]
    return rows / rows.sum(axis=1, keepdims=True)


def _read_probability_csv(path: Path) -> pd.DataFrame:
    """The CSV at ``path`` (ids as strings), refusing one without ``PROBABILITY_COLUMNS`` or
    with an id twice."""
    try:
        frame = pd.read_csv(path, dtype={"id": str}, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot be read as a CSV of {', '.join(PROBABILITY_COLUMNS)} ({exc})", file=path
        ) from None
    missing = [c for c in PROBABILITY_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"needs columns {', '.join(PROBABILITY_COLUMNS)}; missing {', '.join(missing)}; "
            f"found {', '.join(map(str, frame.columns))} (write it with `arenajudge cv "
            "--oof` or `arenajudge predict`)",
            file=path,
            column=missing[0],
        )
    duplicated = frame["id"][frame["id"].duplicated()]
    if len(duplicated):
        raise DataError(
            "appears twice; ids must be unique",
            file=path,
            row_id=str(duplicated.iloc[0]),
            column="id",
        )
    return frame


def _check_probabilities(values: np.ndarray, frame: pd.DataFrame, path: Path) -> None:
    """Refuse the first row of ``values`` (n, 3), the numbers of ``frame``'s ``LABELS``
    columns, that is not a probability row, naming its id and column."""
    ids = frame["id"]
    problems = (
        (~np.isfinite(values), "is empty or not a finite number"),
        (values < 0, "is negative; probabilities are >= 0"),
    )
    for bad, what in problems:
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise DataError(
                f"{what} (got {frame[LABELS[column]].iloc[row]!r})",
                file=path,
                row_id=str(ids.iloc[row]),
                column=LABELS[column],
            )
    total = values.sum(axis=1)
    off = np.abs(total - 1) > ROW_SUM_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise DataError(
            f"sum to {total[row]:.6g}, not 1 (within {ROW_SUM_TOLERANCE:g})",
            file=path,
            row_id=str(ids.iloc[row]),
            column=",".join(LABELS),
        )


def teacher_targets(battles: Battles, teacher: np.ndarray, teacher_weight: float) -> Battles:
    """``battles`` with targets (1 - w) * labels + w * teacher (soft labels, rows sum to 1).

    Training on them minimises (1 - w) CE(labels) + w CE(teacher), which differs from
    the KL to the teacher by a constant: the distillation loss. The labels stay as
    ``votes``, which the calibration and the printed scores are measured against."""
    if not 0 <= teacher_weight <= 1:
        raise ConfigError(f"--teacher-weight must be between 0 and 1, got {teacher_weight}")
    if battles.target is None:
        raise DataError("has no labels to mix with the teacher's", file=battles.path)
    mixed = (1 - teacher_weight) * battles.target + teacher_weight * teacher
    return replace(
        battles, target=mixed / mixed.sum(axis=1, keepdims=True), votes=battles.scored_target
    )


def teacher_record(path: str | Path, teacher_weight: float) -> dict[str, object]:
    """What a manifest records of a teacher: its file, sha256 and weight."""
    from arenajudge.hashing import file_sha256

    return {"file": str(path), "sha256": file_sha256(Path(path)), "weight": teacher_weight}


def confident_rows(proba: np.ndarray, min_confidence: float) -> np.ndarray:
    """Positions of the rows whose most probable class has at least ``min_confidence``."""
    return np.flatnonzero(proba.max(axis=1) >= min_confidence)


def check_confident(confidence: np.ndarray, min_confidence: float, path: str | Path) -> None:
    """Refuse a pseudo-label run that keeps no battle of ``path``: an empty output would
    look like success. The error shows where the confidences (n,) of its battles lie
    (the probability of each one's most probable class), so a user can pick a
    ``--min-confidence`` that keeps some."""
    if (confidence >= min_confidence).any():
        return
    levels = (0, 0.5, 0.9, 0.99, 1)
    spread = ", ".join(
        f"{name} {value:.3f}"
        for name, value in zip(
            ("min", "median", "90%", "99%", "max"), np.quantile(confidence, levels)
        )
    )
    raise ConfigError(
        f"no battle reaches --min-confidence {min_confidence:.3g}: the "
        f"confidences (top-class probabilities) of its {len(confidence):,} "
        f"battles are {spread}; lower --min-confidence",
        file=path,
    )


def pseudo_label_frame(battles: Battles, proba: np.ndarray) -> pd.DataFrame:
    """Kaggle-layout rows of ``battles`` with ``proba`` (n, 3) as soft labels and a
    ``source`` column (the battles' own, else ``pseudo-label``)."""
    frame = pd.DataFrame({"id": battles.id})
    for side in ("prompt", "response_a", "response_b"):
        frame[side] = [
            json.dumps(list(turns), ensure_ascii=False) for turns in getattr(battles, side)
        ]
    if battles.has_models:
        frame["model_a"], frame["model_b"] = battles.model_a, battles.model_b
    for k, label in enumerate(LABELS):
        frame[label] = proba[:, k]
    frame["source"] = (
        np.full(len(battles), PSEUDO_SOURCE, dtype=object)
        if battles.source is None
        else battles.source
    )
    return frame
