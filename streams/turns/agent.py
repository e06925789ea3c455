"""The Faust shell around the pure core: decode, step, send the decisions, then write the table.

Events cross Faust as raw bytes; the schemas codecs are the only (de)serialisers, and the table stores each
session's TurnState as JSON in the registry's compacted changelog topic.

Order matters for at-least-once delivery: decisions are sent and acknowledged before the new state is written,
so a state in the changelog never claims a decision that was not published. A crash between the two replays
the event and republishes the same decisions (same turn ids and seqs); a crash after both finds the event
already applied (the state's per-source watermark) and publishes nothing again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from schemas.base import Event, now_ns
from schemas.dlq import decode_or_dead_letter
from schemas.telemetry import StageStamped
from schemas.topics import (
    DLQ,
    PLAYOUT,
    SESSION_PARTITIONS,
    SESSIONS,
    TELEMETRY,
    TRANSCRIPTS,
    TURN_STATE_CHANGELOG,
    TURNS,
    VAD,
    spec_for,
)
from streams.turns.core import Context, initial, step
from streams.turns.policy import Policy
from streams.turns.settings import TurnSettings
from streams.turns.state import TurnState

log = logging.getLogger(__name__)
TABLE = "turn-state"
SOURCES = (VAD, TRANSCRIPTS, PLAYOUT, SESSIONS)


class _DlqProducer:
    """Faust's producer under the aiokafka signature that schemas.dlq expects."""

    def __init__(self, app: faust.App) -> None:
        self._app = app

    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                            partition: int | None = None, timestamp_ms: int | None = None,
                            headers: Any = None) -> Any:
        return await self._app.producer.send_and_wait(topic, key, value, partition, None, headers)


class TurnProcessor:
    """Registers the turn agent and table on a Faust app."""

    def __init__(self, app: faust.App, settings: TurnSettings) -> None:
        self.app = app
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.consumer_name = settings.app_id()
        self._dlq = _DlqProducer(app)
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        source = app.topic(*(settings.topic(spec.name) for spec in SOURCES), **raw)
        changelog = app.topic(settings.topic(TURN_STATE_CHANGELOG.name), partitions=SESSION_PARTITIONS,
                              compacting=True, deleting=False, internal=True, **raw)
        self.table = app.Table(TABLE, partitions=SESSION_PARTITIONS, changelog_topic=changelog,
                               key_type=bytes, value_type=bytes)  # bytes: the "raw" serializer
        app.agent(source, name="turns")(self._agent)

    async def _agent(self, stream: Any) -> None:
        async for event in stream.events():
            await self.handle(event.message)

    async def handle(self, message: Any) -> None:
        spec = spec_for(message.topic.removeprefix(self.settings.topic_prefix))
        event = await decode_or_dead_letter(spec.codec, message, self._dlq, self.settings.topic(DLQ.name),
                                            consumer=self.consumer_name)
        if event is None:
            return
        key = event.session_id.encode()
        stored = self.table.get(key)
        state = TurnState.from_json(stored) if stored else initial(event.session_id)
        new, decisions = step(state, event, Context(self.policy, now_ns()))
        if new is state:
            return  # already applied: a redelivery
        await self._publish(key, decisions)
        self.table[key] = new.to_json()

    async def _publish(self, key: bytes, decisions: tuple[Event, ...]) -> None:
        producer = self.app.producer
        pending = []
        for d in decisions:
            spec = TELEMETRY if isinstance(d, StageStamped) else TURNS
            pending.append(await producer.send(self.settings.topic(spec.name), key, spec.codec.encode(d),
                                               None, None, None))
            if not isinstance(d, StageStamped):
                log.info("%s", d.type, extra={"session_id": d.session_id, "turn_id": getattr(d, "turn_id", "")})
        if pending:
            await asyncio.gather(*pending)
