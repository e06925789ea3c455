"""Nothing is dropped silently, on the real broker: every record goes through decode_or_dead_letter; the good
ones decode and each bad one lands on the dead-letter topic whole, with its origin and the error."""

from __future__ import annotations

import asyncio
import json

import pytest

from runtime.kafka import make_consumer, make_producer
from schemas.audio import encode_frame
from schemas.dlq import decode_or_dead_letter
from schemas.topics import AUDIO, DLQ, VAD
from tests.schemas.samples import BASE, EVENTS, FRAME, NODE, SESSION

pytestmark = pytest.mark.integration

STOPPED = next(e for e in EVENTS if e.type == "speech_stopped")
GOOD_STOPPED = VAD.codec.encode(STOPPED)
V1_STOPPED = json.dumps({**BASE, "type": "speech_stopped", "schema_version": 1, "node_id": NODE,
                         "speech_start_media_ns": 1, "speech_end_media_ns": 2}).encode()
GOOD_FRAME = encode_frame(FRAME)
KEY = SESSION.encode()

# (name, registry topic, key, value, headers, error expected on the dead letter or None if it decodes)
RECORDS = [
    ("good event", VAD, KEY, GOOD_STOPPED, [("trace", b"t1")], None),
    ("v1 event, upcast", VAD, KEY, V1_STOPPED, [], None),
    ("garbage, no key", VAD, None, b"\x00\xffgarbage\x80", [("trace", b"t2")], "not JSON"),
    ("truncated JSON", VAD, b"other-key", GOOD_STOPPED[:-20], [], "not JSON"),
    ("wrong type", VAD, KEY, GOOD_STOPPED.replace(b'"speech_stopped"', b'"turn_committed"'), [],
     "unknown event type 'turn_committed'"),
    ("future schema_version", VAD, KEY, GOOD_STOPPED.replace(b'"schema_version":2', b'"schema_version":9'),
     [("content-type", b"application/json")], "schema_version 9 is newer"),
    ("tombstone with a null header", VAD, KEY, None, [("null-header", None)], "empty message"),
    ("good frame", AUDIO, KEY, GOOD_FRAME, [], None),
    ("truncated frame", AUDIO, KEY, GOOD_FRAME[:-100], [("trace", b"t3")], "but 540 follow"),
    ("truncated header", AUDIO, KEY, GOOD_FRAME[:30], [], "shorter than the 52-byte header"),
    ("frame of a future version", AUDIO, KEY, GOOD_FRAME[:4] + b"\x07" + GOOD_FRAME[5:], [],
     "version 7 is not supported"),
    ("JSON on the audio topic", AUDIO, KEY, GOOD_STOPPED, [], "bad magic"),
]


async def _consume(consumer, count: int, timeout_s: float = 20.0) -> list:
    got: list = []
    async with asyncio.timeout(timeout_s):
        while len(got) < count:
            batch = await consumer.getmany(timeout_ms=500)
            got += [r for records in batch.values() for r in records]
    return got


async def test_undecodable_messages_go_to_the_dead_letter_topic_whole(topics):
    await topics.create_all()
    producer = make_producer(topics.settings)
    sources = [topics.name(VAD.name), topics.name(AUDIO.name)]
    dlq_topic = topics.name(DLQ.name)
    consumer = make_consumer(topics.settings, *sources, group_id=None)
    dlq_consumer = make_consumer(topics.settings, dlq_topic, group_id=None)
    await producer.start()
    await consumer.start()
    await dlq_consumer.start()
    try:
        where = {}
        for name, spec, key, value, headers, _ in RECORDS:
            meta = await producer.send_and_wait(topics.name(spec.name), value, key=key, headers=headers)
            where[(meta.topic, meta.partition, meta.offset)] = name

        decoded, lettered = {}, set()
        for record in await _consume(consumer, len(RECORDS)):
            spec = VAD if record.topic == sources[0] else AUDIO
            name = where[(record.topic, record.partition, record.offset)]
            value = await decode_or_dead_letter(spec.codec, record, producer, dlq_topic, consumer="test")
            if value is None:
                lettered.add(name)
            else:
                decoded[name] = value
        expected = {r[0]: r for r in RECORDS}
        assert set(decoded) == {n for n, r in expected.items() if r[5] is None}
        assert decoded["good event"] == STOPPED
        assert decoded["v1 event, upcast"].speech_end_wall_ns == BASE["wall_ns"] - (BASE["media_ns"] - 2)
        assert decoded["good frame"] == FRAME

        dead = await _consume(dlq_consumer, len(lettered))
        letters = [DLQ.codec.decode(r.value) for r in dead]
        assert sorted(where[(lt.source_topic, lt.partition, lt.offset)] for lt in letters) == sorted(lettered)
        for record, letter in zip(dead, letters, strict=True):
            name, spec, key, value, headers, error = expected[where[(letter.source_topic, letter.partition,
                                                                     letter.offset)]]
            assert letter.source_topic == topics.name(spec.name)
            assert (letter.key, letter.value, letter.headers) == (key, value, headers), name
            assert error in letter.error, (name, letter.error)
            assert letter.consumer == "test"
            assert record.key == key, name  # the dead letter keeps the source key
    finally:
        await dlq_consumer.stop()
        await consumer.stop()
        await producer.stop()

