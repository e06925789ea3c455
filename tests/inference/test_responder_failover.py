"""Two responder processes in one group on the real broker: kill the one answering a turn, mid-reply.

The other takes the partition over, answers the turn again from its uncommitted offset, and repeats the same
(turn_id, index) chunks: an edge that drops duplicates plays exactly one whole reply. If the turn is too old by
then to be answered, the new owner tells the edge to drop the cut reply instead: never silently left playing.
"""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest

from schemas.topics import TURNS, replies_topic
from tests.inference.kafka_helpers import NODE, Producer, Turns, ended, watching
from tests.inference.workers import Worker, start_workers, stop_workers

pytestmark = pytest.mark.integration


async def in_group(workers: list[Worker]) -> None:
    async with asyncio.timeout(60):  # both in the group, the partitions shared
        while not all(w.partitions() == 4 for w in workers):
            assert all(w.proc.returncode is None for w in workers), "".join(workers[0].lines)
            await asyncio.wait([asyncio.ensure_future(w.changed.wait()) for w in workers],
                               return_when=asyncio.FIRST_COMPLETED)
            for w in workers:
                w.changed.clear()


async def kill_the_answering_one(edge, workers: list[Worker]) -> int:
    await edge.until(lambda ev: len(ev) >= 1, timeout=30)
    answering = int(edge.headers[0]["voicebus-worker"].decode().rsplit(":", 1)[1])
    victim = next(w for w in workers if w.proc.pid == answering)
    victim.proc.send_signal(signal.SIGKILL)
    await victim.proc.wait()
    return answering


async def test_killing_the_answering_responder_still_gives_one_whole_reply(topics):
    await topics.create_all((NODE,))
    workers = await start_workers(topics, f"responder-{uuid.uuid4().hex[:8]}", 2)
    turns = Turns()
    try:
        await in_group(workers)
        async with Producer(topics) as producer, watching(topics, replies_topic(NODE)) as edge:
            await producer.send(TURNS.name, turns.committed("t1", "how are you"))
            answering = await kill_the_answering_one(edge, workers)
            await edge.until(ended("t1"), timeout=45)
            events, headers = list(edge.events), list(edge.headers)
    finally:
        await stop_workers(workers)

    by_worker = [h["voicebus-worker"].decode() for h in headers]
    assert len(set(by_worker)) == 2  # the reply was started by one process and finished by the other
    victim_events = [e for e, w in zip(events, by_worker, strict=True) if w.endswith(f":{answering}")]
    assert "reply_ended" not in [e.type for e in victim_events]  # killed mid-reply
    # The edge's view: drop repeated (turn_id, index) chunks; one reply, whole and in order.
    chunks: dict[int, bytes] = {}
    for e in events:
        if e.type == "reply_audio_chunk":
            assert chunks.setdefault(e.index, e.pcm) == e.pcm  # a repeat is the same audio
    ends = [e for e in events if e.type == "reply_ended"]
    assert len(ends) == 1 and sorted(chunks) == list(range(ends[0].chunks)) and ends[0].chunks >= 10


async def test_a_turn_too_old_when_its_new_owner_gets_it_is_cancelled_at_the_edge(topics):
    """The failover (a 6 s session timeout) outlasts the turn's age limit (3 s here): the new owner does not
    answer it, and tells the edge to drop the reply the dead one cut short."""
    await topics.create_all((NODE,))
    workers = await start_workers(topics, f"responder-{uuid.uuid4().hex[:8]}", 2,
                                  VOICEBUS_RESPONDER_MAX_TURN_AGE_S="3")
    turns = Turns()
    try:
        await in_group(workers)
        async with Producer(topics) as producer, watching(topics, replies_topic(NODE)) as edge:
            await producer.send(TURNS.name, turns.committed("t1", "how are you"))
            answering = await kill_the_answering_one(edge, workers)
            await edge.until(lambda ev: any(e.type == "reply_cancelled" for e in ev), timeout=45)
            events, headers = list(edge.events), list(edge.headers)
    finally:
        await stop_workers(workers)

    survivor = next(w for w in workers if w.proc.pid != answering)
    by_survivor = [e for e, h in zip(events, headers, strict=True)
                   if h["voicebus-worker"].decode().endswith(f":{survivor.proc.pid}")]
    assert [(e.type, e.turn_id) for e in by_survivor] == [("reply_cancelled", "t1")]  # no regeneration
    assert "reply_ended" not in [e.type for e in events]  # the dead one was cut mid-reply
