"""The one contract every preference model follows.

Every backend subclasses :class:`PreferenceModel`: ``fit`` returns ``self``,
``predict_proba`` returns an (n, 3) array in ``LABELS`` order whose rows sum to 1,
``save`` writes a MODEL_DIR and ``load`` reads it back after checking its manifest
(:mod:`arenajudge.models.manifest`). :func:`arenajudge.models.registry.load_model` finds
the class of a saved model from its manifest's ``backend``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from arenajudge.config import check_config
from arenajudge.data.schema import Battles
from arenajudge.errors import ConfigError, DataError, NotFittedError


class PreferenceModel(ABC):
    """Predicts p(A wins), p(B wins), p(tie) for battles.

    Subclasses set ``backend`` (the name written to the manifest) and ``config_class``
    (a config dataclass of :func:`arenajudge.config.option` fields); ``__init__`` only
    stores the config, fitted attributes end with ``_``.
    """

    backend: ClassVar[str]
    config_class: ClassVar[type]
    prefers_gpu: ClassVar[bool] = False
    """Whether this backend scores best on a GPU (engines give it one where there is one)."""
    training_: dict[str, Any]
    """What a fitted model was trained on (data summary, teacher...), kept in its manifest."""

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        self.config = replace(config or self.default_config(), **overrides)

    @classmethod
    def default_config(cls) -> Any:
        """The config a fresh model of this backend starts from."""
        return cls.config_class()

    def preflight(self) -> None:
        """Check what needs no data (settings; subclasses add extras and paths), so that
        a run fails before reading any; ``fit`` checks again."""
        check_config(self.config)

    @abstractmethod
    def fit(self, battles: Battles, *, sample_weight: np.ndarray | None = None) -> PreferenceModel:
        """Learn from labelled ``battles``; returns ``self``."""

    @abstractmethod
    def predict_proba(self, battles: Battles, tie_rate: float | None = None) -> np.ndarray:
        """Probabilities, shape (n, 3), in ``LABELS`` order; rows sum to 1.

        ``tie_rate`` shifts predictions to a target share of ties.
        """

    @abstractmethod
    def save(self, path: str | Path, *, force: bool = False) -> None:
        """Write the fitted model to the directory ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path) -> PreferenceModel:
        """Read a model written by :meth:`save`."""

    def worker_copy(self) -> PreferenceModel | None:
        """A copy scoring exactly as this model does on a single thread, which a worker
        process receives pickled to score blocks of a file side by side with others;
        None (the default) keeps scoring in this process, for backends that run their
        own threads or a GPU."""
        return None

    @property
    def is_fitted(self) -> bool:
        return any(name.endswith("_") and not name.startswith("_") for name in vars(self))

    def check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; "
                "call fit() or load a saved model first"
            )


MemberLoader = Callable[[Path], PreferenceModel]
"""Loads a member MODEL_DIR of any backend: :func:`arenajudge.models.registry.load_model`,
handed to a composite by whoever builds or loads it, so that backends never import the
registry (which imports them)."""


@runtime_checkable
class LoadsWithOptions(Protocol):
    """A backend whose saved models take prediction-time settings when loaded (batching,
    device...): ``load(path, options)`` with an instance of ``predict_options_class``.
    :func:`arenajudge.models.registry.load_model` builds the options from the command
    line; a backend without them refuses such flags."""

    predict_options_class: type

    def load(self, path: str | Path, options: Any = None) -> PreferenceModel:
        """Read a model written by ``save``, predicting as ``options`` say."""
        ...


class CompositeModel(PreferenceModel):
    """A model combining other saved models (its members, kept as MODEL_DIRs)."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path, *, load_member: MemberLoader | None = None) -> CompositeModel:
        """Read a model written by :meth:`save`, its members with ``load_member``."""

    @property
    @abstractmethod
    def parts(self) -> list[PreferenceModel]:
        """The fitted models this one combines: an ensemble's members, a cascade's two
        stages (empty before it is fitted or loaded)."""


def check_labelled(battles: Battles) -> np.ndarray:
    """The battles' ``target`` (n, 3); a clear error when they have no labels."""
    if battles.target is None:
        raise DataError(
            "has no label columns; training needs winner_model_a, "
            "winner_model_b and winner_tie (or a winner column)",
            file=battles.path,
        )
    return battles.target


def check_sample_weight(battles: Battles, sample_weight: np.ndarray | None) -> np.ndarray:
    """``sample_weight`` as one finite, non-negative float per battle (ones when None)."""
    if sample_weight is None:
        return np.ones(len(battles))
    weight = np.asarray(sample_weight, dtype=float)
    if weight.shape != (len(battles),) or not np.isfinite(weight).all() or (weight < 0).any():
        raise ConfigError("sample_weight must be one finite, non-negative number per battle")
    return weight
