"""The responder's conversation history on the log (voice.history, schemas.history): written as it changes, read
back when partitions are assigned.

Why this design: the responder is the one service that knows what was said (the reply's sentences and their audio)
and what was heard (barge-ins, false interruptions, on voice.turns). So it publishes the fold itself, one record
per session holding the session's whole (bounded) history, on a compacted topic keyed by session: compaction keeps
the latest record of each session, which is all of it. A record reaches the broker before the offsets of the turn
events that produced it are committed, so a responder that takes a partition over, reading the history's same
partition (the topics are co-partitioned) and then voice.turns from the committed offsets, misses nothing and
re-applies nothing twice in a way that matters (a re-answered turn replaces itself in the history). A zombie
responder (one the group has already replaced but that still runs) could still write a stale record: fencing it
would take Kafka transactions, which the platform does not use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from inference.history import History
from runtime.kafka import read_to_end
from runtime.settings import CommonSettings
from schemas.base import Stamper
from schemas.history import ConversationHistory
from schemas.topics import HISTORY
from schemas.upcast import DecodeError

log = logging.getLogger(__name__)

LOAD_TIMEOUT_S = 30.0  # then the sessions are answered without their past (better than not at all)


class HistoryLog:
    def __init__(self, settings: CommonSettings, history: History, producer: Any, loader: Any,
                 stamper: Callable[[str], Stamper]) -> None:
        self.topic = settings.topic(HISTORY.name)
        self.history, self.producer, self.loader, self.stamper = history, producer, loader, stamper
        self._lock = asyncio.Lock()  # records go out in the order they were made

    async def record(self, session_id: str, media_ns: int) -> None:
        """Publish the session's history and wait for the broker to have it (nothing if it is not known here)."""
        if self.history.knows(session_id):
            await self._put(session_id, lambda: HISTORY.codec.encode(ConversationHistory(
                **self.stamper(session_id)(media_ns), turns=self.history.snapshot(session_id))))

    async def forget(self, session_id: str) -> None:
        """The session ended: a tombstone, so that compaction removes its history."""
        self.history.drop(session_id)
        await self._put(session_id, lambda: None)

    async def _put(self, session_id: str, value: Callable[[], bytes | None]) -> None:
        async with self._lock:  # the snapshot and its place in the partition are taken together
            try:
                ack = await self.producer.send(self.topic, value(), key=session_id.encode())
            except KafkaError as exc:
                self._lost(session_id, exc)
                return
        try:
            await ack
        except KafkaError as exc:
            self._lost(session_id, exc)

    @staticmethod
    def _lost(session_id: str, exc: Exception) -> None:
        log.error("history not recorded (a responder taking the session over will miss this change): %s", exc,
                  extra={"session_id": session_id})

    async def rebuild(self, assigned: Iterable[TopicPartition]) -> int:
        """The histories of the assigned partitions' sessions, replacing what was in memory (with partitions
        moved, it may be stale: another responder answered those sessions meanwhile). Returns how many."""
        t0 = time.perf_counter()
        self.history.clear()
        partitions = sorted({tp.partition for tp in assigned})
        latest: dict[str, ConversationHistory | None] = {}
        try:
            async with asyncio.timeout(LOAD_TIMEOUT_S):
                async for record in read_to_end(self.loader, [TopicPartition(self.topic, p) for p in partitions]):
                    session_id = record.key.decode() if record.key else ""
                    try:
                        latest[session_id] = None if record.value is None else HISTORY.codec.decode(record.value)
                    except DecodeError as exc:
                        log.error("unreadable history record at %s:%d: %s", self.topic, record.offset, exc)
        except (TimeoutError, KafkaError) as exc:
            log.error("history of partitions %s not rebuilt (%s): their sessions start afresh", partitions, exc)
        for session_id, history in latest.items():
            if history is not None:
                self.history.restore(session_id, history.turns)
        sessions = sum(h is not None for h in latest.values())
        log.info("history of %d sessions rebuilt from %d partitions in %.0f ms", sessions, len(partitions),
                 (time.perf_counter() - t0) * 1000)
        return sessions
