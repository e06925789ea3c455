"""The telemetry sink on the real broker and chDB: rows out, no double counts, pause/resume on failure."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

import aiohttp
import numpy as np
import pytest
from aiokafka import TopicPartition

from runtime.clickhouse import connect
from runtime.kafka import make_consumer, make_producer
from schemas.topics import SESSIONS, TELEMETRY, TURNS
from streams.telemetry.settings import TelemetrySettings
from streams.telemetry.sink import TelemetrySink
from tests.conftest import free_port
from tests.metrics import histogram_is_whole, scrape
from tests.streams.telemetry.synthetic import MS, make_turns, session_events

pytestmark = pytest.mark.integration

NOW = time.time_ns()
TURNS_IN = make_turns(40, NOW, np.random.default_rng(5), sessions=4)
SESSION_IDS = sorted({t.session_id for t in TURNS_IN})


def settings_for(topics, dsn: str, group: str = "telemetry-test") -> TelemetrySettings:
    return TelemetrySettings(
        kafka_bootstrap=topics.settings.kafka_bootstrap,
        topic_prefix=topics.prefix,
        clickhouse_dsn=dsn,
        telemetry_group_id=group,
        telemetry_batch_rows=200,
        telemetry_batch_seconds=0.2,
        telemetry_retry_initial_s=0.05,
        telemetry_retry_max_s=0.3,
        telemetry_query_port=0,
    )


async def produce(topics, times: int = 1) -> int:
    """Every event of TURNS_IN and of their sessions, `times` times; returns the stored rows per round."""
    producer = make_producer(topics.settings)
    await producer.start()
    events = [(TELEMETRY if e.type == "stage_stamped" else TURNS, e) for t in TURNS_IN for e in t.events()]
    events += [
        (SESSIONS, e) for sid in SESSION_IDS for e in session_events(sid, "edge-0", NOW - 60_000 * MS, NOW)
    ]
    try:
        for _ in range(times):
            for spec, event in events:
                await producer.send(
                    topics.name(spec.name), spec.codec.encode(event), key=event.session_id.encode()
                )
        await producer.flush()
    finally:
        await producer.stop()
    return len(events)


@asynccontextmanager
async def running(settings: TelemetrySettings):
    sink = TelemetrySink(settings)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(sink.run(stop, ready))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        yield sink
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def latencies(dsn: str) -> dict[str, dict]:
    client = connect(dsn)
    result = client.query(
        "SELECT turn_id, endpointing_ms, voice_to_voice_ms, model_ms, platform_overhead_ms, "
        "barge_in_reaction_ms FROM turn_latency"
    )
    return {row[0]: dict(zip(result.column_names[1:], row[1:], strict=True)) for row in result.result_rows}


def check_turns(dsn: str) -> None:
    got = latencies(dsn)
    assert set(got) == {t.turn_id for t in TURNS_IN}
    for turn in TURNS_IN:
        assert got[turn.turn_id] == pytest.approx(turn.latencies()), turn.turn_id


def check_counts(dsn: str) -> None:
    client = connect(dsn)
    stages = sum(len(t.stages) for t in TURNS_IN)
    assert client.query("SELECT count() FROM stage_events FINAL").result_rows[0][0] == stages
    assert client.query("SELECT count() FROM turn_latency").result_rows[0][0] == len(TURNS_IN)
    committed = sum("committed" in t.decisions for t in TURNS_IN)
    assert client.query("SELECT countIf(was_committed = 1) FROM turn_latency").result_rows[0][0] == committed
    sessions = client.query(
        "SELECT session_id, node_id, end_reason, frames_in, dateDiff('ns', started, ended) "
        "FROM sessions FINAL ORDER BY session_id"
    ).result_rows
    assert sessions == [(sid, "edge-0", "client_closed", 500, 60_000 * MS) for sid in SESSION_IDS]


async def committed_offsets(settings: TelemetrySettings) -> int:
    """Sum of the group's committed offsets over the three source topics."""
    consumer = make_consumer(settings, group_id=settings.telemetry_group_id)
    await consumer.start()
    try:
        total = 0
        for spec in (TELEMETRY, TURNS, SESSIONS):
            for p in range(spec.partitions):
                total += await consumer.committed(TopicPartition(settings.topic(spec.name), p)) or 0
        return total
    finally:
        await consumer.stop()


async def test_events_in_the_right_rows_out(topics, chdb_dsn):
    await topics.create_all()
    rows = await produce(topics)
    settings = settings_for(topics, chdb_dsn)
    async with running(settings) as sink:
        await sink.wait_for(lambda s: s.rows_written >= rows, 30)
    check_turns(chdb_dsn)
    check_counts(chdb_dsn)
    assert await committed_offsets(settings) == rows


async def test_redelivered_events_do_not_double_count(topics, chdb_dsn):
    await topics.create_all()
    rows = await produce(topics, times=2)  # a producer retrying: every event twice on the topic
    async with running(settings_for(topics, chdb_dsn)) as sink:
        await sink.wait_for(lambda s: s.rows_written >= 2 * rows, 30)
    # A new group reads every offset again: redelivery of all of it, to the same tables.
    async with running(settings_for(topics, chdb_dsn, group="telemetry-replay")) as sink:
        await sink.wait_for(lambda s: s.rows_written >= 2 * rows, 30)
    check_turns(chdb_dsn)
    check_counts(chdb_dsn)


