"""Where battles come from: per-source weights for training on mixed sets."""

from __future__ import annotations

import numpy as np


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
