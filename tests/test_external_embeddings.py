"""Outside embeddings (`arenajudge embed` -> EMB.parquet) as extra CPU-model features."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from arenajudge.cli import main
from arenajudge.data import read_battles, swap_proba
from arenajudge.data.embeddings import attach_embeddings
from arenajudge.errors import ConfigError, DataError, ModelLoadError
from arenajudge.evaluate import cross_validate
from arenajudge.models.gbdt import GBDTModel
from arenajudge.models.gbdt_config import GBDTConfig
from arenajudge.models.registry import load_model
from arenajudge.models.transformer.embed import write_embeddings
from conftest import synthetic_frame

FAST = GBDTConfig(
    n_estimators=60,
    min_child_samples=5,
    num_leaves=7,
    holdout_share=0.25,
    early_stopping_rounds=10,
    embedding_dim=8,
    embedding_components=4,
    n_jobs=1,
)
DIM = 24


def _write_emb(battles, path, dim=DIM, encoder="/models/tiny-lm", noise=0.3, seed=0):
    """Embeddings whose A-minus-B direction carries the label: a winner's vector leans
    along one fixed axis, which the texts alone do not reveal."""
    rng = np.random.default_rng(seed)
    axis = np.zeros(dim, dtype=np.float32)
    axis[0] = 1
    sides = rng.normal(0, 1, size=(len(battles), 3, dim)).astype(np.float32) * noise
    sides[:, 1] += axis * (battles.label == 0)[:, None]
    sides[:, 2] += axis * (battles.label == 1)[:, None]
    columns = dict(
        zip(("prompt_emb", "response_a_emb", "response_b_emb"), (sides[:, k] for k in range(3)))
    )
    write_embeddings(
        battles.id,
        columns,
        {
            "format": "arenajudge.embeddings",
            "version": 1,
            "encoder": encoder,
            "model_type": "llama",
            "dim": dim,
            "max_length": 64,
            "pooling": "mean",
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("emb")
    # labels drawn independently of the texts: only the embeddings can tell the winner
    frame = synthetic_frame(n=300, seed=3)
    labels = np.random.default_rng(1).choice(3, size=len(frame), p=[0.45, 0.45, 0.1])
    for k, label in enumerate(("winner_model_a", "winner_model_b", "winner_tie")):
        frame[label] = (labels == k).astype(int)
    frame.to_csv(folder / "train.csv", index=False)
    battles = read_battles(folder / "train.csv")
    return folder / "train.csv", _write_emb(battles, folder / "emb.parquet"), battles


def test_embeddings_add_what_the_texts_lack(data):
    _, emb, battles = data
    with_emb = attach_embeddings(battles, emb)
    plain = cross_validate(lambda: GBDTModel(FAST), battles, n_folds=3, progress=False)
    rich = cross_validate(lambda: GBDTModel(FAST), with_emb, n_folds=3, progress=False)
    assert rich.overall["log_loss"] < plain.overall["log_loss"] - 0.2
    assert rich.overall["log_loss"] < rich.overall["prior_log_loss"] - 0.2


def test_model_with_embeddings_is_symmetric_and_round_trips(data, tmp_path):
    _, emb, battles = data
    battles = attach_embeddings(battles, emb)
    model = GBDTModel(FAST).fit(battles)
    proba = model.predict_proba(battles.without_labels())
    swapped = model.predict_proba(battles.without_labels().swap())
    np.testing.assert_allclose(swapped, swap_proba(proba), atol=1e-9)
    model.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(battles.without_labels()), proba)
    assert loaded.training_["embeddings"]["dim"] == DIM
    assert len(loaded.feature_names_) == len(GBDTModel(FAST).config.features.names(4))

    with pytest.raises(DataError, match="trained with outside embeddings; pass --embeddings"):
        loaded.predict_proba(replace(battles, embeddings=None))
    (tmp_path / "model" / "embeddings_pca.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="is missing"):
        load_model(tmp_path / "model")


def test_serving_refuses_a_model_that_needs_embeddings(data, tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    from arenajudge.serve import load_ready_model

    _, emb, battles = data
    GBDTModel(FAST).fit(attach_embeddings(battles, emb)).save(tmp_path / "model")
    with pytest.raises(ConfigError, match="trained with --embeddings"):
        load_ready_model(tmp_path / "model")


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_train_predict_evaluate_with_embeddings(data, tmp_path):
    train, emb, battles = data
    config = tmp_path / "fast.yaml"
    config.write_text(
        "n_estimators: 60\nmin_child_samples: 5\nnum_leaves: 7\n"
        "embedding_dim: 8\nembedding_components: 4\nn_jobs: 1\n"
    )
    model = tmp_path / "model"
    result = _run("train", train, "--out", model, "--config", config, "--embeddings", emb)
    assert result.exit_code == 0, result.output

    result = _run("predict", train, "--model", model, "--out", tmp_path / "sub.csv")
    assert result.exit_code == 2
    assert "trained with outside embeddings; pass --embeddings" in result.output
    assert "Traceback" not in result.output

    result = _run(
        "predict", train, "--model", model, "--out", tmp_path / "sub.csv", "--embeddings", emb
    )
    assert result.exit_code == 0, result.output
    result = _run("evaluate", train, "--model", model, "--embeddings", emb, "--format", "json")
    assert result.exit_code == 0, result.output
    assert '"log_loss"' in result.output

    other = _write_emb(battles, tmp_path / "other.parquet", dim=DIM + 1)
    result = _run(
        "predict", train, "--model", model, "--out", tmp_path / "sub2.csv", "--embeddings", other
    )
    assert result.exit_code == 2 and "25-d embeddings" in result.output
    assert "trained on 24-d ones" in result.output

    result = _run(
        "predict",
        train,
        "--model",
        model,
        "--out",
        tmp_path / "sub3.csv",
        "--embeddings",
        emb,
        "--engine",
        "ray",
    )
    assert result.exit_code == 2 and "--embeddings needs --engine local" in result.output
    result = _run(
        "train",
        train,
        "--out",
        tmp_path / "m2",
        "--backend",
        "siamese",
        "--base",
        tmp_path,
        "--embeddings",
        emb,
    )
    assert result.exit_code == 2 and "--embeddings applies to --backend gbdt" in result.output


@pytest.mark.parametrize(
    "metadata", [b"[" * 100_000, b'{"dim": ' + b"9" * 5000 + b"}", b"\xff\xfe"]
)
def test_corrupt_embeddings_metadata_is_a_located_error(data, tmp_path, metadata):
    import pyarrow.parquet as pq

    _, emb, battles = data
    damaged = tmp_path / "damaged.parquet"
    table = pq.read_table(emb)
    pq.write_table(table.replace_schema_metadata({b"arenajudge": metadata}), damaged)
    with pytest.raises(DataError, match=f"^{damaged}: has corrupt metadata"):
        attach_embeddings(battles, damaged)
