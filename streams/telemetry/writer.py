"""The one ClickHouse connection of a process, used from one thread: batch inserts and named queries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from runtime.clickhouse import connect
from streams.telemetry import queries
from streams.telemetry.rows import COLUMNS, Row
from streams.telemetry.schema import apply_schema
from streams.telemetry.stored import store, turns_in

T = TypeVar("T")

# Raw tables first: the views that aggregate turns fire on their inserts.
WRITE_ORDER = tuple(COLUMNS)


class ClickHouse:
    """clickhouse-connect blocks: every call runs on one worker thread so the event loop keeps consuming."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.client: Any = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def open(self) -> int:
        """Connect and apply the schema; returns the number of schema statements run."""

        def _open() -> int:
            self.client = connect(self.dsn)
            return apply_schema(self.client)

        return await self._call(_open)

    async def write(self, rows: Mapping[str, list[Row]]) -> None:
        def _write() -> None:
            for table in WRITE_ORDER:
                if rows.get(table):
                    self.client.insert(table, rows[table], column_names=COLUMNS[table])
            store(self.client, turns_in(rows))  # once the raw rows are in: the turns' latency rows, again

        await self._call(_write)

    async def query(self, name: str, params: Mapping[str, Any]) -> queries.Result:
        return await self._call(queries.execute, self.client, name, params)

    async def close(self) -> None:
        if self.client is not None:
            await self._call(self.client.close)
        self._executor.shutdown(wait=True)
