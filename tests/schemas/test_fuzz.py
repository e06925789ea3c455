"""Fuzzed inputs on every decoder: valid encodings of every event of every topic, and of an audio frame, mutated
(truncated, bytes flipped, fields of the wrong type, huge numbers, extra fields, deep nesting). Whatever the
bytes, a decoder returns an event of its topic or raises its documented error (DecodeError; FrameError for the
frame's own decoder), nothing else; what it returns survives encode -> decode unchanged. And the consumers' one
path, decode_or_dead_letter, puts every undecodable record on the dead-letter topic whole."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.audio import HEADER, HEADER_SIZE, AudioFrame, FrameError, decode_frame, encode_frame
from schemas.codec import DecodeError
from schemas.dlq import decode_or_dead_letter
from schemas.telemetry import DeadLetter
from schemas.topics import AUDIO, DLQ, spec_for
from tests.schemas.samples import EVENTS, FRAME, SESSION, spec_of

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FRAME_BYTES = encode_frame(FRAME)
ENCODED = [(spec_of(e), spec_of(e).codec.encode(e)) for e in EVENTS]
IDS = [f"{spec.name}:{json.loads(data)['type']}" for spec, data in ENCODED]

# Values a field should never see, or only at its edge.
ODD = st.one_of(
    st.sampled_from([None, "", "x" * 300, -1, 0, 2**31, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, 1e308,
                     float("inf"), float("nan"), -0.0, True, False, [], {}, [None], {"type": "x"}, "\x00", "\ud800",
                     "0" * 10_000]),
    st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=8).map(lambda b: b.hex()),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _check_json(spec: Any, data: bytes) -> None:
    """The property: DecodeError, or an event of the topic that round-trips."""
    try:
        event = spec.codec.decode(data)
    except DecodeError:
        return
    assert type(event) in spec.models
    assert spec.codec.decode(spec.codec.encode(event)) == event


def _json_literal(value: Any) -> str:
    if isinstance(value, float) and value != value:
        return "NaN"  # Python's json writes these; a strict reader would not, ours must cope either way
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**300:
        return str(value)  # json.dumps refuses no int, but keep huge ones literal
    return json.dumps(value)


@st.composite
def mutated_json(draw: st.DrawFn, data: bytes) -> bytes:
    payload = json.loads(data)
    how = draw(st.sampled_from(["field", "drop", "extra", "truncate", "flip", "insert", "nest", "type", "version"]))
    if how == "field":
        key = draw(st.sampled_from(sorted(payload)))
        text = json.dumps({k: v for k, v in payload.items() if k != key})
        return (text[:-1] + f', "{key}": {_json_literal(draw(ODD))}}}').encode()
    if how == "drop":
        key = draw(st.sampled_from(sorted(payload)))
        return json.dumps({k: v for k, v in payload.items() if k != key}).encode()
    if how == "extra":
        extra = draw(st.dictionaries(st.text(max_size=12), ODD.filter(lambda v: v == v), min_size=1, max_size=3))
        return json.dumps({**payload, **extra}).encode()
    if how == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if how == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] = draw(st.integers(0, 255))
        return bytes(out)
    if how == "insert":
        i = draw(st.integers(0, len(data)))
        return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
    if how == "nest":  # deep nesting: a recursion bomb for a naive reader
        depth = draw(st.sampled_from([10, 1000, 100_000]))
        key = draw(st.sampled_from(sorted(payload)))
        text = json.dumps({k: v for k, v in payload.items() if k != key})
        return (text[:-1] + f', "{key}": ' + "[" * depth + "]" * depth + "}").encode()
    if how == "type":
        payload["type"] = draw(st.sampled_from([e.type for e in EVENTS]) | ODD)
        return json.dumps(payload, allow_nan=True).encode()
    payload["schema_version"] = draw(st.integers(-3, 12) | ODD)
    return json.dumps(payload, allow_nan=True).encode()


@pytest.mark.parametrize(("spec", "data"), ENCODED, ids=IDS)
@FUZZ
@given(st.data())
def test_json_decoders_refuse_mutations_with_decode_error(spec: Any, data: bytes, fuzz: st.DataObject) -> None:
    _check_json(spec, fuzz.draw(mutated_json(data)))


@FUZZ
@given(st.binary(max_size=300))
def test_json_decoders_take_any_bytes(data: bytes) -> None:
    for spec in {s.name: s for s, _ in ENCODED}.values():
        _check_json(spec, data)


# what each header slot (schemas.audio.HEADER, "<4sBB16sQqqIH") can hold
FIELD_RANGES = {1: (0, 255), 2: (0, 255), 4: (0, 2**64 - 1), 5: (-(2**63), 2**63 - 1), 6: (-(2**63), 2**63 - 1),
                7: (0, 2**32 - 1), 8: (0, 2**16 - 1)}
assert HEADER.format == "<4sBB16sQqqIH"


@st.composite
def mutated_frame(draw: st.DrawFn) -> bytes:
    data = FRAME_BYTES
    how = draw(st.sampled_from(["truncate", "flip", "extend", "header", "random"]))
    if how == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if how == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, HEADER_SIZE + 8))] = draw(st.integers(0, 255))  # mostly the header
        return bytes(out)
    if how == "extend":
        return data + draw(st.binary(min_size=1, max_size=5))
    if how == "header":  # every field at any value its slot can hold: huge times, odd rates and counts
        fields = list(HEADER.unpack_from(data))
        i = draw(st.integers(1, len(fields) - 1))
        if i == 3:  # the session id
            fields[i] = draw(st.binary(min_size=16, max_size=16))
        else:
            low, high = FIELD_RANGES[i]
            fields[i] = draw(st.integers(low, high) | st.sampled_from([low, high, 0, 1]))
        fields[0] = draw(st.sampled_from([b"VBAF", fields[0]]))
        return HEADER.pack(*fields) + data[HEADER_SIZE:]
    return draw(st.binary(max_size=HEADER_SIZE + 20))


@FUZZ
@given(mutated_frame())
def test_audio_frame_decoder(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except FrameError:
        with pytest.raises(DecodeError):
            AUDIO.codec.decode(data)
        return
    assert isinstance(frame, AudioFrame) and len(frame.pcm) == 2 * frame.sample_count
    assert encode_frame(frame) == data  # what decodes is exactly what the edge would have written
    assert AUDIO.codec.decode(data) == frame
    assert frame.samples().size == frame.sample_count  # usable by numpy as is (no odd-length PCM)


# -- dead letters: the consumers' path --


class Record:
    def __init__(self, topic: str, key: bytes | None, value: bytes | None, headers: list) -> None:
        self.topic, self.partition, self.offset = topic, 3, 12345
        self.key, self.value, self.headers = key, value, headers


class KafkaProducer:
    """What a record sent to the broker is: its topic, key and bytes (aiokafka's send_and_wait, minus the broker)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                            partition: int | None = None, timestamp_ms: int | None = None, headers: Any = None) -> None:
        assert value is None or len(value) <= DLQ.max_message_bytes
        self.sent.append((topic, key, value))


TOPICS = sorted({spec.name for spec, _ in ENCODED} | {AUDIO.name})


@st.composite
def records(draw: st.DrawFn) -> Record:
    topic = draw(st.sampled_from(TOPICS))
    if topic == AUDIO.name:
        value = draw(mutated_frame() | st.just(FRAME_BYTES))
    else:
        candidates = [data for spec, data in ENCODED if spec.name == topic]
        value = draw(st.sampled_from(candidates).flatmap(lambda d: mutated_json(d) | st.just(d)))
    value = draw(st.sampled_from([value, value, value, None, b""]))
    key = draw(st.sampled_from([SESSION.encode(), None, b""]) | st.binary(max_size=40))
    headers = draw(st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=3))
    return Record(topic, key, value, headers)


@FUZZ
@given(records())
def test_every_undecodable_record_becomes_a_dead_letter(record: Record) -> None:
    producer = KafkaProducer()
    spec = spec_for(record.topic)
    decoded = asyncio.run(decode_or_dead_letter(spec.codec, record, producer, "t.voice.dlq", consumer="fuzz"))
    if decoded is not None:
        assert producer.sent == []
        return
    ((topic, key, value),) = producer.sent
    assert topic == "t.voice.dlq" and key == record.key
    letter = DLQ.codec.decode(value)  # a dead letter is itself a valid event of its topic
    assert isinstance(letter, DeadLetter)
    assert (letter.source_topic, letter.partition, letter.offset) == (record.topic, 3, 12345)
    assert (letter.key, letter.value, letter.consumer) == (record.key, record.value, "fuzz")
    assert list(letter.headers) == [tuple(h) for h in record.headers]
    assert letter.error


def test_every_json_event_of_every_topic_is_fuzzed() -> None:
    from schemas.topics import ALL_SPECS

    models = {m for s in ALL_SPECS if s.codec is not None and s.content_type == "application/json" for m in s.models}
    assert {type(e) for e in EVENTS} == models
