"""One way to reach ClickHouse: clickhouse-connect with a DSN (chdb://PATH embedded, http://... server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import clickhouse_connect


def connect(dsn: str) -> Any:
    """A clickhouse-connect client. chDB allows one process per data directory."""
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn)
