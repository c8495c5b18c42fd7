"""The default CPU model: LightGBM on text statistics and WordLlama embeddings.

Training sees every battle in both orders (the swapped copy with its label
swapped); prediction averages p(A, B) with the column-swapped p(B, A), so swapping
A and B in the input swaps the two outputs exactly. A prompt-grouped holdout picks
the number of boosting rounds; five prompt-grouped models trained the same way give
the out-of-fold predictions the calibration is fitted on (cross-fitting); the final
model is then trained on all rows.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from arenajudge.calibration import CALIBRATION_FOLDS, Calibration, fit_calibration
from arenajudge.config import check_config, option
from arenajudge.data.folds import FOLD_GROUPS, folds, holdout_mask
from arenajudge.data.schema import LABELS, Battles, swap_proba
from arenajudge.data.sources import source_weights
from arenajudge.errors import ConfigError, DataError, ModelLoadError
from arenajudge.features.builder import FeatureSpec, PairFeatures, feature_builder
from arenajudge.features.external import ExternalProjection
from arenajudge.features.model_style import (
    STYLE_CHOICES,
    ModelStyle,
    cross_fitted_style,
    style_sides,
    style_supported,
)
from arenajudge.models.booster import Booster, BoosterError
from arenajudge.models.contract import PreferenceModel, check_labelled, check_sample_weight
from arenajudge.models.manifest import (
    config_from_manifest,
    data_summary,
    read_manifest,
    schema_hash,
    write_manifest,
)
from arenajudge.outputs import atomic_path
from arenajudge.timing import timed

logger = logging.getLogger(__name__)
# stages of a fit, silent unless shown (`arenajudge train` shows them on stderr)
progress = logging.getLogger("arenajudge.progress")

BOOSTER_FILE = "model.txt"
CALIBRATION_FILE = "calibration.json"
FEATURES_FILE = "features.json"
PROJECTION_FILE = "embeddings_pca.safetensors"
STYLE_FILE = "model_style.{}.safetensors"


@dataclass(frozen=True)
class GBDTConfig:
    """Hyper-parameters of :class:`GBDTModel`; YAML/TOML keys and CLI flags map onto these."""

    n_estimators: int = option(
        2000, "Most boosting rounds; early stopping on the holdout usually stops far sooner.", low=1
    )
    learning_rate: float = option(
        0.05, "LightGBM shrinkage per round.", low=0, high=1, low_open=True
    )
    num_leaves: int = option(31, "Leaves per tree.", low=2)
    min_child_samples: int = option(50, "Fewest (swap-augmented) battles in a leaf.", low=1)
    feature_fraction: float = option(
        0.5, "Share of features each tree sees.", low=0, high=1, low_open=True
    )
    bagging_fraction: float = option(
        0.8, "Share of rows each tree sees.", low=0, high=1, low_open=True
    )
    lambda_l2: float = option(5.0, "L2 penalty on leaf values.", low=0)
    max_bin: int = option(255, "Histogram bins per feature; fewer bins train faster.", low=2)
    early_stopping_rounds: int = option(
        100, "Rounds without holdout improvement before stopping.", low=1
    )
    holdout_share: float = option(
        0.15,
        "Share of prompts held out to pick the rounds and fit "
        "the calibration; 0 turns early stopping and calibration "
        "off (all n_estimators rounds, temperature 1).",
        low=0,
        high=0.5,
        high_open=True,
    )
    embedding_dim: int = option(
        8, "Leading WordLlama dimensions used (Matryoshka).", low=1, high=256
    )
    encoder: str | None = option(
        None,
        "A Hugging Face encoder used instead of WordLlama: a "
        "local directory, a hub id (org/name[@revision]) or a .gguf "
        "file (needs the transformers extra).",
    )
    embedding_components: int = option(
        8, "PCA directions kept of outside embeddings (--embeddings EMB.parquet), if given.", low=1
    )
    model_style: str = option(
        "auto",
        "Model-style features (which model a response reads "
        "as written by, and that model's strength), learnt from the "
        "model names of the training battles: auto uses them when at "
        "least 2,000 battles name both models; off never does.",
        choices=STYLE_CHOICES,
    )
    fold_groups: str = option(
        "prompt",
        "What the holdout, the calibration's cross-fit folds "
        "and the model-style classifiers hold out together: prompt "
        "(calibrated for new prompts), or model (each pair of models: "
        "calibrated for models it has not seen, as `winrate --model` "
        "scores them).",
        choices=FOLD_GROUPS,
    )
    source_balance: float = option(
        0.5,
        "When the training battles name their source (a "
        "source column or --sources), each battle weighs "
        "(battles of its source) ** -source_balance: 0 weighs "
        "every battle alike, 1 gives every source the same total "
        "weight.",
        low=0,
        high=1,
    )
    n_jobs: int = option(
        0, "Threads for features and LightGBM; 0 means one per core (or OMP_NUM_THREADS).", low=0
    )
    seed: int = option(
        0,
        "Seed of the holdout split, bagging and the A/B order of chosen/rejected pairs.",
        low=0,
        high=2**31 - 1,
    )

    @property
    def features(self) -> FeatureSpec:
        return FeatureSpec(embedding_dim=self.embedding_dim, encoder=self.encoder)

    def lightgbm_params(self) -> dict[str, Any]:
        return {
            "objective": "multiclass",
            "num_class": len(LABELS),
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "num_threads": self.n_jobs,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


def _expand_targets(
    features: np.ndarray, target: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per (battle, class with probability > 0), weighted by that probability,
    so LightGBM's multiclass loss equals the soft-label cross-entropy."""
    rows, classes = np.nonzero(target > 0)
    return features[rows], classes, weight[rows] * target[rows, classes]


