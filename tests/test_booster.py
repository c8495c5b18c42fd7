"""LightGBM through its C library: the same numbers as the lightgbm package, and a
prediction start-up without lightgbm's scikit-learn imports."""

from __future__ import annotations

import pickle
import subprocess
import sys

import lightgbm as lgb
import numpy as np
import pytest

from arenajudge.data import read_battles
from arenajudge.models.booster import Booster, BoosterError
from arenajudge.models.gbdt import GBDTModel
from conftest import synthetic_frame


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, 12)).astype(np.float32)
    labels = (features[:, 0] > 0).astype(int) + (features[:, 1] > 1)
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1, "num_leaves": 7},
        lgb.Dataset(features, label=labels),
        30,
    )
    return booster, rng.normal(size=(257, 12)).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predictions_are_lightgbms_bit_for_bit(trained, dtype):
    reference, features = trained
    native = Booster(reference.model_to_string())
    features = features.astype(dtype)
    assert native.num_feature() == reference.num_feature() == 12
    expected = reference.predict(features)
    np.testing.assert_array_equal(native.predict(features), expected)
    np.testing.assert_array_equal(native.predict(features, num_threads=1), expected)
    # a column slice is not C-contiguous
    wide = np.hstack([features, features])
    np.testing.assert_array_equal(native.predict(wide[:, :12]), expected)


def test_a_pickled_booster_predicts_the_same(trained):
    reference, features = trained
    native = Booster(reference.model_to_string())
    copy = pickle.loads(pickle.dumps(native))
    np.testing.assert_array_equal(copy.predict(features), native.predict(features))


def test_a_model_text_lightgbm_refuses_is_its_error(tmp_path):
    with pytest.raises(BoosterError, match="[Mm]odel"):
        Booster("tree\nnot a model")


def test_predicting_with_a_saved_model_imports_neither_lightgbm_nor_sklearn(tmp_path):
    frame = synthetic_frame(n=120, seed=3)
    frame.to_csv(tmp_path / "train.csv", index=False)
    GBDTModel(n_estimators=10, holdout_share=0, embedding_dim=8).fit(
        read_battles(tmp_path / "train.csv")
    ).save(tmp_path / "model")
    script = (
        "import sys\n"
        "from arenajudge.cli import main\n"
        f"main(['predict', r'{tmp_path / 'train.csv'}', '--model', r'{tmp_path / 'model'}',"
        f" '--out', r'{tmp_path / 'out.csv'}', '--workers', '1'], standalone_mode=False)\n"
        "print(sorted(m for m in ('lightgbm', 'sklearn', 'scipy.stats', 'scipy.optimize')"
        " if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out.csv").is_file()
