"""Soft labels from other models: OOF files as teachers, and pseudo-labelled battles.

An OOF file (``arenajudge cv --oof``) holds ``id, fold`` and the three probabilities
of every labelled row; :func:`read_oof` aligns one to a set of battles by id.
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
_TOLERANCE = 1e-4


def read_oof(path: str | Path, battles: Battles) -> np.ndarray:
    """The probabilities of an OOF/predictions CSV for each of ``battles``, by id:
    shape (n, 3) in ``LABELS`` order. Extra rows in the file are ignored."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype={"id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot be read as a CSV of id + {', '.join(LABELS)} ({exc})", file=path
        ) from None
    missing = [c for c in ("id", *LABELS) if c not in frame.columns]
    if missing:
        raise DataError(
            f"needs columns id, {', '.join(LABELS)}; missing "
            f"{', '.join(missing)} (write it with `arenajudge cv --oof`)",
            file=path,
            column=missing[0],
        )
    duplicated = frame["id"][frame["id"].duplicated()]
    if len(duplicated):
        raise DataError("appears twice", file=path, row_id=str(duplicated.iloc[0]), column="id")
    values = frame[list(LABELS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = (
        np.isnan(values).any(axis=1)
        | (values < 0).any(axis=1)
        | (np.abs(values.sum(axis=1) - 1) > _TOLERANCE)
    )
    if bad.any():
        raise DataError(
            "holds probabilities that are not non-negative and summing to 1",
            file=path,
            row_id=str(frame["id"].iloc[int(np.argmax(bad))]),
            column=",".join(LABELS),
        )
    position = dict(zip(frame["id"], range(len(frame))))
    absent = [row_id for row_id in battles.id if str(row_id) not in position]
    if absent:
        raise DataError(
            f"has no prediction for {len(absent)} row(s) of "
            f"{battles.path or 'the data'}, e.g. this one; it must cover the "
            "same rows",
            file=path,
            row_id=str(absent[0]),
            column="id",
        )
    rows = np.array([position[str(row_id)] for row_id in battles.id])
    return values[rows] / values[rows].sum(axis=1, keepdims=True)


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
