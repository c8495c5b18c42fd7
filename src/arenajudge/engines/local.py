"""In-process scoring, shared by ``predict``, the HTTP service and the Ray actors."""

from __future__ import annotations

import numpy as np

from arenajudge.data.schema import Battles
from arenajudge.models.contract import PreferenceModel


def predict(model: PreferenceModel, battles: Battles, tie_rate: float | None = None
            ) -> np.ndarray:
    """``model``'s probabilities for ``battles``, shape (n, 3) in ``LABELS`` order.

    ``tie_rate`` (a class-prior shift) is passed only when given, so models whose
    ``predict_proba`` has no such parameter still work without it.
    """
    if tie_rate is None:
        return model.predict_proba(battles)
    return model.predict_proba(battles, tie_rate=tie_rate)
