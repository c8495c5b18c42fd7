"""Battles: schema, readers, validation and folds."""

from arenajudge.data.folds import folds, prompt_groups
from arenajudge.data.readers import parse_columns_option, read_battles, read_table
from arenajudge.data.schema import LABELS, Battles, join_turns, swap_proba
from arenajudge.data.validation import ValidationReport, validate

__all__ = [
    "LABELS",
    "Battles",
    "ValidationReport",
    "folds",
    "join_turns",
    "parse_columns_option",
    "prompt_groups",
    "read_battles",
    "read_table",
    "swap_proba",
    "validate",
]