async def test_clickhouse_failure_pauses_then_resumes_without_loss(topics, chdb_dsn):
    await topics.create_all()
    settings = settings_for(topics, chdb_dsn)
    async with running(settings) as sink:
        # The real engine refuses every insert into stage_events until the constraint is dropped.
        admin = connect(chdb_dsn)
        admin.command("ALTER TABLE stage_events ADD CONSTRAINT refuse_all CHECK 0")
        rows = await produce(topics)
        await sink.wait_for(lambda s: s.paused and s.write_failures >= 2, 30)
        assert sink.stats.rows_written == 0
        assert await committed_offsets(settings) == 0
        admin.command("ALTER TABLE stage_events DROP CONSTRAINT refuse_all")
        await sink.wait_for(lambda s: s.rows_written >= rows and not s.paused, 30)
    check_turns(chdb_dsn)
    check_counts(chdb_dsn)
    assert await committed_offsets(settings) == rows


async def test_sink_serves_metrics_beside_its_queries(topics, chdb_dsn):
    await topics.create_all()
    port = free_port()
    settings = settings_for(topics, chdb_dsn).model_copy(update={"telemetry_query_port": port})
    events = await produce(topics)  # one row each
    producer = make_producer(topics.settings)
    await producer.start()
    try:
        await producer.send_and_wait(topics.name(TELEMETRY.name), b"{not json", key=b"junk")
    finally:
        await producer.stop()
    async with running(settings) as sink:
        await sink.wait_for(lambda s: s.rows_written >= events and sink.metrics.dead_letters.value >= 1, 30)
        samples = await scrape(port)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 200 and (await resp.json())["ok"]
    assert samples["voicebus_telemetry_events_in_total"] == events + 1
    assert samples["voicebus_telemetry_dead_letters_total"] == 1
    assert samples["voicebus_telemetry_events_out_total"] == events  # rows written
    assert samples["voicebus_telemetry_pending_rows"] == 0 and samples["voicebus_telemetry_paused"] == 0
    assert samples["voicebus_telemetry_consumer_lag"] == 0
    histogram_is_whole(samples, "voicebus_telemetry_processing_ms")
    histogram_is_whole(samples, "voicebus_telemetry_write_ms")


def _out_of_range(event, **changes) -> bytes:
    """The event's JSON with fields set to values that decode as JSON but no column can hold."""
    import json

    return json.dumps({**json.loads(TELEMETRY.codec.encode(event)), **changes}).encode()


async def test_out_of_range_values_are_dead_lettered_and_the_rest_is_written(topics, chdb_dsn):
    """Issue 18: seq = 2**64 made the sink retry one batch forever; stage_wall_ns = 10**30 crashed it."""
    await topics.create_all()
    stamp = next(e for t in TURNS_IN for e in t.events() if e.type == "stage_stamped")
    poison = [_out_of_range(stamp, seq=2**64), _out_of_range(stamp, stage_wall_ns=10**30)]
    producer = make_producer(topics.settings)
    await producer.start()
    try:
        for value in poison:
            await producer.send_and_wait(topics.name(TELEMETRY.name), value, key=stamp.session_id.encode())
    finally:
        await producer.stop()
    rows = await produce(topics)
    settings = settings_for(topics, chdb_dsn)
    async with running(settings) as sink:
        await sink.wait_for(lambda s: s.rows_written >= rows, 30)
        assert sink.metrics.dead_letters.value == 2 and sink.tasks.healthy
    check_counts(chdb_dsn)
    assert await committed_offsets(settings) == rows + len(poison)


async def test_rows_that_cannot_be_inserted_are_set_aside_and_the_others_written(chdb_dsn):
    """A poison batch never blocks the sink: the writer splits a failing insert down to the rows at fault."""
    from streams.telemetry.rows import STAGE_EVENTS, TurnDays, to_row
    from streams.telemetry.writer import ClickHouse

    days = TurnDays()
    stamps = [e for t in TURNS_IN[:3] for e in t.events() if e.type == "stage_stamped"]
    rows = [to_row(e, days)[1] for e in stamps]
    rows.insert(3, rows[3][:10] + (2**64,))  # a seq no UInt64 holds
    rows.insert(7, rows[7][:5] + (10**30,) + rows[7][6:])  # a stage time no DateTime64 holds
    clickhouse = ClickHouse(chdb_dsn)
    await clickhouse.open()
    try:
        rejected = await clickhouse.write({STAGE_EVENTS: rows})
    finally:
        await clickhouse.close()
    assert [(table, i) for table, i, _ in rejected] == [(STAGE_EVENTS, 3), (STAGE_EVENTS, 7)]
    assert all("seq" in error or "stage_time" in error for _, _, error in rejected)
    count = connect(chdb_dsn).query("SELECT count() FROM stage_events FINAL").result_rows[0][0]
    assert count == len(stamps)
