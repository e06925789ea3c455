"""Driving the workers on the real broker: produce events, and watch a topic the way the edge would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from runtime.kafka import make_consumer, make_producer
from schemas.base import new_session_id
from schemas.conversation import BargeIn, TurnCancelled, TurnCommitted, TurnEnded, TurnSpeculative
from schemas.topics import spec_for

NODE = "edge-t"


class Turns:
    """Turn events for one session, as the turn processor would make them."""

    def __init__(self, session_id: str | None = None, node_id: str = NODE) -> None:
        self.session_id = session_id or new_session_id()
        self.node_id = node_id
        self._seq = 0

    def _base(self) -> dict[str, Any]:
        self._seq += 1
        return {"session_id": self.session_id, "seq": self._seq, "media_ns": 5_000_000_000 + self._seq,
                "wall_ns": time.time_ns(), "node_id": self.node_id}

    def speculative(self, turn_id: str, text: str) -> TurnSpeculative:
        return TurnSpeculative(turn_id=turn_id, text=text, speech_start_media_ns=3_000_000_000,
                              speech_end_media_ns=4_000_000_000, **self._base())

    def committed(self, turn_id: str, text: str) -> TurnCommitted:
        return TurnCommitted(turn_id=turn_id, text=text, speech_start_media_ns=3_000_000_000,
                              speech_end_media_ns=4_000_000_000, **self._base())

    def cancelled(self, turn_id: str, reason: str = "barge_in") -> TurnCancelled:
        return TurnCancelled(turn_id=turn_id, reason=reason, **self._base())  # type: ignore[arg-type]

    def barge_in(self, turn_id: str, played_ms: int) -> BargeIn:
        return BargeIn(turn_id=turn_id, played_ms=played_ms, **self._base())

    def ended(self, turn_id: str, outcome: str) -> TurnEnded:
        return TurnEnded(turn_id=turn_id, outcome=outcome, **self._base())  # type: ignore[arg-type]


class Producer:
    def __init__(self, topics) -> None:
        self.topics = topics
        self._producer = make_producer(topics.settings)

    async def __aenter__(self) -> Producer:  # noqa: PYI034
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, topic: str, *events: Any) -> None:
        codec = spec_for(topic).codec
        for event in events:
            await self._producer.send_and_wait(self.topics.name(topic), codec.encode(event),
                                               key=event.session_id.encode())

    async def send_raw(self, topic: str, value: bytes, key: bytes) -> None:
        await self._producer.send_and_wait(self.topics.name(topic), value, key=key)


class Watcher:
    """Everything on one topic from its start, decoded, with the record headers."""

    def __init__(self, topics, topic: str) -> None:
        self.codec = spec_for(topic).codec
        self.events: list[Any] = []
        self.headers: list[dict[str, bytes]] = []
        self._consumer = make_consumer(topics.settings, topics.name(topic), group_id=None)
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    self.events.append(self.codec.decode(record.value))
                    self.headers.append(dict(record.headers or ()))
            if batch:
                self._changed.set()

    async def until(self, predicate: Callable[[list[Any]], bool], timeout: float = 20.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while not predicate(self.events):
                self._changed.clear()
                await self._changed.wait()
        return self.events

    def of(self, turn_id: str) -> list[Any]:
        return [e for e in self.events if getattr(e, "turn_id", None) == turn_id]


@asynccontextmanager
async def watching(topics, topic: str):
    watcher = Watcher(topics, topic)
    await watcher._consumer.start()
    watcher._task = asyncio.create_task(watcher._run())
    try:
        yield watcher
    finally:
        watcher._task.cancel()
        await asyncio.gather(watcher._task, return_exceptions=True)
        await watcher._consumer.stop()


def ended(turn_id: str) -> Callable[[list[Any]], bool]:
    return lambda events: any(e.type == "reply_ended" and e.turn_id == turn_id for e in events)
