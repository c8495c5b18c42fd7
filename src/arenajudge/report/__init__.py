"""The HTML evaluation report: ``index.html`` plus PNG plots, readable offline."""

from arenajudge.report.build import write_report
from arenajudge.report.sections import Evidence, Section

__all__ = ["Evidence", "Section", "write_report"]
