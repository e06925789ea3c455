"""The ClickHouse schema: the DDL files shipped inside this package (ddl/*.sql), applied in file order at start
(idempotent). They are package data, so an installed voicebus has them too; without them nothing can be stored,
so a missing file is an error, not an empty schema."""

from __future__ import annotations

import re
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from streams.telemetry.stored import migrate

_COMMENT = re.compile(r"^\s*--.*$", re.MULTILINE)


class SchemaMissing(RuntimeError):
    """The DDL files are not where the package says they are (a broken install)."""


def ddl_files() -> list[Traversable]:
    root = resources.files(__package__) / "ddl"
    files = sorted((f for f in root.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name) \
        if root.is_dir() else []
    if not files:
        raise SchemaMissing(f"no ClickHouse DDL (*.sql) in {root}: the voicebus install is incomplete "
                            "(the package data streams/telemetry/ddl was not installed)")
    return files


def statements() -> list[str]:
    """Every statement of every .sql file, in file name order. Each ends with ';' at the end of a line."""
    out: list[str] = []
    for f in ddl_files():
        text = _COMMENT.sub("", f.read_text())
        out += [s.strip() for s in re.split(r";\s*$", text, flags=re.MULTILINE) if s.strip()]
    return out


def apply_schema(client: Any) -> int:
    """Create what is missing, then fill what an older version left empty; returns the number of statements run."""
    stmts = statements()
    for stmt in stmts:
        client.command(stmt)
    migrate(client)
    return len(stmts)
