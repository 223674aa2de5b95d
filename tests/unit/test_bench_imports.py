"""bench/ imports no test module, and the stand-ins neither tests nor bench: a bench's numbers must not move
when a test's harness does, and the stand-ins serve both (standins/__init__.py, bench/services.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def offending(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    return {str(path.relative_to(REPO)): bad for path in sorted((REPO / folder).rglob("*.py"))
            if (bad := sorted(m for m in imported_modules(path) if m.split(".")[0] in forbidden))}


@pytest.mark.parametrize(("folder", "forbidden"), [("bench", ("tests",)), ("standins", ("tests", "bench"))])
def test_imports_stay_on_their_side(folder: str, forbidden: tuple[str, ...]) -> None:
    assert offending(folder, forbidden) == {}


def test_the_check_sees_an_import_of_tests(tmp_path: Path) -> None:
    script = tmp_path / "bench.py"
    script.write_text("import os\nfrom tests.harness.ports import free_port\nimport tests.harness\n")
    assert imported_modules(script) >= {"tests.harness.ports", "tests.harness"}
