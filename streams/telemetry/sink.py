"""`voicebus telemetry`: voice.telemetry, voice.turns and voice.sessions -> ClickHouse, in batches.

A batch is written when it holds `telemetry_batch_rows` rows or its oldest row is `telemetry_batch_seconds`
old; offsets are committed only after it is written. When ClickHouse fails, the sink pauses its partitions and
retries
with backoff (keeping up its group membership), then resumes: nothing is dropped. Every write is idempotent
(ReplacingMergeTree raw tables, min/max turn aggregates), so a batch written twice counts once. A row that no
column can hold (the writer finds it by splitting the insert) goes to the dead-letter topic with its record;
the rest of the batch is written.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from runtime.kafka import make_consumer, make_producer, rewind
from runtime.metrics import Histogram, ServiceMetrics
from runtime.service import run_until_signal
from runtime.tasks import Supervisor
from schemas.dlq import dead_letter_for, decode_or_dead_letter
from schemas.topics import DLQ, SESSIONS, TELEMETRY, TURNS, spec_for
from streams.telemetry.rows import Row, TurnDays, to_row
from streams.telemetry.server import serve
from streams.telemetry.settings import TelemetrySettings
from streams.telemetry.writer import ClickHouse, Rejected

log = logging.getLogger(__name__)

CONSUMES = (TELEMETRY, TURNS, SESSIONS)


@dataclass
class Batch:
    rows: dict[str, list[Row]] = field(default_factory=dict)
    records: dict[str, list[Any]] = field(default_factory=dict)  # the record of each row, to dead-letter it
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to commit
    count: int = 0
    started: float = 0.0

    def add(self, tp: TopicPartition, record: Any, table_row: tuple[str, Row] | None) -> None:
        if not self.offsets:
            self.started = time.monotonic()
        self.offsets[tp] = record.offset + 1
        if table_row is not None:
            table, row = table_row
            self.rows.setdefault(table, []).append(row)
            self.records.setdefault(table, []).append(record)
            self.count += 1

    def due(self, max_rows: int, max_seconds: float) -> bool:
        return bool(self.offsets) and (
            self.count >= max_rows or time.monotonic() - self.started >= max_seconds
        )


class SinkMetrics(ServiceMetrics):
    def __init__(self) -> None:
        super().__init__("telemetry", out_help="Rows written to ClickHouse.")
        self.write_ms = Histogram("voicebus_telemetry_write_ms", "Time to write one batch to ClickHouse, ms.")


@dataclass
class Stats:
    rows_written: int = 0
    batches: int = 0
    write_failures: int = 0
    paused: bool = False


class TelemetrySink:
    def __init__(self, settings: TelemetrySettings) -> None:
        self.settings = settings
        self.clickhouse = ClickHouse(settings.dsn())
        self.stats = Stats()
        self._changed = asyncio.Condition()
        self._days = TurnDays()
        self._batch = Batch()
        self._producer: Any = None
        self.metrics = m = SinkMetrics()
        self.tasks = Supervisor(m, "voicebus_telemetry")
        m.gauge("voicebus_telemetry_pending_rows", "Rows waiting for their batch to be written.",
                lambda: self._batch.count)
        m.gauge("voicebus_telemetry_paused", "1 while ClickHouse writes fail and consumption is paused.",
                lambda: int(self.stats.paused))
        m.counter("voicebus_telemetry_write_failures_total", "Failed ClickHouse writes (each is retried).",
                  lambda: self.stats.write_failures)

    async def wait_for(self, predicate: Callable[[Stats], bool], timeout: float) -> None:
        """Until predicate(stats) holds (tests and benchmarks wait on it); TimeoutError after `timeout` s."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self.stats)), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        s = self.settings
        await self.clickhouse.open()
        runner = (
            await serve(self.clickhouse, s.telemetry_query_host, s.telemetry_query_port, self.metrics,
                        down=lambda: self.tasks.down)
            if s.telemetry_query_port
            else None
        )
        consumer = make_consumer(s, *(s.topic(spec.name) for spec in CONSUMES), group_id=s.telemetry_group_id)
        self.metrics.consumer = consumer
        self._producer = make_producer(s)
        await self._producer.start()
        await consumer.start()
        log.info("telemetry sink writing to %s", s.dsn())
        if ready is not None:
            ready.set()
        try:
            self.tasks.start("telemetry-consumer", lambda: self._consume(consumer, stop), until=stop)
            await self.tasks.join()
        finally:
            await self.tasks.stop()
            await consumer.stop()
            await self._producer.stop()
            if runner is not None:
                await runner.cleanup()
            await self.clickhouse.close()

    async def _consume(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """The sink's loop (supervised: runtime.tasks restarts it if it dies, from the first record it did not
        add to the batch)."""
        s = self.settings
        await rewind(consumer, self._batch.offsets)
        while not stop.is_set():
            await self._add(await consumer.getmany(timeout_ms=self._wait_ms(), max_records=s.telemetry_batch_rows))
            if self._batch.due(s.telemetry_batch_rows, s.telemetry_batch_seconds):
                await self._flush(consumer, stop)
        if self._batch.offsets:
            await self._flush(consumer, stop)

    def _wait_ms(self) -> int:
        """Until the batch is due by age (at most 0.5 s, so a stop is noticed)."""
        left = self.settings.telemetry_batch_seconds
        if self._batch.offsets:
            left = self._batch.started + left - time.monotonic()
        return int(min(max(left, 0.001), 0.5) * 1000)

    async def _add(self, records: dict[TopicPartition, list[Any]]) -> None:
        if not records:
            return
        t0 = time.perf_counter()
        self.metrics.consumed(records)
        for tp, batch in records.items():
            codec = spec_for(tp.topic.removeprefix(self.settings.topic_prefix)).codec
            for record in batch:
                event = await decode_or_dead_letter(
                    codec, record, self._producer, self.settings.topic(DLQ.name), consumer="telemetry"
                )
                if event is None:
                    self.metrics.dead_letters.inc()
                self._batch.add(tp, record, None if event is None else to_row(event, self._days))
        self.metrics.processing.observe((time.perf_counter() - t0) * 1000)

    async def _flush(self, consumer: AIOKafkaConsumer, stop: asyncio.Event) -> None:
        """Write the batch, retrying until it is written (or the sink stops); then commit its offsets."""
        s = self.settings
        delay = s.telemetry_retry_initial_s
        while True:
            try:
                t0 = time.perf_counter()
                rejected = await self.clickhouse.write(self._batch.rows)
                self.metrics.write_ms.observe((time.perf_counter() - t0) * 1000)
                break
            except Exception as exc:  # any ClickHouse failure: keep the rows, stop fetching, retry
                self.stats.write_failures += 1
                if not self.stats.paused:
                    log.warning(
                        "ClickHouse write of %d rows failed, pausing consumption: %s", self._batch.count, exc
                    )
                self.stats.paused = True
                consumer.pause(*consumer.assignment())
                await self._notify()
                if stop.is_set():
                    log.warning("stopping with %d unwritten rows; they will be read again", self._batch.count)
                    return
                # Polling paused partitions is the wait: it keeps group membership alive. Partitions assigned
                # meanwhile are paused too; what they already returned joins the batch.
                deadline = time.monotonic() + delay
                while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                    await self._add(await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000) + 1))
                    consumer.pause(*consumer.assignment())
                delay = min(delay * 2, s.telemetry_retry_max_s)
        await self._dead_letter(rejected)
        try:
            await consumer.commit(self._batch.offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Partitions moved to another member: it reads them again; the rewrite is idempotent.
            log.warning("offsets not committed after a rebalance: %s", exc)
        if self.stats.paused:
            consumer.resume(*consumer.assignment())
            self.stats.paused = False
            log.info("ClickHouse writes succeed again, consumption resumed")
        self.stats.rows_written += self._batch.count - len(rejected)
        self.metrics.events_out.inc(self._batch.count - len(rejected))
        self.stats.batches += 1
        self._batch = Batch()
        await self._notify()


    async def _dead_letter(self, rejected: list[Rejected]) -> None:
        """Rows no column can hold: their records to the dead-letter topic, before the offsets are committed."""
        for table, index, error in rejected:
            record = self._batch.records[table][index]
            letter = dead_letter_for(record, f"not insertable into {table}: {error}", consumer="telemetry")
            await self._producer.send_and_wait(self.settings.topic(DLQ.name), DLQ.codec.encode(letter),
                                               key=record.key)
            self.metrics.dead_letters.inc()
            log.warning("dead-lettered %s[%d]@%d: not insertable into %s: %s", record.topic, record.partition,
                        record.offset, table, error)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicebus telemetry", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    settings = TelemetrySettings()
    return run_until_signal(settings, TelemetrySink(settings).run)
