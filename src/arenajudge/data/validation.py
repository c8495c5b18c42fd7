"""`arenajudge validate`: what a battles file holds and what is wrong with it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arenajudge.data.frame_reader import Problems
from arenajudge.data.readers import load_battles
from arenajudge.data.schema import LABELS, Battles, join_turns
from arenajudge.errors import DataError

PERCENTILES = (50, 90, 99, 100)
LAYOUT_NAMES = {
    "kaggle": "battles (prompt, response_a, response_b)",
    "arena": "arena conversations (conversation_a, conversation_b)",
    "pairs": "preference pairs (prompt, chosen, rejected)",
    "alpaca": "AlpacaEval annotations (instruction, output_1, output_2)",
    "votes": "votes only (model_a, model_b and labels, no texts)",
}
"""How ``validate`` names each layout :func:`~arenajudge.data.readers.parse_frame` detects."""
VOTES_ONLY_USE = (
    "leaderboard only (from the votes: without --model or --style-control); "
    "every other command needs the texts"
)
LABELLED_USE = "every command"
UNLABELLED_USE = (
    "predict, embed, pseudo-label, and leaderboard or winrate with --model; "
    "not train, cv, evaluate, report, ensemble or cascade (they need labels)"
)


@dataclass
class ValidationReport:
    """Summary of one battles file; ``errors`` empty means the file is usable."""

    file: str
    layout: str = ""
    usable_by: str = ""
    rows: int = 0
    labelled: bool = False
    soft_labels: int = 0
    class_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LABELS, 0))
    multi_turn_share: float = 0.0
    max_turns: int = 0
    empty_responses: int = 0
    identical_responses: int = 0
    distinct_prompts: int = 0
    duplicate_prompt_rows: int = 0
    models: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    length_percentiles: dict[str, dict[str, int]] = field(default_factory=dict)
    repaired_surrogates: int = 0
    errors: list[str] = field(default_factory=list)
    n_errors: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.n_errors == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "valid": self.valid}


def _char_percentiles(texts: list[str]) -> dict[str, int]:
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return {f"p{q}": int(np.percentile(lengths, q)) for q in PERCENTILES}


def _usable_by(battles: Battles) -> str:
    if battles.layout == "votes":
        return VOTES_ONLY_USE
    return LABELLED_USE if battles.labelled else UNLABELLED_USE


def _summarise(battles: Battles, report: ValidationReport, problems: Problems) -> None:
    report.rows = len(battles)
    report.layout = LAYOUT_NAMES.get(battles.layout or "", str(battles.layout))
    report.usable_by = _usable_by(battles)
    report.labelled = battles.labelled
    if battles.target is not None:  # labelled
        target = battles.target
        report.soft_labels = int((target.max(axis=1) < 1).sum())
        counts = np.bincount(battles.label, minlength=len(LABELS))
        report.class_counts = {label: int(c) for label, c in zip(LABELS, counts)}
    if battles.model_a is not None and battles.model_b is not None:  # has_models
        report.models = len((set(battles.model_a) | set(battles.model_b)) - {""})
    if battles.source is not None:
        names, counts = np.unique(battles.source, return_counts=True)
        report.sources = {str(k): int(v) for k, v in zip(names, counts)}
    report.repaired_surrogates = battles.repaired_surrogates
    if battles.layout != "votes":  # votes only have no texts to measure
        _summarise_texts(battles, report, problems)


def _summarise_texts(battles: Battles, report: ValidationReport, problems: Problems) -> None:
    n = len(battles)
    turns = np.array(
        [
            max(len(p), len(a), len(b))
            for p, a, b in zip(battles.prompt, battles.response_a, battles.response_b)
        ]
    )
    report.multi_turn_share = round(float((turns > 1).mean()), 4)
    report.max_turns = int(turns.max())
    texts_a = [join_turns(t) for t in battles.response_a]
    texts_b = [join_turns(t) for t in battles.response_b]
    prompts = [join_turns(t) for t in battles.prompt]
    empty = np.array([not a.strip() or not b.strip() for a, b in zip(texts_a, texts_b)])
    identical = np.array([a == b for a, b in zip(texts_a, texts_b)])
    report.empty_responses = int(empty.sum())
    report.identical_responses = int(identical.sum())
    report.distinct_prompts = len(set(prompts))
    report.duplicate_prompt_rows = n - report.distinct_prompts
    report.length_percentiles = {
        "prompt_chars": _char_percentiles(prompts),
        "response_chars": _char_percentiles(texts_a + texts_b),
    }
    if problems.n_errors:
        return  # cells that failed to parse read as empty: their warnings would mislead
    mismatched = sum(len(a) != len(b) for a, b in zip(battles.response_a, battles.response_b))
    for count, what in (
        (report.empty_responses, "have an empty response"),
        (report.identical_responses, "have identical responses A and B"),
        (mismatched, "have different turn counts in response_a and response_b"),
    ):
        if count:
            problems.warn(f"{count} of {n} rows {what}")


def validate(
    path: str | Path, *, format: str | None = None, columns: Mapping[str, str] | None = None
) -> ValidationReport:
    """Read ``path`` and report its layout, which commands can use it, its contents and
    every problem found; never raises for problems in the file itself (they are in
    ``report.errors``). A votes-only file is valid: the leaderboard reads it."""
    report = ValidationReport(file=str(path))
    problems = Problems(str(path))
    try:
        battles = load_battles(path, problems, format=format, columns=columns, needs_texts=False)
    except DataError as exc:
        battles = None
        problems.errors.append(exc)
        problems.n_errors += 1
    if battles is not None:
        _summarise(battles, report, problems)
    report.errors = [str(e) for e in problems.errors]
    report.n_errors = problems.n_errors
    report.warnings = list(problems.warnings)
    return report
