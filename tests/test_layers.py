"""Layers point one way, checked on the source: ``data/`` reads and imports nothing above
it, ``features/`` does not import ``models/``, backends never import the registry, and no
module imports another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "arenajudge"
BOTTOM = {"arenajudge.errors", "arenajudge.hashing", "arenajudge.safe_json", "arenajudge.timing"}
"""Modules with no arenajudge imports of their own, which every layer may use."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) of every import in ``path``, lazy ones too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "arenajudge":
            # `from arenajudge import safe_json` imports the module arenajudge.safe_json
            found += [(f"arenajudge.{alias.name}", [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return found


def _arenajudge_imports(package: str) -> list[tuple[str, str, int]]:
    return [
        (_module_name(path), module, line)
        for path in sorted((SRC / package).rglob("*.py"))
        for module, _, line in _imports(path)
        if module.startswith("arenajudge")
    ]


def _within(module: str, allowed: set[str], prefixes: tuple[str, ...]) -> bool:
    return module in allowed or module.startswith(prefixes)


def test_data_imports_only_data_and_the_bottom_layer():
    above = [
        f"{where}:{line} imports {module}"
        for where, module, line in _arenajudge_imports("data")
        if not _within(module, BOTTOM | {"arenajudge.data"}, ("arenajudge.data.",))
    ]
    assert above == []


def test_features_do_not_import_models_or_anything_above():
    higher = ("arenajudge.models", "arenajudge.cli", "arenajudge.engines", "arenajudge.serve")
    above = [
        f"{where}:{line} imports {module}"
        for where, module, line in _arenajudge_imports("features")
        if module.startswith(higher)
    ]
    assert above == []


def test_backends_never_import_the_registry():
    importers = [
        f"{where}:{line}"
        for where, module, line in _arenajudge_imports("models")
        if module == "arenajudge.models.registry" and where != "arenajudge.models.registry"
    ]
    assert importers == []


def test_no_module_imports_a_private_name_of_another():
    private = [
        f"{_module_name(path)}:{line} imports {name} from {module}"
        for path in sorted(SRC.rglob("*.py"))
        for module, names, line in _imports(path)
        if module.startswith("arenajudge")
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


@pytest.mark.parametrize("package", ["data", "features", "models"])
def test_the_checks_see_the_imports(package):
    """The parser finds imports at all (a check that finds none could never fail)."""
    assert _arenajudge_imports(package)
