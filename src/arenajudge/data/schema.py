"""The in-memory battle representation every other module reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

LABELS = ("winner_model_a", "winner_model_b", "winner_tie")
"""Class order of every probability array and output file: A wins, B wins, tie."""

Turns = tuple[str, ...]


def _swap_ab_columns(target: np.ndarray) -> np.ndarray:
    return target[:, [1, 0, 2]]


@dataclass(frozen=True, eq=False)
class ExternalEmbeddings:
    """Embeddings of each battle's prompt, response A and response B from an outside
    encoder (``arenajudge embed``), used by the CPU model as extra features.

    Attributes
    ----------
    vectors : ndarray of float32, shape (n, 3, dim)
        Prompt, response A, response B.
    encoder : str
        The model directory that made them; a model trained on one encoder's vectors
        refuses another's.
    path : str
        The EMB.parquet they came from, for error messages.
    """

    vectors: np.ndarray
    encoder: str
    path: str = ""

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[2])

    def take(self, indices: np.ndarray) -> ExternalEmbeddings:
        return replace(self, vectors=self.vectors[indices])

    def swap(self) -> ExternalEmbeddings:
        return replace(self, vectors=self.vectors[:, [0, 2, 1]])


@dataclass(frozen=True, eq=False)
class Battles:
    """A validated set of pairwise battles.

    Attributes
    ----------
    id : ndarray of str, shape (n,)
        Unique row ids, as written in the input.
    prompt, response_a, response_b : list of tuple of str, length n
        The turns of each side; ``()`` is a side with no turns, ``""`` an empty turn.
    model_a, model_b : ndarray of str, shape (n,), or None
        Model names where the input has them (``""`` when unknown for a row).
    target : ndarray of float, shape (n, 3), or None
        Label probabilities in ``LABELS`` order: one-hot for hard labels, any
        non-negative rows summing to 1 for soft labels. ``None`` for unlabelled input.
    source : ndarray of str, shape (n,), or None
        Where each row came from, when the input says.
    path : str or None
        The file the battles were read from, for error messages.
    repaired_surrogates : int
        Lone surrogate escapes replaced by U+FFFD while reading.
    embeddings : ExternalEmbeddings or None
        Outside embeddings attached with ``--embeddings EMB.parquet``.
    both_bad : ndarray of bool, shape (n,), or None
        Ties voted "both bad" (arena ``winner`` = ``tie (bothbad)`` / ``both_bad``),
        where the input has a ``winner`` column.
    votes : ndarray of float, shape (n, 3), or None
        The labels as read, kept when ``target`` has become training targets of another
        kind (a teacher's probabilities mixed in): calibration and every printed score
        are measured against the votes, not against what the model was taught.
    layout : str or None
        The file layout the battles were read in (``kaggle``, ``arena``, ``pairs``,
        ``alpaca``, ``votes``: see :mod:`arenajudge.data.readers`); None when not read
        from a file.
    """

    id: np.ndarray
    prompt: list[Turns]
    response_a: list[Turns]
    response_b: list[Turns]
    model_a: np.ndarray | None = None
    model_b: np.ndarray | None = None
    target: np.ndarray | None = None
    source: np.ndarray | None = None
    path: str | None = None
    repaired_surrogates: int = field(default=0)
    embeddings: ExternalEmbeddings | None = None
    both_bad: np.ndarray | None = None
    votes: np.ndarray | None = None
    layout: str | None = None

    def __len__(self) -> int:
        return len(self.id)

    @property
    def labelled(self) -> bool:
        return self.target is not None

    @property
    def label(self) -> np.ndarray:
        """Hard labels, shape (n,): 0 = A wins, 1 = B wins, 2 = tie (argmax of soft labels)."""
        if self.target is None:
            raise ValueError("these battles have no labels")
        return self.target.argmax(axis=1)

    @property
    def has_models(self) -> bool:
        return self.model_a is not None and self.model_b is not None

    def take(self, indices: Sequence[int] | np.ndarray) -> Battles:
        """The battles at ``indices`` (integer positions or a boolean mask), in that order."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)

        def pick(values: Any) -> Any:
            if values is None:
                return None
            if isinstance(values, np.ndarray):
                return values[idx]
            return [values[i] for i in idx]

        return replace(
            self,
            id=self.id[idx],
            prompt=pick(self.prompt),
            response_a=pick(self.response_a),
            response_b=pick(self.response_b),
            model_a=pick(self.model_a),
            model_b=pick(self.model_b),
            target=pick(self.target),
            source=pick(self.source),
            embeddings=None if self.embeddings is None else self.embeddings.take(idx),
            both_bad=pick(self.both_bad),
            votes=pick(self.votes),
        )

    def swap(self) -> Battles:
        """The same battles with A and B exchanged (labels exchanged too)."""
        return replace(
            self,
            response_a=self.response_b,
            response_b=self.response_a,
            model_a=self.model_b,
            model_b=self.model_a,
            target=None if self.target is None else _swap_ab_columns(self.target),
            votes=None if self.votes is None else _swap_ab_columns(self.votes),
            embeddings=None if self.embeddings is None else self.embeddings.swap(),
        )

    @property
    def scored_target(self) -> np.ndarray | None:
        """What predictions are scored and calibrated against: the votes where a
        teacher changed ``target``, else ``target``."""
        return self.target if self.votes is None else self.votes

    def without_labels(self) -> Battles:
        return replace(self, target=None, votes=None)

    def without_texts(self) -> Battles:
        """These battles with empty turns and no embeddings: their ids, labels, models
        and sources only, a few bytes per battle."""
        no_turns: list[Turns] = [()] * len(self)
        return replace(
            self, prompt=no_turns, response_a=no_turns, response_b=no_turns, embeddings=None
        )


def swap_proba(proba: np.ndarray) -> np.ndarray:
    """Exchange the A-wins and B-wins columns of an (n, 3) probability array."""
    return _swap_ab_columns(np.asarray(proba))


def join_turns(turns: Turns) -> str:
    """One text for a side: its turns separated by blank lines."""
    return "\n\n".join(turns)
