"""Sessions' recorded decision inputs, read from Kafka without disturbing the live consumers.

The reader has no consumer group: it is assigned the input partitions, reads them to their end as of now and
commits nothing, so no live group rebalances or moves its offsets. One session is on one partition of each input
topic (they are co-partitioned by session id), so ``--session`` reads just those.

The live turn processor reads its topics independently; the order here is one it could have seen: each partition
in its own order, merged by the records' timestamps (when they were produced). The core decides the same turns
whatever the interleaving (tests/streams/replay), so this order reproduces the live decisions.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable
from typing import Any, TypeVar

from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from pydantic import TypeAdapter, ValidationError

from runtime.kafka import make_consumer, read_to_end
from runtime.settings import CommonSettings
from schemas.edge import VadProgress
from schemas.topics import REGISTRY, TYPE_HEADER, TopicSpec
from schemas.upcast import DecodeError
from streams.turns.core import Inbound

log = logging.getLogger(__name__)

# What the turn processor decides from (its agent's SOURCES: a test keeps them equal), each kept for replays.
INPUTS: tuple[TopicSpec, ...] = tuple(s for s in REGISTRY if "streams" in s.readers and s.replayable)
_CODECS = {spec.name: spec.codec for spec in INPUTS}
_INPUT_OF = {model: spec for spec in INPUTS for model in spec.models}
T = TypeVar("T")
Raw = tuple[str, bytes | None, bytes | None]  # a record: its topic (registry name), value and type header


# Nine in ten input events are the VAD's heartbeats: they are parsed and validated straight from the JSON bytes
# (pydantic's own parser, about three times the codec's speed). Anything that fails (an older schema version
# needing its upcaster, a bad record) goes through the topic's codec as usual.
_HEARTBEAT = TypeAdapter(VadProgress)
_HEARTBEAT_TYPE = b"vad_progress"


def decode(codec: Any, value: bytes | None, type_header: bytes | None) -> Inbound:
    """An input record's event (DecodeError as from the codec)."""
    if type_header == _HEARTBEAT_TYPE and value:
        try:
            return _HEARTBEAT.validate_json(value)
        except ValidationError:
            pass
    return codec.decode(value)  # type: ignore[no-any-return]


def partition_of(session_id: str, partitions: int) -> int:
    """The partition a session's events are on (the producers' default partitioner: murmur2 of the key)."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(session_id.encode(), every, every))


def merge(partitions: Iterable[list[tuple[int, str, T]]]) -> dict[str, list[T]]:
    """Each session's items from (timestamp, session id, item) lists, one per partition in its order, merged by
    timestamp (each list keeps its own order, whatever its timestamps)."""
    sessions: dict[str, list[T]] = {}
    for _, session_id, item in heapq.merge(*partitions, key=lambda entry: entry[0]):
        sessions.setdefault(session_id, []).append(item)
    return sessions


def encoded(events: Iterable[Inbound]) -> list[Raw]:
    """Events as they lie on their topics (the bench and the tests start from here)."""
    out: list[Raw] = []
    for e in events:
        spec = _INPUT_OF[type(e)]
        out.append((spec.name, spec.codec.encode(e), e.type.encode()))
    return out


def decoded(records: Iterable[Raw]) -> list[Inbound]:
    """A session's events from its records; an undecodable one is left out, as the live processor leaves it out
    (it goes to the dead-letter topic and decides nothing)."""
    out: list[Inbound] = []
    for topic, value, type_header in records:
        try:
            out.append(decode(_CODECS[topic], value, type_header))
        except DecodeError:
            log.debug("undecodable input record on %s skipped", topic)
    return out


async def read_records(settings: CommonSettings, session_id: str | None = None,
                       since_ms: int | None = None) -> dict[str, list[Raw]]:
    """The input records of one session (``session_id``) or of every session, optionally only those produced
    since ``since_ms`` (Unix ms): each session's in an order the live processor could have read them."""
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(spec.name), p) for spec in INPUTS
               for p in ([partition_of(session_id, spec.partitions)] if session_id else range(spec.partitions))]
        start = None
        if since_ms is not None:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            ends = await consumer.end_offsets(tps)
            start = {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}
        key = session_id.encode() if session_id else None
        lists: dict[TopicPartition, list[tuple[int, str, Raw]]] = {tp: [] for tp in tps}
        async for record in read_to_end(consumer, tps, start):
            if record.key is None or (key is not None and record.key != key):
                continue
            raw = (record.topic.removeprefix(settings.topic_prefix), record.value,
                   dict(record.headers or ()).get(TYPE_HEADER))
            lists[TopicPartition(record.topic, record.partition)].append(
                (record.timestamp, record.key.decode(errors="replace"), raw))
        return merge(lists.values())
    finally:
        await consumer.stop()


async def read_inputs(settings: CommonSettings, session_id: str | None = None,
                      since_ms: int | None = None) -> dict[str, list[Inbound]]:
    """``read_records``, decoded."""
    sessions = {sid: decoded(records) for sid, records in (await read_records(settings, session_id,
                                                                              since_ms)).items()}
    return {sid: events for sid, events in sessions.items() if events}
