"""The ClickHouse schema in infra/clickhouse/*.sql, applied in file order at start (idempotent)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).resolve().parents[2] / "infra" / "clickhouse"

_COMMENT = re.compile(r"^\s*--.*$", re.MULTILINE)


def statements(sql_dir: Path = SQL_DIR) -> list[str]:
    """Every statement of every .sql file, in file name order. Each ends with ';' at the end of a line."""
    out: list[str] = []
    for path in sorted(sql_dir.glob("*.sql")):
        text = _COMMENT.sub("", path.read_text())
        out += [s.strip() for s in re.split(r";\s*$", text, flags=re.MULTILINE) if s.strip()]
    return out


def apply_schema(client: Any, sql_dir: Path = SQL_DIR) -> int:
    """Create what is missing; returns the number of statements run."""
    stmts = statements(sql_dir)
    for stmt in stmts:
        client.command(stmt)
    return len(stmts)
