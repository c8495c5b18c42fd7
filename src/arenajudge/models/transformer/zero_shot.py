"""Zero-shot judging (``--zero-shot``): the base, untouched, scores every battle with its
LM head's logits of the label words, and only the calibration is fitted on them.

The calibration is cross-fitted over prompt-grouped folds, so its report is out of
sample; :meth:`arenajudge.models.transformer.model.TransformerModel.fit` scores the
battles and hands the raw verdicts here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from arenajudge.calibration import (
    CALIBRATION_FOLDS,
    Calibration,
    fit_calibration,
    smoothed_prior,
)
from arenajudge.data.folds import group_folds, prompt_groups
from arenajudge.data.schema import Battles
from arenajudge.metrics import log_loss
from arenajudge.models.contract import check_labelled
from arenajudge.models.transformer.config import TransformerConfig

logger = logging.getLogger(__name__)


def warn_about_layout(config: TransformerConfig) -> None:
    """Warn when the base has no chat template: the plain layout asks it no question."""
    if config.prompt_format == "plain":
        logger.warning(
            "--zero-shot with the plain layout (--base %s has no chat "
            "template): the base is asked no question, and its scores of A, "
            "B and tie after the layout's last token say little; an instruct "
            "model with a chat template is a judge",
            config.base,
        )


def calibrate_verdicts(
    battles: Battles, weight: np.ndarray, raw: np.ndarray
) -> tuple[Calibration, dict[str, Any]]:
    """The calibration of the base's raw verdicts ``raw`` (n, 3) on labelled ``battles``,
    and the validation record the manifest keeps of it."""
    target, scored = check_labelled(battles), battles.scored_target
    assert scored is not None  # labelled, as check_labelled says
    prior = smoothed_prior(target, weight)
    calibration, report = fit_calibration(
        scored,
        raw,
        group_folds(prompt_groups(battles), CALIBRATION_FOLDS),
        prior,
        battles.source,
    )
    return calibration, {
        "rows": len(battles),
        "best_step": None,
        "log_loss_raw": log_loss(scored, raw),
        "temperature": 1.0,
        "steps": 0,
        "resumed_from": None,
        "stopped_early": False,
        "zero_shot": True,
        **report,
    }
