"""``arenajudge validate``."""

from __future__ import annotations

import sys

import click

from arenajudge.cli import EXIT_USER_ERROR, main
from arenajudge.cli.options import (
    data_argument,
    echo_json,
    format_option,
    input_options,
    read_options,
)
from arenajudge.data.validation import ValidationReport, validate

MAX_PRINTED_ERRORS = 20


def _render(report: ValidationReport) -> str:
    lines = [f"file: {report.file}"]
    if report.layout:
        lines += [f"layout: {report.layout}", f"usable by: {report.usable_by}"]
    lines += [f"rows: {report.rows:,}", f"labelled: {'yes' if report.labelled else 'no'}"]
    if report.labelled:
        total = max(report.rows, 1)
        lines += [
            f"  {label}: {count:,} ({count / total:.1%})"
            for label, count in report.class_counts.items()
        ]
        if report.soft_labels:
            lines.append(f"  soft-label rows: {report.soft_labels:,}")
    if report.length_percentiles:  # votes only have no texts: nothing to say of them
        lines += _text_lines(report)
    if report.models:
        lines.append(f"models: {report.models}")
    for source, count in report.sources.items():
        lines.append(f"source {source}: {count:,}")
    lines.append(f"repaired surrogates: {report.repaired_surrogates}")
    lines.append(f"valid: {'yes' if report.valid else f'no ({report.n_errors} errors)'}")
    return "\n".join(lines)


def _text_lines(report: ValidationReport) -> list[str]:
    lines = [
        f"multi-turn rows: {report.multi_turn_share:.1%} (max {report.max_turns} turns)",
        f"empty responses: {report.empty_responses:,}",
        f"identical A/B: {report.identical_responses:,}",
        f"distinct prompts: {report.distinct_prompts:,} "
        f"({report.duplicate_prompt_rows:,} rows repeat a prompt)",
    ]
    for name, percentiles in report.length_percentiles.items():
        values = ", ".join(f"{k} {v:,}" for k, v in percentiles.items())
        lines.append(f"{name}: {values}")
    return lines


@main.command("validate")
@data_argument
@input_options
@format_option
def validate_command(
    data: str, input_format: str | None, columns: str | None, output_format: str
) -> None:
    """Check a battles file, say its layout and which commands can use it, and summarise
    it; exit 2 if it has errors."""
    report = validate(data, **read_options(input_format, columns))
    if output_format == "json":
        echo_json(report.to_dict())
    else:
        click.echo(_render(report))
    for message in report.errors[:MAX_PRINTED_ERRORS]:
        click.echo(f"error: {message}", err=True)
    if report.n_errors > MAX_PRINTED_ERRORS:
        click.echo(
            f"error: {report.file}: {report.n_errors - MAX_PRINTED_ERRORS} more errors "
            "(see --format json)",
            err=True,
        )
    if not report.valid:
        sys.exit(EXIT_USER_ERROR)
