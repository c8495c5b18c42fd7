"""MkDocs hook: one API reference page per public module of ``arenajudge``.

Pages are generated at build time from the package tree, so a new or renamed module
appears in the docs without editing them; ``mkdocstrings`` renders each from its
docstrings. The command line has its own page (``cli.md``, from ``--help``), so
``arenajudge.cli`` is left out here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "arenajudge"
SECTION = "Python API"
SKIPPED = ("arenajudge.cli", "arenajudge.__main__")


def public_modules() -> list[tuple[str, str]]:
    """(dotted name, first docstring line) of every module without a private part."""
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if any(p.startswith("_") for p in parts) or name.startswith(SKIPPED):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        modules.append((name, doc.strip().splitlines()[0] if doc.strip() else ""))
    return modules


def _page(name: str) -> str:
    return f"api/{name}.md"


def on_config(config):
    nav = config["nav"]
    for index, item in enumerate(nav):
        if isinstance(item, dict) and SECTION in item:
            nav[index] = {
                SECTION: ["api/index.md"] + [{name: _page(name)} for name, _ in public_modules()]
            }
    return config


def on_files(files, config):
    from mkdocs.structure.files import File  # here: tests read this file without MkDocs

    rows = "\n".join(f"| [`{name}`]({name}.md) | {summary} |" for name, summary in public_modules())
    index = (
        "# Python API\n\nEvery public module of the package, rendered from its "
        "docstrings. The command line is documented in the "
        "[CLI reference](../cli.md).\n\n| module | what it holds |\n|---|---|\n"
        f"{rows}\n"
    )
    files.append(File.generated(config, "api/index.md", content=index))
    for name, _ in public_modules():
        page = f"# `{name}`\n\n::: {name}\n"
        files.append(File.generated(config, _page(name), content=page))
    return files
