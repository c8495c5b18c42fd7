"""Hyper-parameters of the CPU model (:class:`arenajudge.models.gbdt.GBDTModel`).

One frozen dataclass, the single source of the model's settings: YAML/TOML keys and
``arenajudge train`` flags map onto its fields, each with its help text and bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from arenajudge.config import option
from arenajudge.data.folds import FOLD_GROUPS
from arenajudge.data.schema import LABELS
from arenajudge.features.builder import FeatureSpec
from arenajudge.features.model_style import STYLE_CHOICES


@dataclass(frozen=True)
class GBDTConfig:
    """Hyper-parameters of :class:`GBDTModel`; YAML/TOML keys and CLI flags map onto these."""

    cli_title: ClassVar[str] = "CPU model options"
    """Heading of these flags in ``--help`` (the CLI adds the backends they apply to)."""

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
