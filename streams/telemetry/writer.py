"""The one ClickHouse connection of a process, used from one thread: batch inserts and named queries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from clickhouse_connect.driver.exceptions import DataError

from runtime.clickhouse import connect
from streams.telemetry import queries
from streams.telemetry.rows import COLUMNS, Row
from streams.telemetry.schema import apply_schema
from streams.telemetry.stored import store, turns_in

T = TypeVar("T")

# Raw tables first: the views that aggregate turns fire on their inserts.
WRITE_ORDER = tuple(COLUMNS)
# The client could not serialise the rows into the columns' types (a value out of a column's range, a wrong
# type): the rows' fault, found before anything reaches ClickHouse. Any other error is ClickHouse's (down,
# refusing writes): the whole batch is retried.
ROW_ERRORS = (DataError, TypeError, ValueError, OverflowError)
Rejected = tuple[str, int, str]  # table, index of the row in its list, error


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

    async def write(self, rows: Mapping[str, list[Row]]) -> list[Rejected]:
        """Insert every row that can be; return those that cannot (a poison row never blocks the others). A
        failure of ClickHouse itself raises: nothing is known to be written, the caller retries the batch (every
        write is idempotent)."""

        def _write() -> list[Rejected]:
            rejected: list[Rejected] = []
            for table in WRITE_ORDER:
                if rows.get(table):
                    rejected += self._insert(table, rows[table], 0)
            # Once the raw rows are in: the latency rows of their turns, again (not of rejected rows' turns:
            # their keys may be what ClickHouse cannot take).
            store(self.client, turns_in(rows, skip={(table, i) for table, i, _ in rejected}))
            return rejected

        return await self._call(_write)

    def _insert(self, table: str, rows: list[Row], first: int) -> list[Rejected]:
        """On the worker thread: insert, and on a row error split the rows in halves down to the culprits."""
        try:
            self.client.insert(table, rows, column_names=COLUMNS[table])
            return []
        except ROW_ERRORS as exc:
            if len(rows) == 1:
                return [(table, first, f"{type(exc).__name__}: {exc}")]
        half = len(rows) // 2
        return self._insert(table, rows[:half], first) + self._insert(table, rows[half:], first + half)

    async def query(self, name: str, params: Mapping[str, Any]) -> queries.Result:
        return await self._call(queries.execute, self.client, name, params)

    async def close(self) -> None:
        if self.client is not None:
            await self._call(self.client.close)
        self._executor.shutdown(wait=True)
