"""/metrics of the inference workers, scraped over HTTP after known traffic on the real broker; and the consumer
lag that every aiokafka service reports, against a real consumer."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from aiokafka import TopicPartition

from runtime.kafka import make_consumer, make_producer
from runtime.metrics import ServiceMetrics
from schemas.topics import AUDIO, DLQ, TELEMETRY, TURNS, replies_topic, spec_for
from tests.conftest import free_port
from tests.inference.kafka_helpers import NODE, Turns, ended, watching
from tests.inference.recordings import load
from tests.inference.workers import EdgeSession, finals, publish, running_asr, running_responder
from tests.metrics import histogram_is_whole, scrape

pytestmark = pytest.mark.integration


async def records_on(topics, *names: str) -> int:
    """Records ever written to these topics (fresh per test: their end offsets)."""
    consumer = make_consumer(topics.settings, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topics.name(n), p) for n in names for p in range(spec_for(n).partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def test_asr_worker_counts_what_it_consumed_produced_and_dead_lettered(topics, speech_dir):
    port = free_port()
    session = EdgeSession(load(speech_dir / "misc" / "goforward.wav"))
    async with (running_asr(topics, asr_metrics_port=port) as (worker, producer, transcripts),
                watching(topics, replies_topic(NODE)) as copies):
        await publish(producer, session)
        # Last, on the session's audio partition: once it is dead-lettered, every frame before it was consumed.
        await producer.send_raw(AUDIO.name, b"VBAF but not really a frame", key=session.session_id.encode())
        await transcripts.until(lambda ev: finals(ev, session.session_id))
        await copies.until(lambda ev: any(e.final for e in ev))  # the last copy made, for the edge
        await worker.wait_for(lambda w: w.metrics.dead_letters.value >= 1, 20)
        samples = await scrape(port)
        frames = len(session.frames())
        assert samples["voicebus_asr_events_in_total"] == frames + 2 + 1  # frames, two VAD events, the junk
        assert samples["voicebus_asr_dead_letters_total"] == 1
        # Partials come before their final on the session's partition: the watchers have all of them.
        assert samples["voicebus_asr_events_out_total"] == len(transcripts.events) + len(copies.events)
        assert len(transcripts.events) >= 2 and copies.events
        assert samples["voicebus_asr_consumer_lag"] == 0  # everything produced was consumed
        assert samples["voicebus_asr_sessions"] == 1 and samples["voicebus_asr_open_streams"] == 0
        assert samples["voicebus_asr_utterances_total"] == 1
        histogram_is_whole(samples, "voicebus_asr_processing_ms")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200
    with pytest.raises(aiohttp.ClientConnectionError):  # served for the worker's lifetime only
        await scrape(port)


async def test_responder_counts_what_it_consumed_produced_and_dead_lettered(topics):
    port = free_port()
    turns = Turns()
    async with running_responder(topics, responder_metrics_port=port) as (responder, producer, edge):
        # First, on the turn's partition: dead-lettered before the turn is read.
        await producer.send_raw(TURNS.name, b"{not json", key=turns.session_id.encode())
        await producer.send(TURNS.name, turns.committed("t1", "what is seven times six"))
        await edge.until(ended("t1"))
        await responder.wait_for(lambda r: r.stats.completed == 1, 20)  # after every reply event was acked
        samples = await scrape(port)
        out = await records_on(topics, replies_topic(NODE), TELEMETRY.name)
        assert samples["voicebus_responder_events_in_total"] == 2
        assert samples["voicebus_responder_dead_letters_total"] == 1 == await records_on(topics, DLQ.name)
        assert samples["voicebus_responder_events_out_total"] == out >= len(edge.of("t1")) + 2
        assert samples["voicebus_responder_active_replies"] == 0
        assert samples["voicebus_responder_turns_total"] == samples["voicebus_responder_replies_completed_total"] == 1
        assert samples["voicebus_responder_consumer_lag"] == 0
        histogram_is_whole(samples, "voicebus_responder_processing_ms")


async def test_consumer_lag_is_the_highwater_minus_the_next_offset(topics):
    await topics.create_all()
    topic = topics.name(TURNS.name)
    producer = make_producer(topics.settings)
    await producer.start()
    try:
        for _ in range(30):
            await producer.send(topic, b"x", partition=0)
        await producer.flush()
    finally:
        await producer.stop()
    metrics = ServiceMetrics("test")
    consumer = make_consumer(topics.settings, topic, group_id=f"lag-{uuid.uuid4().hex[:8]}")
    metrics.consumer = consumer
    await consumer.start()
    try:
        got = 0
        while got == 0:  # the group join, then the first fetch: it brings records and the highwater (30)
            batch = await consumer.getmany(timeout_ms=1000, max_records=5)
            metrics.consumed(batch)
            got += sum(len(r) for r in batch.values())
        assert 0 < got <= 5 and metrics.events_in.value == got
        assert f"voicebus_test_consumer_lag {30 - got}\n" in await metrics.collect()
        while got < 30:
            batch = await consumer.getmany(timeout_ms=1000)
            metrics.consumed(batch)
            got += sum(len(r) for r in batch.values())
        assert "voicebus_test_consumer_lag 0\n" in await metrics.collect() and metrics.events_in.value == 30
    finally:
        await consumer.stop()
