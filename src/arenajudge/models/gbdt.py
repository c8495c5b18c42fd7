"""The default CPU model: LightGBM on text statistics and WordLlama embeddings.

Training sees every battle in both orders (the swapped copy with its label
swapped); prediction averages p(A, B) with the column-swapped p(B, A), so swapping
A and B in the input swaps the two outputs exactly. A prompt-grouped holdout picks
the number of boosting rounds; five prompt-grouped models trained the same way give
the out-of-fold predictions the calibration is fitted on (cross-fitting); the final
model is then trained on all rows.

Its settings are :class:`arenajudge.models.gbdt_config.GBDTConfig`; the LightGBM
training steps live in :mod:`arenajudge.models.gbdt_training`.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from arenajudge.calibration import (
    CALIBRATION_FOLDS,
    Calibration,
    fit_calibration,
    smoothed_prior,
)
from arenajudge.config import check_config
from arenajudge.data.folds import folds, holdout_mask
from arenajudge.data.schema import LABELS, Battles, swap_proba
from arenajudge.data.sources import source_weights
from arenajudge.errors import ConfigError, DataError, ModelLoadError
from arenajudge.features.builder import PairFeatures, feature_builder
from arenajudge.features.external import ExternalProjection
from arenajudge.features.model_style import (
    ModelStyle,
    cross_fitted_style,
    style_sides,
    style_supported,
)
from arenajudge.models.booster import Booster, BoosterError
from arenajudge.models.contract import PreferenceModel, check_labelled, check_sample_weight
from arenajudge.models.gbdt_config import GBDTConfig
from arenajudge.models.gbdt_training import augmented, best_rounds, train_booster
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
            booster = train_booster(
                self.config,
                augmented(pair.take(rows), target[rows], weight[rows]),
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
        assert target is not None  # check_labelled refused unlabelled battles
        rounds_per_row = self._fit_calibration(battles, pair, weight)
        rounds = max(1, round(rounds_per_row * len(battles)))
        progress.info("training: the final model, %d rounds on every battle", rounds)
        trained = train_booster(self.config, augmented(pair, target, weight), None, rounds)
        self.booster_ = Booster(trained.model_to_string())
        self.feature_names_ = self.config.features.names(
            self._external_components, style=bool(self.style_)
        )
        self.training_ = self._training_record(battles, style_record, balanced)
        return self

    def _fit_calibration(self, battles: Battles, pair: PairFeatures, weight: np.ndarray) -> float:
        """Set ``calibration_`` and ``validation_`` from the holdout's early stopping and the
        cross-fit; returns the boosting rounds per training row the final model gets
        (``n_estimators`` spread over the rows when ``holdout_share`` is 0)."""
        target, scored = battles.target, battles.scored_target
        assert target is not None and scored is not None  # check_labelled refused unlabelled
        holdout = holdout_mask(
            battles,
            self.config.holdout_share,
            self.config.seed,
            without=f"{self.config.n_estimators} rounds without a holdout and calibration",
            by=self.config.fold_groups,
        )
        prior = smoothed_prior(target, weight)
        self.calibration_ = Calibration(train_prior=prior)
        self.validation_: dict[str, Any] = {}
        if holdout is None:
            return self.config.n_estimators / len(battles)
        progress.info("training: boosting rounds, by early stopping on the holdout")
        best = best_rounds(self.config, pair, target, weight, holdout)
        # more rows warrant proportionally more rounds
        rounds_per_row = best / int((~holdout).sum())
        oof, fold = self._cross_fit(battles, pair, target, weight, rounds_per_row)
        self.calibration_, self.validation_ = fit_calibration(
            scored, oof, fold, prior, battles.source
        )
        self.validation_.update(
            best_iteration=best, rounds=max(1, round(rounds_per_row * len(battles)))
        )
        return rounds_per_row

    def _training_record(
        self,
        battles: Battles,
        style_record: dict[str, Any],
        balanced: tuple[dict[str, float], np.ndarray] | None,
    ) -> dict[str, Any]:
        """What the manifest records of the training data: its summary, the model-style
        features, the source weights and the outside embeddings, when used."""
        record = data_summary(battles)
        record["model_style"] = style_record
        if balanced is not None:
            record["source_weight"] = {name: round(value, 6) for name, value in balanced[0].items()}
        if self.projection_ is not None and battles.embeddings is not None:
            record["embeddings"] = {
                "file": battles.embeddings.path,
                "encoder": self.projection_.encoder,
                "dim": self.projection_.dim,
                "components": self._external_components,
            }
        return record

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
                side_a, side_b, styles = cross_fitted_style(
                    battles, self._folds(battles), self.config.seed
                )
                self.style_ = tuple(styles)
            except (ConfigError, DataError) as exc:  # e.g. models not all compared
                why = str(exc)
        if not self.style_:
            logger.info("model-style features not used: %s", why)
            return None, {"used": False, "why": why}
        return (side_a, side_b), {
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
    def _symmetric(self, booster: Any, pair: PairFeatures) -> np.ndarray:
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
