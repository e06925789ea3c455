"""The layers: every import points down, and the services never import each other.

    voicebus (CLI, supervisor)  ->  bench  ->  ingest | streams | inference  ->  runtime  ->  schemas
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "runtime", "ingest", "streams", "inference", "bench", "voicebus")
SERVICES = {"ingest", "streams", "inference"}
# What each package may import from the project (besides itself).
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "runtime": {"schemas"},
    "ingest": {"schemas", "runtime"},
    "streams": {"schemas", "runtime"},
    "inference": {"schemas", "runtime"},
    "bench": {"schemas", "runtime", *SERVICES},
    "voicebus": {"schemas", "runtime", *SERVICES, "bench"},
}


def imports(path: Path) -> list[tuple[int, str]]:
    """Every project package a module imports (at its top or inside a function), with the line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        found += [(node.lineno, n.split(".")[0]) for n in names if n.split(".")[0] in PACKAGES]
    return found


def violations(package: str) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, target in imports(path):
            if target != package and target not in ALLOWED[package]:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down(package: str) -> None:
    assert violations(package) == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from ingest.server import main\nimport schemas.base\nfrom . import x\n")
    assert sorted(imports(module)) == [(2, "ingest"), (3, "schemas")]
