"""The docs site's sources: every page is in the navigation and holds real content.

`mkdocs build --strict` (CI) renders them; these checks need no MkDocs install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MIN_WORDS = 100  # a page shorter than this is a placeholder (cli.md's body is generated)


def _nav_pages(items) -> set[str]:
    pages = set()
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages |= _nav_pages(value) if isinstance(value, list) else {value}
    return pages


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    nav = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    written = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    generated = {"api/index.md"}  # scripts/mkdocs_hooks.py writes the API pages
    assert nav == written | generated


def test_no_page_is_a_placeholder():
    for page in (ROOT / "docs").rglob("*.md"):
        words = len(page.read_text(encoding="utf-8").split())
        assert words >= MIN_WORDS, f"{page.name} has only {words} words"


def test_the_api_reference_covers_every_public_module():
    spec = importlib.util.spec_from_file_location(
        "mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py"
    )
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    names = {name for name, _ in hooks.public_modules()}
    assert {
        "arenajudge",
        "arenajudge.datasets",
        "arenajudge.env",
        "arenajudge.models.gbdt",
        "arenajudge.evaluate",
    } <= names
    assert not any(part.startswith("_") for name in names for part in name.split("."))
    assert not any(name.startswith("arenajudge.cli") for name in names)
