"""Writing the report directory: index.html, the plots and report.json."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arenajudge import __version__
from arenajudge.errors import DataError
from arenajudge.evaluate import evaluate_predictions
from arenajudge.outputs import atomic_path
from arenajudge.report.html import render_page
from arenajudge.report.plots import save_plot
from arenajudge.report.sections import Evidence, Section, all_sections


def _summary(
    evidence: Evidence, predictor: str, sections: list[Section], caveats: Sequence[str] = ()
) -> dict[str, Any]:
    battles = evidence.battles
    summary: dict[str, Any] = {
        "data": battles.path,
        "rows": len(battles),
        "predictor": predictor,
        "sections": [s.key for s in sections],
        "plots": [s.image for s in sections if s.has_plot],
    }
    if evidence.proba is not None:
        summary["metrics"] = evaluate_predictions(battles, evidence.proba)[0]
        summary["warnings"] = list(caveats)
    bias = next(s.numbers for s in sections if s.key == "position_bias")
    if "flip_rate" in bias:
        summary["flip_rate"] = bias["flip_rate"]
    return summary


def _summary_rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    rows = [
        ("data", str(summary["data"])),
        ("battles", f"{summary['rows']:,}"),
        ("predictions", summary["predictor"]),
    ]
    scores = summary.get("metrics")
    if scores:
        rows += [
            (
                "log loss",
                f"{scores['log_loss']:.4f} (class prior of these rows: "
                f"{scores['prior_log_loss']:.4f}; length-only baseline, "
                f"cross-validated on them: {scores['length_log_loss']:.4f})",
            ),
            ("accuracy", f"{scores['accuracy']:.1%}"),
            ("expected calibration error", f"{scores['ece']:.4f}"),
        ]
    else:
        rows.append(
            (
                "note",
                "no predictions: pass --model MODEL_DIR or --oof OOF.csv for "
                "calibration, confusion, log loss breakdowns and worst errors",
            )
        )
    if "flip_rate" in summary:
        rows.append(("A/B swap flip rate", f"{summary['flip_rate']:.2%}"))
    rows += [("warning", caveat) for caveat in summary.get("warnings", ())]
    return [{"": name, "value": value} for name, value in rows]


def _json_ready(value: Any) -> Any:
    """NaN and infinities -> None, so that report.json is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def write_report(
    evidence: Evidence,
    out: str | Path,
    *,
    predictor: str = "none",
    caveats: Sequence[str] = (),
    force: bool = False,
    with_json: bool = False,
) -> dict[str, Any]:
    """Write the report directory ``out``: ``index.html``, one PNG per plot and, with
    ``with_json``, ``report.json`` holding the numbers behind every plot.

    The directory appears only once complete; an existing one is replaced only with
    ``force``. ``caveats`` are what a reader of the predictions' scores must know (see
    :func:`arenajudge.evaluate.score_caveats`), shown beside them. Returns the summary
    (data, rows, predictor, sections, plots, metrics, warnings).

    Raises
    ------
    DataError
        The battles have no labels.
    MissingDependencyError
        matplotlib is not installed.
    """
    battles = evidence.battles
    if not battles.labelled:
        raise DataError(
            "has no labels; the report compares predictions with votes "
            "(winner_model_a, winner_model_b, winner_tie)",
            file=battles.path,
        )
    for name in ("proba", "swapped_proba"):
        value = getattr(evidence, name)
        if value is not None and np.shape(value) != (len(battles), 3):
            raise ValueError(f"{name} must have shape ({len(battles)}, 3), got {np.shape(value)}")
    sections = all_sections(evidence)
    summary = _summary(evidence, predictor, sections, caveats)
    with atomic_path(out, force, kind="directory", output="report") as staged:
        staged.mkdir()
        for section in sections:
            if section.has_plot and section.draw is not None:  # has_plot: draw is set
                save_plot(section.draw, section.numbers, staged / section.image)
        page = render_page(
            f"arenajudge report: {Path(str(battles.path)).name}",
            _summary_rows(summary),
            sections,
            f"arenajudge {__version__} · predictions: {predictor}",
        )
        (staged / "index.html").write_text(page, encoding="utf-8")
        if with_json:
            numbers = {"summary": summary, "sections": {s.key: s.numbers for s in sections}}
            (staged / "report.json").write_text(
                json.dumps(_json_ready(numbers), indent=2, ensure_ascii=False), encoding="utf-8"
            )
    return summary
