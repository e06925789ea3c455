"""This node's return topic, voice.replies.<node_id>: reply audio and control for the sessions it holds."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from runtime.kafka import make_consumer
from runtime.settings import CommonSettings
from runtime.tasks import Supervisor
from schemas.dlq import decode_or_dead_letter
from schemas.topics import DLQ, REPLIES

log = logging.getLogger(__name__)


CONSUMES = (REPLIES,)  # this node's own reply topic: replies_topic(node_id)
TASK = "replies-consumer"


class ReplyConsumer:
    """Reads every partition of the node's return topic from its end (replies are live, never replayed) and
    hands each decoded event to ``route(session_id, event)``. Undecodable messages go to the dead-letter topic."""

    def __init__(self, settings: CommonSettings, topic: str, producer: AIOKafkaProducer,
                 route: Callable[[str, Any], None]) -> None:
        self._settings, self._topic, self._producer, self._route = settings, topic, producer, route
        # A long poll costs no latency (the broker answers as soon as a reply is appended) and saves the CPU
        # that polling every 5 ms would burn on every edge.
        self._consumer = make_consumer(settings, group_id=None, auto_offset_reset="latest")
        self._tasks: Supervisor | None = None
        self.received = 0

    async def start(self, tasks: Supervisor) -> None:
        """Returns once positioned at the end of every partition: anything produced afterwards is seen."""
        partitions = await self._producer.partitions_for(self._topic)  # fetches metadata if not cached
        await self._consumer.start()
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:
            await self._consumer.position(tp)
        self._tasks = tasks
        tasks.start(TASK, self._run)

    async def stop(self) -> None:
        if self._tasks is not None:
            await self._tasks.cancel(TASK)
        await self._consumer.stop()

    async def _run(self) -> None:
        dlq = self._settings.topic(DLQ.name)
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    event = await decode_or_dead_letter(REPLIES.codec, record, self._producer, dlq,
                                                        consumer="ingest-replies")
                    if event is not None:
                        self.received += 1
                        self._route(event.session_id, event)
