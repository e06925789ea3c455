"""A bad reply event on the node's return topic: dead-lettered, and every later reply still plays."""

from __future__ import annotations

import base64
import json

import aiohttp
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

import tests.conftest as root
from ingest.client import EdgeClient
from ingest.server import EdgeNode
from schemas.conversation import ReplyAudioChunk, ReplyEnded
from schemas.edge import PlayoutFinished
from schemas.topics import REPLIES
from tests.ingest.conftest import TopicReader

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def chunk(session_id: str, turn_id: str, pcm: bytes) -> ReplyAudioChunk:
    return ReplyAudioChunk(session_id=session_id, seq=0, media_ns=0, wall_ns=1, turn_id=turn_id, index=0, pcm=pcm,
                           speech_start_media_ns=0, speech_end_media_ns=0)


async def test_odd_length_pcm_is_dead_lettered_and_later_replies_play(edge: tuple[EdgeNode, str],
                                                                      topics: root.TestTopics) -> None:
    node, url = edge
    client = EdgeClient(url)
    session_id = await client.connect()
    # A chunk whose PCM is 3 bytes: not PCM16. Written as raw JSON, as a buggy or foreign producer would.
    bad = json.loads(REPLIES.codec.encode(chunk(session_id, "bad", b"\x00\x00")))
    bad["pcm"] = base64.b64encode(b"\x01\x02\x03").decode()
    good = np.full(16000, 3000, np.int16).tobytes()  # one loud second
    producer = AIOKafkaProducer(bootstrap_servers=topics.settings.kafka_bootstrap, linger_ms=0)
    await producer.start()
    try:
        topic = topics.name("voice.replies.edge-test")
        await producer.send_and_wait(topic, json.dumps(bad).encode(), key=session_id.encode())
        for event in (chunk(session_id, "good", good),
                      ReplyEnded(session_id=session_id, seq=1, media_ns=0, wall_ns=1, turn_id="good", chunks=1)):
            await producer.send_and_wait(topic, REPLIES.codec.encode(event), key=session_id.encode())
    finally:
        await producer.stop()
    async with TopicReader(topics, "voice.playout", session_id) as playout:
        events = await playout.until(lambda items: any(isinstance(e, PlayoutFinished) for e in items))
    assert [e.turn_id for e in events if isinstance(e, PlayoutFinished)] == ["good"]
    async with TopicReader(topics, "voice.dlq", session_id) as dlq:
        letters = await dlq.until(lambda items: len(items) >= 1)
    assert letters[0].source_topic == topic and "even" in letters[0].error
    async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["down"] == []
    samples = node.metrics.render()
    assert "voicebus_ingest_task_deaths_total 0" in samples and "voicebus_ingest_tasks_down 0" in samples
    await client.close()
