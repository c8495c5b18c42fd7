"""Model-style features: how strong the model that wrote a response reads as.

Training battles often name their models (Kaggle's train.csv does; its test.csv does
not). Which model answered explains many votes: on arena_bench a Bradley–Terry fit of
the names alone scores 0.903 against the text model's 0.970. The names are gone at
prediction time, but the models' wording is not. A multinomial logistic regression on
hashed TF-IDF word uni- and bigrams learns, from the training responses, which model
wrote a text; each response then gets two side features: the Bradley–Terry strength
(Davidson ties; fitted on the training votes) expected under those probabilities, and
the probability of the likeliest model (how sure the guess is).

Nothing here is kept but arrays: the hashing needs no vocabulary, so a model saves the
IDF weights, the regression's coefficients, the model names and their strengths.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from arenajudge.data.schema import Battles, Turns, join_turns
from arenajudge.errors import DataError, ModelLoadError

if TYPE_CHECKING:  # scikit-learn and scipy are imported when features are built
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import HashingVectorizer

logger = logging.getLogger(__name__)

STYLE_SIDE_NAMES = ("style_strength", "style_confidence")
STYLE_CHOICES = ("auto", "off")
MIN_NAMED_BATTLES = 2000
MIN_MODELS = 3
HASH_BITS = 16
INVERSE_REGULARISATION = 10.0
# A model's habits show from its first paragraphs; reading no further bounds the cost of
# long answers, as the cap on the classifier's training texts bounds that of big files.
HEAD_CHARS = 2000
MAX_TEXTS = 5_000


def _vectorizer() -> HashingVectorizer:
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        ngram_range=(1, 2), n_features=2**HASH_BITS, alternate_sign=False, norm=None
    )


def _counts(texts: list[str]) -> sp.csr_matrix:
    return _vectorizer().transform(texts).tocsr()


def _tf_idf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Sublinear term frequency times IDF, rows L2-normalised (scikit-learn's
    ``TfidfTransformer(sublinear_tf=True)``, written out so a saved model needs only
    the IDF array)."""
    from sklearn.preprocessing import normalize

    weighted = counts.astype(np.float32)
    weighted.data = 1 + np.log(weighted.data)
    return normalize(weighted.multiply(idf).tocsr(), copy=False)


def style_supported(battles: Battles) -> str | None:
    """Why ``battles`` cannot train model-style features, or None when they can."""
    if not battles.has_models:
        return "the battles name no models"
    from arenajudge.leaderboard.bradley_terry import model_pairs

    kept, names_a, names_b, _, _ = model_pairs(battles)
    if len(kept) < MIN_NAMED_BATTLES:
        return (
            f"{len(kept)} battles name both models (model-style features need {MIN_NAMED_BATTLES})"
        )
    models = set(names_a) | set(names_b)
    if len(models) < MIN_MODELS:
        return f"only {len(models)} models are named (need {MIN_MODELS})"
    return None


def _strengths(battles: Battles) -> dict[str, float]:
    """Each model's Bradley–Terry log-strength from the votes (Davidson ties if any)."""
    from arenajudge.leaderboard import fit_leaderboard
    from arenajudge.leaderboard.bradley_terry import LOGIT_TO_ELO

    if battles.target is None:
        raise DataError("has no labels; model-style features learn from votes", file=battles.path)
    ties = "davidson" if (battles.target[:, 2] > 0).any() else "half"
    board = fit_leaderboard(battles, ties=ties, ci="none")
    return dict(zip(board.table.model, board.table.rating / LOGIT_TO_ELO))


def _head(turns: Turns) -> str:
    return join_turns(turns)[:HEAD_CHARS]


def _written_by(
    battles: Battles, strengths: dict[str, float], seed: int
) -> tuple[list[str], list[str]]:
    """Each distinct (response head, model) of the rated models once, at most
    ``MAX_TEXTS`` of them (a seeded sample): texts and names."""
    if battles.model_a is None or battles.model_b is None:
        raise DataError("names no models; model-style features need them", file=battles.path)
    pairs = sorted(
        {
            (_head(turns), str(name))
            for side, names in (
                (battles.response_a, battles.model_a),
                (battles.response_b, battles.model_b),
            )
            for turns, name in zip(side, names)
            if str(name) in strengths
        }
    )
    if len(pairs) > MAX_TEXTS:
        keep = np.random.default_rng(seed).choice(len(pairs), MAX_TEXTS, replace=False)
        pairs = [pairs[i] for i in np.sort(keep)]
    return [text for text, _ in pairs], [name for _, name in pairs]


