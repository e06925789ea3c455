"""Two responder processes in one group on the real broker: kill the one answering a turn, mid-reply.

The other takes the partition over, answers the turn again from its uncommitted offset, and repeats the same
(turn_id, index) chunks: an edge that drops duplicates plays exactly one whole reply.
"""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest

from schemas.topics import TURNS, replies_topic
from tests.inference.kafka_helpers import NODE, Producer, Turns, ended, watching
from tests.inference.workers import start_workers, stop_workers

pytestmark = pytest.mark.integration


async def test_killing_the_answering_responder_still_gives_one_whole_reply(topics):
    await topics.create_all((NODE,))
    workers = await start_workers(topics, f"responder-{uuid.uuid4().hex[:8]}", 2)
    turns = Turns()
    try:
        async with asyncio.timeout(60):  # both in the group, the partitions shared
            while not all(w.partitions() == 4 for w in workers):
                assert all(w.proc.returncode is None for w in workers), "".join(workers[0].lines)
                await asyncio.wait([asyncio.ensure_future(w.changed.wait()) for w in workers],
                                   return_when=asyncio.FIRST_COMPLETED)
                for w in workers:
                    w.changed.clear()
        async with Producer(topics) as producer, watching(topics, replies_topic(NODE)) as edge:
            await producer.send(TURNS.name, turns.committed("t1", "how are you"))
            await edge.until(lambda ev: len(ev) >= 1, timeout=30)
            answering = int(edge.headers[0]["voicebus-worker"].decode().rsplit(":", 1)[1])
            victim = next(w for w in workers if w.proc.pid == answering)
            victim.proc.send_signal(signal.SIGKILL)
            await victim.proc.wait()
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
