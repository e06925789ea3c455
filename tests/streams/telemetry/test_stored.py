"""Stored latency rows (turn_latencies): what is read equals what ClickHouse computes from the raw rows, however
the turn's events were split into batches, and a database from before the table is filled on upgrade."""

from __future__ import annotations

import time

import numpy as np
import pytest

from runtime.clickhouse import connect
from streams.telemetry.backend import Direct
from streams.telemetry.rows import COLUMNS, TurnDays, to_row
from streams.telemetry.schema import apply_schema
from streams.telemetry.writer import ClickHouse
from tests.streams.telemetry.synthetic import make_turns

pytestmark = pytest.mark.integration

NOW = time.time_ns()
TURNS = make_turns(60, NOW, np.random.default_rng(21), age_s=(60, 3000))


def batches(n: int, rng: np.random.Generator) -> list[dict[str, list[tuple]]]:
    """Every event of TURNS as rows, dealt at random into n batches (a turn's events land in several)."""
    out: list[dict[str, list[tuple]]] = [{} for _ in range(n)]
    days = TurnDays()
    for turn in TURNS:
        for event in turn.events():
            table, row = to_row(event, days)
            out[rng.integers(n)].setdefault(table, []).append(row)
    return out


def read_all(client, source: str) -> tuple[list[str], list[tuple]]:
    result = client.query(f"SELECT * FROM {source} ORDER BY turn_day, turn_id")
    return list(result.column_names), result.result_rows


async def test_the_rows_read_are_the_rows_computed_from_every_stage_however_they_were_batched(chdb_dsn):
    clickhouse = ClickHouse(chdb_dsn)
    await clickhouse.open()
    try:
        for batch in batches(4, np.random.default_rng(1)):
            await clickhouse.write(batch)
    finally:
        await clickhouse.close()
    client = connect(chdb_dsn)
    stored, live = read_all(client, "turn_latency"), read_all(client, "turn_latency_live")
    assert stored[0] == live[0]  # same columns in the same order: the stored row is the computed one
    assert len(stored[1]) == len(TURNS) and stored[1] == live[1]
    # Stored more than once (a row per batch that touched the turn), read once.
    assert client.query("SELECT count() FROM turn_latencies").result_rows[0][0] > len(TURNS)


async def test_a_database_made_before_turn_latencies_is_filled_on_upgrade(chdb_dsn):
    client = connect(chdb_dsn)
    apply_schema(client)
    # The layout of an older voicebus: the raw tables and `turns`, and turn_latency computed on every read.
    live_sql = client.query("SELECT as_select FROM system.tables WHERE name = 'turn_latency_live' "
                            "AND database = currentDatabase()").result_rows[0][0]
    client.command("DROP TABLE latency_by_minute_refresh")
    client.command("DROP VIEW turn_latency")
    client.command("DROP TABLE turn_latencies")
    client.command("DROP TABLE migrations")
    client.command("DROP VIEW turn_latency_live")
    client.command(f"CREATE VIEW turn_latency AS {live_sql}")
    for batch in batches(1, np.random.default_rng(2)):
        for table, rows in batch.items():
            client.insert(table, rows, column_names=COLUMNS[table])
    assert client.query("SELECT count() FROM turn_latency").result_rows[0][0] == len(TURNS)
    client.close()

    backend = Direct(chdb_dsn)  # `voicebus ops` after the upgrade: it applies the schema, which migrates
    result = backend.run("latency", {"since_s": None, "by": "none"})
    client = backend.client
    assert client.query("SELECT count() FROM turn_latencies").result_rows[0][0] == len(TURNS)
    v2v = [v for t in TURNS if (v := t.latencies()["voice_to_voice_ms"]) is not None]
    row = result.records()[0]
    assert row["turns"] == len(TURNS) and row["count(voice_to_voice_ms)"] == len(v2v)
    assert list(row["quantilesExactInclusive(0.5, 0.95, 0.99)(voice_to_voice_ms)"]) == pytest.approx(
        np.percentile(v2v, [50, 95, 99]), rel=1e-9)
    # Once only: a turn's row that went missing later is not filled again at the next start.
    client.command("TRUNCATE TABLE turn_latencies")
    apply_schema(client)
    assert client.query("SELECT count() FROM turn_latencies").result_rows[0][0] == 0