def _augmented(
    pair: PairFeatures, target: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both orders of every battle: (features, class, weight)."""
    X = np.vstack([pair.matrix(), pair.matrix(swapped=True)])
    return _expand_targets(
        X, np.vstack([target, swap_proba(target)]), np.concatenate([weight, weight])
    )


def _style_files(path: Path, manifest: dict[str, Any]) -> list[Path]:
    """The model-style files a manifest says the model has (``read_manifest(verify=True)``
    has already refused a directory missing one)."""
    record = manifest.get("training", {}).get("model_style", {})
    return (
        [path / STYLE_FILE.format(k) for k in range(int(record.get("folds", 0)))]
        if record.get("used")
        else []
    )


class GBDTModel(PreferenceModel):
    """Swap-symmetric, calibrated LightGBM preference model.

    Parameters
    ----------
    config : GBDTConfig, optional
        Hyper-parameters; keyword ``overrides`` replace single fields.

    Attributes
    ----------
    booster_ : Booster
        The final LightGBM model, scored through LightGBM's C library.
    calibration_ : Calibration
    validation_ : dict
        The calibration's report (:func:`arenajudge.calibration.fit_calibration`: the
        out-of-fold, calibrated log loss and ECE, the tie model chosen and why), the
        early-stopping round and the rounds of the final model.
    projection_ : ExternalProjection or None
        The PCA of outside embeddings, when the training battles carried them; the
        battles to predict must then carry embeddings of the same encoder.
    style_ : tuple of ModelStyle
        The model-style classifiers of the calibration folds, whose features prediction
        averages, when the training battles named enough models (``model_style``,
        :mod:`arenajudge.features.model_style`); empty otherwise.
    """

    backend = "gbdt"
    config_class = GBDTConfig

    # ----------------------------------------------------------------- training
    def _train(self, train: tuple, valid: tuple | None, rounds: int):
        import lightgbm as lgb

        dataset = lgb.Dataset(train[0], label=train[1], weight=train[2], free_raw_data=True)
        kwargs: dict[str, Any] = {"num_boost_round": rounds}
        if valid is not None:
            kwargs["valid_sets"] = [
                lgb.Dataset(valid[0], label=valid[1], weight=valid[2], reference=dataset)
            ]
            kwargs["callbacks"] = [
                lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)
            ]
        return lgb.train(self.config.lightgbm_params(), dataset, **kwargs)

    def _best_rounds(
        self, pair: PairFeatures, target: np.ndarray, weight: np.ndarray, holdout: np.ndarray
    ) -> int:
        """Boosting rounds picked by early stopping on the prompt-grouped ``holdout``."""
        fit_rows, held_rows = np.flatnonzero(~holdout), np.flatnonzero(holdout)
        booster = self._train(
            _augmented(pair.take(fit_rows), target[fit_rows], weight[fit_rows]),
            _augmented(pair.take(held_rows), target[held_rows], weight[held_rows]),
            self.config.n_estimators,
        )
        return int(booster.best_iteration) or self.config.n_estimators

    def _folds(self, battles: Battles) -> np.ndarray:
        """The calibration's cross-fit folds, grouped as ``fold_groups`` says."""
        return folds(
            battles, n_folds=CALIBRATION_FOLDS, seed=self.config.seed, by=self.config.fold_groups
        )

    def _cross_fit(
        self,
        battles: Battles,
        pair: PairFeatures,
        target: np.ndarray,
        weight: np.ndarray,
        rounds_per_row: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Out-of-fold raw predictions (n, 3) and fold numbers (n,) of models trained as
        the shipped one is (fixed rounds in proportion to their rows) on the grouped
        folds: what the calibration is fitted on."""
        fold = self._folds(battles)
        oof = np.zeros((len(battles), len(LABELS)))
        for k in range(CALIBRATION_FOLDS):
            progress.info(
                "training: calibration cross-fit, fold %d of %d", k + 1, CALIBRATION_FOLDS
            )
            rows, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            booster = self._train(
                _augmented(pair.take(rows), target[rows], weight[rows]),
                None,
                max(1, round(rounds_per_row * len(rows))),
            )
            oof[held] = self._symmetric(booster, pair.take(held))
        return oof, fold

    def fit(self, battles: Battles, *, sample_weight: np.ndarray | None = None) -> GBDTModel:
        """Fit on labelled ``battles`` (hard or soft labels); returns ``self``."""
        check_config(self.config)
        check_labelled(battles)
        weight = check_sample_weight(battles, sample_weight)
        balanced = source_weights(battles.source, self.config.source_balance)
        if balanced is not None:
            weight = weight * balanced[1]
        self.projection_ = (
            None
            if battles.embeddings is None
            else ExternalProjection.fit(
                battles.embeddings, self.config.embedding_components, self.config.seed
            )
        )
        progress.info("training: features of %s battles", f"{len(battles):,}")
        pair = self._base_features(battles)
        oof_style, style_record = self._fit_style(battles)
        if oof_style is not None:
            pair = pair.join_sides(*oof_style)
        target = battles.target
        holdout = holdout_mask(
            battles,
            self.config.holdout_share,
            self.config.seed,
            without=f"{self.config.n_estimators} rounds without a holdout and calibration",
            by=self.config.fold_groups,
        )
        counts = (
            np.vstack([target, swap_proba(target)]) * np.concatenate([weight, weight])[:, None]
        ).sum(axis=0)
        prior = tuple((counts + 1) / (counts.sum() + len(LABELS)))  # smoothed: no prior 0
        self.calibration_ = Calibration(train_prior=prior)
        self.validation_: dict[str, Any] = {}
        rounds_per_row = self.config.n_estimators / len(battles)
        if holdout is not None:
            progress.info("training: boosting rounds, by early stopping on the holdout")
            best = self._best_rounds(pair, target, weight, holdout)
            # more rows warrant proportionally more rounds
            rounds_per_row = best / int((~holdout).sum())
            oof, fold = self._cross_fit(battles, pair, target, weight, rounds_per_row)
            self.calibration_, self.validation_ = fit_calibration(
                battles.scored_target, oof, fold, prior, battles.source
            )
            self.validation_.update(
                best_iteration=best, rounds=max(1, round(rounds_per_row * len(battles)))
            )
        rounds = max(1, round(rounds_per_row * len(battles)))
        progress.info("training: the final model, %d rounds on every battle", rounds)
        trained = self._train(_augmented(pair, target, weight), None, rounds)
        self.booster_ = Booster(trained.model_to_string())
        self.feature_names_ = self.config.features.names(
            self._external_components, style=bool(self.style_)
        )
        self.training_ = data_summary(battles)
        self.training_["model_style"] = style_record
        if balanced is not None:
            self.training_["source_weight"] = {
                name: round(value, 6) for name, value in balanced[0].items()
            }
        if self.projection_ is not None:
            self.training_["embeddings"] = {
                "file": battles.embeddings.path,
                "encoder": self.projection_.encoder,
                "dim": self.projection_.dim,
                "components": self._external_components,
            }
        return self

    @property
    def _external_components(self) -> int:
        return 0 if self.projection_ is None else len(self.projection_.components)

    def _fit_style(
        self, battles: Battles
    ) -> tuple[tuple[np.ndarray, np.ndarray] | None, dict[str, Any]]:
        """Cross-fitted model-style blocks of the training battles (None when not used),
        with ``style_`` the fold classifiers, and what the manifest records of it."""
        self.style_: tuple[ModelStyle, ...] = ()
        why = "model_style is off" if self.config.model_style == "off" else style_supported(battles)
        if why is None:
            try:
                # the calibration's folds: each calibration fold then sees model-style
                # features from a classifier fitted on the rows its booster trains on,
                # as the shipped model does
                *sides, styles = cross_fitted_style(battles, self._folds(battles), self.config.seed)
                self.style_ = tuple(styles)
            except (ConfigError, DataError) as exc:  # e.g. models not all compared
                why = str(exc)
        if not self.style_:
            logger.info("model-style features not used: %s", why)
            return None, {"used": False, "why": why}
        return tuple(sides), {
            "used": True,
            "models": len(set().union(*(style.models for style in self.style_))),
            "folds": len(self.style_),
        }

    def _base_features(self, battles: Battles) -> PairFeatures:
        pair = feature_builder(self.config.features).transform(battles, self.config.n_jobs)
        if self.projection_ is None:
            return pair
        return pair.join(*self.projection_.transform(battles.embeddings))

    def _features(self, battles: Battles) -> PairFeatures:
        """What the final booster scores: the base features and, when trained with
        them, the model-style ones."""
        pair = self._base_features(battles)
        return pair.join_sides(*style_sides(self.style_, battles)) if self.style_ else pair

    # --------------------------------------------------------------- prediction
    def _symmetric(self, booster, pair: PairFeatures) -> np.ndarray:
        """p(A, B) averaged with the column-swapped p(B, A); ``booster`` is the final
        model's :class:`Booster` or a cross-fitting ``lightgbm.Booster`` (both take
        ``num_threads``)."""
        forward = booster.predict(pair.matrix(), num_threads=self.config.n_jobs)
        backward = booster.predict(pair.matrix(swapped=True), num_threads=self.config.n_jobs)
        return (forward + swap_proba(backward)) / 2

    def worker_copy(self) -> GBDTModel:
        """This model on one thread (features and LightGBM), for a worker process."""
        clone = copy.copy(self)
        clone.config = replace(self.config, n_jobs=1)
        return clone

    def predict_proba(self, battles: Battles, tie_rate: float | None = None) -> np.ndarray:
        """Calibrated probabilities, shape (n, 3), in ``LABELS`` order.

        ``tie_rate`` shifts the prediction to a target share of ties (see
        :meth:`Calibration.transform`); no probability is below 1e-4.
        """
        self.check_fitted()
        if len(battles) == 0:
            return np.zeros((0, len(LABELS)))
        with timed("features"):
            pair = self._features(battles)
        with timed("lightgbm"):
            raw = self._symmetric(self.booster_, pair)
        return self.calibration_.transform(raw, tie_rate, battles.source)

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path, *, force: bool = False) -> None:
        """Write MODEL_DIR: manifest.json, model.txt (LightGBM text), calibration.json,
        features.json, embeddings_pca.safetensors when trained with outside embeddings and
        model_style.K.safetensors (one per fold) with model-style features;
        atomically, refusing to overwrite unless ``force``."""
        self.check_fitted()
        with atomic_path(path, force, kind="directory", output="model") as staged:
            staged.mkdir()
            self.booster_.save(staged / BOOSTER_FILE)
            self.calibration_.save(staged / CALIBRATION_FILE)
            (staged / FEATURES_FILE).write_text(json.dumps(self.feature_names_, indent=1))
            if self.projection_ is not None:
                self.projection_.save(staged / PROJECTION_FILE)
            for k, style in enumerate(self.style_):
                style.save(staged / STYLE_FILE.format(k))
            write_manifest(
                staged,
                backend=self.backend,
                config=asdict(self.config),
                feature_schema=schema_hash(self.feature_names_),
                training=self.training_,
                metrics={"holdout": self.validation_},
            )

    @classmethod
    def load(cls, path: str | Path) -> GBDTModel:
        """Read a MODEL_DIR written by :meth:`save`, checking version and feature schema."""
        path = Path(path)
        manifest = read_manifest(path, backend=cls.backend, verify=True)
        config = config_from_manifest(manifest, GBDTConfig, path)
        model = cls(config)
        model.projection_ = None
        if "embeddings" in manifest.get("training", {}):
            if not (path / PROJECTION_FILE).is_file():
                raise ModelLoadError(
                    "is missing; the model directory is incomplete", file=path / PROJECTION_FILE
                )
            model.projection_ = ExternalProjection.load(path / PROJECTION_FILE)
        model.style_ = tuple(ModelStyle.load(file) for file in _style_files(path, manifest))
        names = config.features.names(model._external_components, style=bool(model.style_))
        if schema_hash(names) != manifest.get("feature_schema"):
            raise ModelLoadError(
                "was trained on a different feature schema than this "
                "arenajudge computes; retrain the model",
                file=path,
            )
        booster_path = path / BOOSTER_FILE
        if not booster_path.is_file():
            raise ModelLoadError("is missing; the model directory is incomplete", file=booster_path)
        try:
            booster = Booster.from_file(booster_path)
        except (BoosterError, UnicodeDecodeError) as exc:
            raise ModelLoadError(
                f"is corrupt ({str(exc).strip()}); retrain the model", file=booster_path
            ) from None
        if booster.num_feature() != len(names):
            raise ModelLoadError(
                f"expects {booster.num_feature()} features, the schema has "
                f"{len(names)}; retrain the model",
                file=booster_path,
            )
        model.booster_ = booster
        model.calibration_ = Calibration.load(path / CALIBRATION_FILE)
        model.feature_names_ = names
        model.training_ = manifest.get("training", {})
        model.validation_ = manifest.get("metrics", {}).get("holdout", {})
        return model