@dataclass(frozen=True)
class ModelStyle:
    """A text -> model-name classifier and the strengths of the models it knows.

    Attributes
    ----------
    models : tuple of str
        The classifier's classes.
    strength : ndarray, shape (k,)
        Their Bradley–Terry log-strengths.
    idf : ndarray, shape (2 ** HASH_BITS,)
    coef : ndarray, shape (k, 2 ** HASH_BITS)
    intercept : ndarray, shape (k,)
    """

    models: tuple[str, ...]
    strength: np.ndarray
    idf: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    @classmethod
    def fit(cls, battles: Battles, seed: int = 0) -> ModelStyle:
        """Fit on labelled battles that pass :func:`style_supported`; ``seed`` draws the
        training texts when there are more than ``MAX_TEXTS``."""
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression

        strengths = _strengths(battles)
        texts, names = _written_by(battles, strengths, seed)
        if len(set(names)) < 2:
            raise DataError(
                "names fewer than two models with responses; model-style features need more",
                file=battles.path,
            )
        counts = _counts(texts)
        idf = TfidfTransformer(sublinear_tf=True).fit(counts).idf_.astype(np.float32)
        # newton-cg: deterministic (no seed to give), and on 2 ** HASH_BITS columns per
        # model about 4x faster than lbfgs, whose own bookkeeping dominates there
        regression = LogisticRegression(
            C=INVERSE_REGULARISATION, solver="newton-cg", max_iter=1000
        ).fit(_tf_idf(counts, idf), names)
        models = tuple(str(m) for m in regression.classes_)
        coef = (
            regression.coef_
            if len(models) > 2
            else np.vstack([-regression.coef_[0] / 2, regression.coef_[0] / 2])
        )
        intercept = (
            regression.intercept_
            if len(models) > 2
            else np.array([-regression.intercept_[0] / 2, regression.intercept_[0] / 2])
        )
        return cls(
            models=models,
            strength=np.array([strengths[m] for m in models], dtype=np.float32),
            idf=idf,
            coef=np.ascontiguousarray(coef, dtype=np.float32),
            intercept=np.ascontiguousarray(intercept, dtype=np.float32),
        )

    def features(self, counts: sp.csr_matrix) -> np.ndarray:
        """(n, 2) float64: expected strength and top probability of texts whose hashed
        word counts are ``counts``."""
        logits = _tf_idf(counts, self.idf) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
        return np.column_stack([proba @ self.strength, proba.max(axis=1)])

    def save(self, path: Path) -> None:
        import json

        from safetensors.numpy import save_file

        save_file(
            {
                "strength": self.strength,
                "idf": self.idf,
                "coef": self.coef,
                "intercept": self.intercept,
            },
            str(path),
            metadata={"models": json.dumps(list(self.models))},
        )

    @classmethod
    def load(cls, path: Path) -> ModelStyle:
        import json

        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="numpy") as tensors:
                models = tuple(json.loads((tensors.metadata() or {})["models"]))
                style = cls(
                    models=models,
                    **{
                        name: tensors.get_tensor(name)
                        for name in ("strength", "idf", "coef", "intercept")
                    },
                )
        except (OSError, SafetensorError, KeyError, ValueError) as exc:
            raise ModelLoadError(f"cannot be read ({exc}); retrain the model", file=path) from None
        if style.coef.shape != (len(models), 2**HASH_BITS) or style.idf.shape != (2**HASH_BITS,):
            raise ModelLoadError(
                "does not match this arenajudge's model-style features; retrain the model",
                file=path,
            )
        return style


def style_sides(styles: Sequence[ModelStyle], battles: Battles) -> tuple[np.ndarray, np.ndarray]:
    """(side_a, side_b) blocks, float32, columns named by ``STYLE_SIDE_NAMES``: the
    mean of ``styles``' features; each distinct response is hashed once."""
    index: dict[str, int] = {}
    of_text = np.fromiter(
        (
            index.setdefault(_head(t), len(index))
            for side in (battles.response_a, battles.response_b)
            for t in side
        ),
        dtype=np.int64,
        count=2 * len(battles),
    )
    counts = _counts(list(index))
    features = np.mean([style.features(counts) for style in styles], axis=0)[of_text]
    return (
        features[: len(battles)].astype(np.float32),
        features[len(battles) :].astype(np.float32),
    )


def cross_fitted_style(
    battles: Battles, fold: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[ModelStyle]]:
    """Out-of-fold (side_a, side_b) blocks of labelled ``battles`` and the fold models:
    each fold's blocks come from a :class:`ModelStyle` fitted on the other folds, so the
    trees learn from what prediction will see, not from texts the classifier has
    memorised; prediction averages the fold models, whose features are alike."""
    side_a = np.zeros((len(battles), len(STYLE_SIDE_NAMES)), dtype=np.float32)
    side_b = np.zeros_like(side_a)
    styles = []
    for k in np.unique(fold):
        held = fold == k
        styles.append(ModelStyle.fit(battles.take(~held), seed))
        side_a[held], side_b[held] = style_sides(styles[-1:], battles.take(held))
    return side_a, side_b, styles
