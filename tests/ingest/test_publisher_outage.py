"""A broker outage at the edge (issue 18), on a real broker of this test's own, stopped and started again: what
the edge publishes meanwhile is held (recent speech, every decision), the losses are counted, and the outage is
logged once when it starts and once when it ends."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

import tests.conftest as root
from ingest.metrics import Metrics
from ingest.publisher import Publisher
from runtime.broker import LocalKafka
from runtime.kafka import make_consumer, make_producer
from runtime.settings import KafkaBrokerSettings
from runtime.tasks import Supervisor
from schemas.audio import RATE, AudioFrame
from schemas.base import Stamper
from schemas.edge import SpeechStarted, SpeechStopped, VadProgress
from schemas.topics import AUDIO, VAD
from tests.conftest import free_port

pytestmark = pytest.mark.integration

SID = "0123456789abcdef0123456789abcdef"
NODE = "edge-1"
AUDIO_BOUND, EVENT_BOUND = 50, 100


def frame(seq: int) -> AudioFrame:
    return AudioFrame(SID, seq, 1_700_000_000_000_000_000 + seq, seq * 20_000_000, RATE, b"\x01\x00" * 320)


class Vad:
    """The edge's VAD events of one session, in the order it makes them."""

    def __init__(self) -> None:
        self.stamp = Stamper(SID)
        self.made: list[Any] = []

    def started(self) -> SpeechStarted:
        return self._made(SpeechStarted(**self.stamp(0), node_id=NODE, speech_start_media_ns=0,
                                        speech_start_wall_ns=1, probability=0.9))

    def stopped(self) -> SpeechStopped:
        return self._made(SpeechStopped(**self.stamp(0), node_id=NODE, speech_start_media_ns=0,
                                        speech_end_media_ns=0, speech_end_wall_ns=1))

    def heartbeat(self) -> VadProgress:
        return self._made(VadProgress(**self.stamp(0), node_id=NODE, speaking=False, probability=0.0, voiced=False))

    def _made(self, event: Any) -> Any:
        self.made.append(event)
        return event


async def read_all(topics: root.TestTopics, n_audio: int, n_vad: int) -> tuple[list[AudioFrame], list[Any]]:
    consumer = make_consumer(topics.settings, topics.name(AUDIO.name), topics.name(VAD.name), group_id=None)
    await consumer.start()
    audio: list[AudioFrame] = []
    vad: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(audio) < n_audio or len(vad) < n_vad:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    spec = AUDIO if tp.topic == topics.name(AUDIO.name) else VAD
                    (audio if spec is AUDIO else vad).extend(spec.codec.decode(r.value) for r in records)
    finally:
        await consumer.stop()
    return audio, vad


async def test_an_outage_keeps_recent_speech_and_every_decision(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    broker = LocalKafka(KafkaBrokerSettings(kafka_port=free_port(), kafka_controller_port=free_port()),
                        state_dir=tmp_path / "kafka")
    await asyncio.to_thread(broker.start)
    try:
        topics = root.TestTopics(broker.bootstrap)
        await topics.create_all()
        metrics, vad = Metrics(), Vad()
        tasks = Supervisor(metrics, "voicebus_ingest")
        # A short request timeout: the outage is noticed after 3 s instead of 10.
        producer = make_producer(topics.settings, request_timeout_ms=3000)
        publisher = Publisher(producer, metrics, topics.prefix, AUDIO_BOUND, EVENT_BOUND)
        await publisher.start(tasks)
        for seq in range(10):
            publisher.audio(frame(seq))
        publisher.event(vad.heartbeat())
        await publisher.wait_for(lambda p: p.idle, 30)

        with caplog.at_level(logging.INFO, logger="ingest.publisher"):
            await asyncio.to_thread(broker.stop)
            publisher.event(vad.started())  # its send fails after the request timeout: the outage is noticed
            await publisher.wait_for(lambda p: not p.connected, 30)
            seq = 10
            for _ in range(20):  # 20 utterances of 10 frames each, while the broker is away
                publisher.event(vad.started())
                for _ in range(10):
                    publisher.audio(frame(seq))
                    publisher.event(vad.heartbeat())
                    seq += 1
                publisher.event(vad.stopped())
            assert metrics.frames_dropped.value == 200 - AUDIO_BOUND  # the oldest speech went first
            await asyncio.to_thread(broker.start)
            await publisher.wait_for(lambda p: p.connected and p.idle, 60)
        decisions = [e for e in vad.made if not isinstance(e, VadProgress)]
        kept = len(vad.made) - metrics.events_dropped.value
        audio, published = await read_all(topics, 10 + AUDIO_BOUND, kept)
        await publisher.stop(5)
    finally:
        await asyncio.to_thread(broker.stop)

    assert [f.seq for f in audio] == [*range(10), *range(210 - AUDIO_BOUND, 210)]  # the recent speech, in order
    assert [e.seq for e in published] == sorted(e.seq for e in published)  # the session's VAD order is kept
    assert [e for e in published if not isinstance(e, VadProgress)] == decisions  # every decision, once
    heartbeats = [e for e in vad.made if isinstance(e, VadProgress)]
    # The heartbeats dropped were the oldest: the newest carry the media clock furthest.
    assert [e for e in published if isinstance(e, VadProgress)] == [heartbeats[0], *heartbeats[-(kept - 1
                                                                                    - len(decisions)):]]
    assert metrics.kafka_outages.value == 1 and "\nvoicebus_ingest_kafka_up 1\n" in metrics.render()
    states = [r for r in caplog.records if r.name == "ingest.publisher"]
    assert [r.levelname for r in states] == ["WARNING", "INFO"], [r.getMessage() for r in states]
    assert "unreachable" in states[0].getMessage() and "reachable again" in states[1].getMessage()
    assert f"{200 - AUDIO_BOUND} frames" in states[1].getMessage()
    aiokafka = [r for r in caplog.records if r.name.startswith("aiokafka")]
    print(f"\n[ingest] outage: {len(aiokafka)} aiokafka log records, "
          f"{metrics.publish_errors.value} failed sends queued again, {metrics.events_dropped.value} heartbeats "
          f"and {metrics.frames_dropped.value} frames dropped")
