"""The report page: one self-contained HTML file (inline CSS) next to its PNG plots."""

from __future__ import annotations

from html import escape
from typing import Any

from arenajudge.report.sections import Section

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
nav a { margin-right: .9em; white-space: nowrap; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td { overflow-wrap: anywhere; }
td.text { white-space: pre-wrap; max-width: 22em; font-size: .85em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { color: #555; }
footer { margin-top: 3em; color: #888; font-size: .85em; }
"""


def _table(rows: list[dict[str, Any]], text_columns: frozenset[str] = frozenset()) -> str:
    if not rows:
        return ""
    header = "".join(f"<th>{escape(str(name))}</th>" for name in rows[0])
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="text">{escape(str(value))}</td>'
            if name in text_columns
            else f"<td>{escape(str(value))}</td>"
            for name, value in row.items()
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _section(section: Section) -> str:
    parts = [f'<section id="{escape(section.key)}">', f"<h2>{escape(section.title)}</h2>"]
    if section.note:
        parts.append(f'<p class="note">{escape(section.note)}</p>')
    if section.has_plot:
        parts.append(f'<img src="{escape(section.image)}" alt="{escape(section.title)}">')
    parts.append(_table(section.table, frozenset({"prompt", "response A", "response B"})))
    parts.append("</section>")
    return "\n".join(parts)


def render_page(
    title: str, summary: list[dict[str, str]], sections: list[Section], footer: str
) -> str:
    """The whole ``index.html``; every text from the data is HTML-escaped."""
    nav = " ".join(f'<a href="#{escape(s.key)}">{escape(s.title)}</a>' for s in sections)
    body = "\n".join(_section(s) for s in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{escape(title)}</h1>
{_table(summary)}
<nav>{nav}</nav>
{body}
<footer>{escape(footer)}</footer>
</body>
</html>
"""
