"""The floor: raw aiokafka produce -> consume latency on the same broker, one hop, with voicebus's client settings."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from runtime.kafka import make_consumer, make_producer
from runtime.settings import CommonSettings


async def measure_hop(settings: CommonSettings, messages: int = 500, interval_s: float = 0.004,
                      size: int = 300) -> np.ndarray:
    """Per-message produce -> consume latency in ms for small messages sent at a steady pace."""
    topic = settings.topic(f"bench.floor.{uuid.uuid4().hex[:8]}")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = make_producer(settings)
    consumer = make_consumer(settings, topic, group_id=None, auto_offset_reset="latest")
    await producer.start()
    await consumer.start()
    latencies: list[float] = []
    try:
        await consumer.seek_to_end()
        # Warm up the connection and the consumer's first fetch before timing.
        await producer.send_and_wait(topic, b"warmup")
        async with asyncio.timeout(20):
            while not await consumer.getmany(timeout_ms=200):
                pass

        async def consume() -> None:
            while len(latencies) < messages:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.perf_counter_ns()
                for records in batch.values():
                    for r in records:
                        latencies.append((now - int.from_bytes(r.value[:8], "big")) / 1e6)

        reader = asyncio.ensure_future(consume())
        pad = b"x" * max(0, size - 8)
        t0 = time.perf_counter()
        for i in range(messages):
            await asyncio.sleep(max(0.0, t0 + i * interval_s - time.perf_counter()))
            await producer.send(topic, time.perf_counter_ns().to_bytes(8, "big") + pad, key=b"floor")
        async with asyncio.timeout(30):
            await reader
    finally:
        await consumer.stop()
        await producer.stop()
    return np.array(latencies)


def main_standalone() -> None:
    lat = asyncio.run(measure_hop(CommonSettings()))
    print(f"kafka hop: p50 {np.percentile(lat, 50):.2f} ms  p99 {np.percentile(lat, 99):.2f} ms  n={len(lat)}")


if __name__ == "__main__":
    main_standalone()
