"""Each turn's latency row, stored (turn_latencies) so that reads over millions of turns stay fast.

ClickHouse computes a turn's row from its stages and decisions (the turn_latency_live view over `turns`); no
insert-triggered view can know when a turn is complete, because its stages come from several services in any
order. So the sink stores the row again after every batch that brought news of the turn, and the newest row is
kept: once the turn's last stage is in, its row is final. A database made before turn_latencies existed is
filled from `turns` once (``migrate``), as is one whose filling was interrupted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Set
from datetime import date
from typing import Any

from streams.telemetry.rows import STAGE_EVENTS, TURN_DECISIONS, Row

log = logging.getLogger(__name__)

KEYS_PER_INSERT = 5000  # turns per INSERT ... SELECT (the keys travel in the SQL text)
BACKFILL = "turn_latencies from turns"  # the migration's name in the migrations table

# Followed by a WHERE that picks the turns (by primary key: a lookup, not a scan of `turns`).
STORE_SQL = "INSERT INTO turn_latencies SELECT *, now64(9) FROM turn_latency_live"


def turns_in(rows: Mapping[str, list[Row]], skip: Set[tuple[str, int]] = frozenset()) -> set[tuple[date, str]]:
    """The (turn_day, turn_id) of every turn a batch of rows brings news of, but for the rows ``skip`` names
    (table, index)."""
    return {(row[0], row[1]) for table in (STAGE_EVENTS, TURN_DECISIONS)
            for i, row in enumerate(rows.get(table, ())) if (table, i) not in skip}


def store(client: Any, turns: Iterable[tuple[date, str]]) -> None:
    """Compute and store the rows of these turns (their primary keys: a lookup, not a scan)."""
    keys = sorted(turns)
    for i in range(0, len(keys), KEYS_PER_INSERT):
        client.command(f"{STORE_SQL} WHERE (turn_day, turn_id) IN %(keys)s",
                       parameters={"keys": keys[i:i + KEYS_PER_INSERT]})


def migrate(client: Any) -> None:
    """Store the rows of the turns that have none, once per database (recorded in the migrations table)."""
    if client.query("SELECT count() FROM migrations WHERE name = %(name)s",
                    parameters={"name": BACKFILL}).result_rows[0][0]:
        return
    t0 = time.monotonic()
    client.command(f"{STORE_SQL} WHERE (turn_day, turn_id) NOT IN (SELECT turn_day, turn_id FROM turn_latencies)",
                   settings={"max_partitions_per_insert_block": 0})  # a database may span any number of days
    client.command("INSERT INTO migrations VALUES (%(name)s, now64(3))", parameters={"name": BACKFILL})
    stored = client.query("SELECT count() FROM turn_latencies").result_rows[0][0]
    if stored:
        log.info("stored the latency rows of %d turns made before turn_latencies existed, in %.1f s", stored,
                 time.monotonic() - t0)
