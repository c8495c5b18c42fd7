"""What a transformer network is fed and how its outputs become battle probabilities.

:class:`Samples` holds each packed battle once, or in both A/B orders (the second
order's targets swapped), with targets and weights; :meth:`Samples.battle_proba`
averages p(A, B) with the column-swapped p(B, A), so that a prediction is symmetric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arenajudge.data.schema import swap_proba
from arenajudge.models.transformer.packing import PackedBattle, Packer, Sequence


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (n, 3) -> probabilities (n, 3), in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    return proba / proba.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Samples:
    """Model inputs with their targets: each battle once, or in both A/B orders.

    Attributes
    ----------
    sequences : list, length n_samples
        Per sample, S sequences (2 for siamese, 1 otherwise) of (token ids, segment ids).
    target : ndarray, shape (n_samples, 3)
        Label probabilities (swapped for swapped samples); zeros when unlabelled.
    weight : ndarray, shape (n_samples,)
    both_orders : bool
        Samples ``n..2n-1`` are samples ``0..n-1`` with A and B exchanged.
    """

    sequences: list[list[Sequence]]
    target: np.ndarray
    weight: np.ndarray
    both_orders: bool

    @classmethod
    def build(
        cls,
        packer: Packer,
        packed: list[PackedBattle],
        target: np.ndarray | None,
        weight: np.ndarray | None,
        both_orders: bool,
    ) -> Samples:
        target = np.zeros((len(packed), 3)) if target is None else np.asarray(target)
        weight = np.ones(len(packed)) if weight is None else np.asarray(weight)
        sequences = [packer.sequences(battle) for battle in packed]
        if both_orders:
            sequences += [packer.sequences(battle, swapped=True) for battle in packed]
            target = np.vstack([target, swap_proba(target)])
            weight = np.concatenate([weight, weight])
        return cls(sequences, target.astype(np.float32), weight.astype(np.float32), both_orders)

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def n_battles(self) -> int:
        return len(self) // 2 if self.both_orders else len(self)

    def battle_proba(self, logits: np.ndarray) -> np.ndarray:
        """Per-battle probabilities (n_battles, 3) from per-sample logits (n_samples, 3):
        with both orders, the mean of p(A, B) and the column-swapped p(B, A)."""
        proba = softmax(logits)
        if not self.both_orders:
            return proba
        n = self.n_battles
        return (proba[:n] + swap_proba(proba[n:])) / 2
