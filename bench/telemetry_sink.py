"""Telemetry sink throughput: stage events per second from a Kafka backlog into chDB, by batch size.

    python -m bench.telemetry_sink [--events 200000] [--batches 1000,5000,20000]

Starts a private broker (the project's LocalKafka) and fills voice.telemetry with StageStamped events first;
each variant is a fresh consumer group draining the whole backlog through the real sink (decode, rows, batch
insert,
materialized views, offset commit) into the same chDB directory (emptied between variants).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from runtime.broker import LocalKafka
from runtime.clickhouse import connect
from runtime.kafka import make_producer
from runtime.provisioning import create_topics
from runtime.settings import CommonSettings, KafkaBrokerSettings
from schemas.telemetry import STAGES, StageStamped
from schemas.topics import TELEMETRY
from streams.telemetry.settings import TelemetrySettings
from streams.telemetry.sink import TelemetrySink


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fill(settings: CommonSettings, events: int) -> None:
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    now = time.time_ns()
    topic = settings.topic(TELEMETRY.name)
    try:
        for i in range(events):
            turn, stage = divmod(i, len(STAGES))
            session = f"{turn // 20:032x}"
            event = StageStamped(
                session_id=session,
                seq=i,
                media_ns=0,
                wall_ns=now,
                turn_id=f"turn-{turn}",
                node_id=f"edge-{turn % 4}",
                stage=STAGES[stage],
                stage_wall_ns=now + i * 1000,
                service="streams",
                engine="bench",
            )
            await producer.send(topic, TELEMETRY.codec.encode(event), key=session.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def drain(settings: TelemetrySettings, events: int) -> float:
    sink = TelemetrySink(settings)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(sink.run(stop, ready))
    await asyncio.wait_for(ready.wait(), 60)
    t0 = time.perf_counter()
    await sink.wait_for(lambda s: s.rows_written >= events, 600)
    seconds = time.perf_counter() - t0
    stop.set()
    await task
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batches", default="1000,5000,20000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="voicebus-sink-bench-"))
    broker = LocalKafka(
        KafkaBrokerSettings(kafka_port=free_port(), kafka_controller_port=free_port()),
        state_dir=work / "kafka",
    )
    started = broker.start()
    try:
        common = CommonSettings(kafka_bootstrap=started.bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:6]}.")
        asyncio.run(create_topics(common))
        t0 = time.perf_counter()
        asyncio.run(fill(common, args.events))
        print(f"{args.events:,} StageStamped events produced in {time.perf_counter() - t0:.1f} s")
        dsn = f"chdb://{work / 'clickhouse'}"
        print(f"sink drain of the backlog into chDB, median of {args.repeat}:")
        rates = {}
        for rows in map(int, args.batches.split(",")):
            runs = []
            for _ in range(args.repeat):
                settings = TelemetrySettings(
                    **common.model_dump(),
                    clickhouse_dsn=dsn,
                    telemetry_group_id=f"bench-{uuid.uuid4().hex[:8]}",
                    telemetry_batch_rows=rows,
                    telemetry_query_port=0,
                )
                runs.append(args.events / asyncio.run(drain(settings, args.events)))
                client = connect(dsn)
                for table in ("stage_events", "turns"):
                    client.command(f"TRUNCATE TABLE {table}")
            rates[rows] = statistics.median(runs)
            print(f"  batch {rows:6,} rows: {rates[rows]:9,.0f} stage events/s")
        base = min(rates)
        for rows, rate in rates.items():
            print(f"  batch {rows:6,} / batch {base:,}: {rate / rates[base]:.2f}x")
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
