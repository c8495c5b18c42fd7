"""The HTML evaluation report: ``index.html`` plus PNG plots, readable offline."""

from arenajudge.report.build import read_oof, write_report
from arenajudge.report.sections import Evidence, Section

__all__ = ["Evidence", "Section", "read_oof", "write_report"]
