"""Model-style features: learnt from the training battles' model names, used from text."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from arenajudge.calibration import CALIBRATION_FOLDS
from arenajudge.data import read_battles
from arenajudge.errors import ModelLoadError
from arenajudge.features.model_style import MIN_NAMED_BATTLES, STYLE_SIDE_NAMES
from arenajudge.metrics import log_loss
from arenajudge.models.gbdt import STYLE_FILE, GBDTModel
from arenajudge.models.gbdt_config import GBDTConfig
from arenajudge.models.registry import load_model
from conftest import synthetic_frame

FAST = GBDTConfig(
    n_estimators=60,
    min_child_samples=10,
    num_leaves=7,
    holdout_share=0.25,
    early_stopping_rounds=10,
    embedding_dim=16,
    n_jobs=1,
)
WORDS = [
    "the",
    "answer",
    "is",
    "here",
    "and",
    "it",
    "covers",
    "what",
    "was",
    "asked",
    "in",
    "detail",
]
STRENGTH = {"alpha": 1.2, "beta": -0.6, "gamma": 0.5, "delta": -1.1}
# Every model uses the same words as often, in its own order: only word pairs tell the
# models apart, which averaged word embeddings and text statistics cannot see.
ORDER = {name: list(np.random.default_rng(k).permutation(WORDS)) for k, name in enumerate(STRENGTH)}


def _response(rng: np.random.Generator, model: str) -> str:
    start = int(rng.integers(len(WORDS)))
    return " ".join((ORDER[model] * 2)[start : start + len(WORDS)])


def style_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Battles whose winner follows the models' strengths (Davidson ties), the models
    being recognisable only by their wording."""
    rng = np.random.default_rng(seed)
    names = list(STRENGTH)
    rows = []
    for i in range(n):
        a, b = rng.choice(names, size=2, replace=False)
        pa, pb = np.exp(STRENGTH[a]), np.exp(STRENGTH[b])
        tie = 0.6 * np.sqrt(pa * pb)
        winner = rng.choice(3, p=np.array([pa, pb, tie]) / (pa + pb + tie))
        rows.append(
            {
                "id": i,
                "model_a": a,
                "model_b": b,
                "prompt": json.dumps([f"question {i % (n // 4)}"]),
                "response_a": json.dumps([_response(rng, a)]),
                "response_b": json.dumps([_response(rng, b)]),
                **{
                    label: int(winner == k)
                    for k, label in enumerate(("winner_model_a", "winner_model_b", "winner_tie"))
                },
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def style_battles(tmp_path_factory):
    path = tmp_path_factory.mktemp("style") / "train.csv"
    style_frame(MIN_NAMED_BATTLES + 800).to_csv(path, index=False)
    return read_battles(path)


@pytest.fixture(scope="module")
def halves(style_battles):
    first = np.arange(len(style_battles)) < len(style_battles) * 3 // 4
    return style_battles.take(first), style_battles.take(~first)


@pytest.fixture(scope="module")
def style_model(halves):
    return GBDTModel(FAST).fit(halves[0])


def test_model_style_features_carry_what_the_names_say(halves, style_model):
    train, test = halves
    without = GBDTModel(FAST, model_style="off").fit(train)
    names = without.predict_proba(test.without_labels())
    with_style = style_model.predict_proba(test.without_labels())
    assert style_model.training_["model_style"] == {
        "used": True,
        "models": 4,
        "folds": CALIBRATION_FOLDS,
    }
    assert without.training_["model_style"] == {"used": False, "why": "model_style is off"}
    assert [n for n in style_model.feature_names_ if "style" in n] == [
        f"{side}_{name}" for side in ("a", "b", "diff") for name in STYLE_SIDE_NAMES
    ]
    # the text alone says little; the wording, through the names, says much more
    assert log_loss(test.target, with_style) < log_loss(test.target, names) - 0.05
    fold_model = style_model.style_[0]
    strength = dict(zip(fold_model.models, fold_model.strength))
    assert sorted(strength, key=strength.get) == sorted(STRENGTH, key=STRENGTH.get)


def test_model_style_round_trips_and_keeps_the_swap_symmetry(halves, style_model, tmp_path):
    test = halves[1].without_labels()
    style_model.save(tmp_path / "m")
    assert (tmp_path / "m" / STYLE_FILE.format(2)).is_file()
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict_proba(test), style_model.predict_proba(test))
    swapped = loaded.predict_proba(test.swap())
    np.testing.assert_allclose(swapped, loaded.predict_proba(test)[:, [1, 0, 2]], atol=1e-9)


def test_a_model_style_file_that_is_gone_is_a_clear_error(style_model, tmp_path):
    style_model.save(tmp_path / "m")
    (tmp_path / "m" / STYLE_FILE.format(1)).unlink()
    with pytest.raises(ModelLoadError, match=STYLE_FILE.format(1)):
        load_model(tmp_path / "m")


def test_too_few_named_battles_leave_model_style_off(tmp_path):
    path = tmp_path / "small.csv"
    synthetic_frame(n=240).to_csv(path, index=False)
    model = GBDTModel(FAST).fit(read_battles(path))
    assert model.style_ == ()
    assert model.training_["model_style"]["used"] is False
    assert str(MIN_NAMED_BATTLES) in model.training_["model_style"]["why"]
    assert not [n for n in model.feature_names_ if "style" in n]
