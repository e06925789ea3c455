"""The Faust shell around the pure core: decode, step, send the decisions, then write the table.

Events cross Faust as raw bytes; the schemas codecs are the only (de)serialisers of events. The table holds
each session's TurnState as the object itself (the in-memory store); only its changelog, the registry's
compacted changelog topic, serialises it, as ``TurnState.to_json()`` bytes (``StateCodec``).

Order matters for at-least-once delivery: decisions are sent and acknowledged before the new state is written,
so a state in the changelog never claims a decision that was not published. A crash between the two replays
the event and republishes the same decisions (same turn ids and seqs); a crash after both finds the event
already applied (the state's per-source watermark) and publishes nothing again.

Most events only move the media clock (the edge's VadProgress, one per 20 ms frame for 2 s after each
utterance): such a state goes to the store but not to the changelog, at most a second of media time long
(``needs_write`` says why that is safe).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.serializers import codecs
from pydantic import ValidationError

from runtime.metrics import Counter, ServiceMetrics, partition_lag
from schemas.base import Event, now_ns
from schemas.conversation import TurnCancelled
from schemas.dlq import decode_or_dead_letter
from schemas.telemetry import StageStamped
from schemas.topics import (
    DLQ,
    PLAYOUT,
    SESSION_PARTITIONS,
    SESSIONS,
    TRANSCRIPTS,
    TURN_STATE_CHANGELOG,
    TYPE_HEADER,
    VAD,
    spec_for,
    topic_of,
)
from streams.turns.core import Context, initial, step
from streams.turns.policy import Policy
from streams.turns.settings import TurnSettings
from streams.turns.state import TurnState

log = logging.getLogger(__name__)
TABLE = "turn-state"
SOURCES = (VAD, TRANSCRIPTS, PLAYOUT, SESSIONS)
CONSUMES = (*SOURCES, TURN_STATE_CHANGELOG)  # the changelog: read back to recover the table
WRITE_EVERY_NS = 1_000_000_000  # a state that only moved the clock still reaches the changelog once a second
_CLOCK_FIELDS = frozenset({"now_ns", "seen"})


class StateCodec(codecs.Codec):
    """The table's values on its changelog: TurnState <-> its JSON (the bytes the topic has always held)."""

    def _dumps(self, s: Any) -> bytes:
        return s.to_json()  # type: ignore[no-any-return]

    def _loads(self, s: bytes) -> Any:
        try:
            return TurnState.from_json(s)
        except ValidationError as exc:
            # A state written by an older version of the core (its shape changed): the session starts afresh
            # rather than the processor failing its recovery forever.
            log.warning("turn state in the changelog is unreadable, starting the session afresh: %s",
                        str(exc).splitlines()[0])
            return None


def needs_write(old: TurnState | None, new: TurnState, decisions: tuple[Event, ...]) -> bool:
    """Whether ``new`` must go to the changelog, or only to the store.

    Not written: a step that decided nothing and changed only the media clock and the per-source watermarks
    (``now_ns``, ``seen``), unless the clock crossed a whole second. Why at-least-once still holds: the
    changelog always holds a state the core really reached, and every event applied after it only moved the
    clock. After a crash the restored state is that one. An event after it that is redelivered re-applies on
    it and again decides nothing (the core is deterministic; the clock-only events re-apply in their topic's
    order). One whose offset was committed is not redelivered, and nothing is lost with it: the next VAD event
    carries the clock at least as far (the VAD topic is in order and the clock is the maximum of its media
    times), and its watermark only served to recognise it. Until that event, a transcript or playout event
    sees the older clock, as when it is read ahead of the VAD, which the core handles anyway. The
    once-a-second write keeps the restored clock within a second of media time of where it was.
    """
    if old is None or decisions or new.now_ns // WRITE_EVERY_NS != old.now_ns // WRITE_EVERY_NS:
        return True
    before = old.__dict__  # the fields (the core's model_copy keeps the unchanged ones: the same objects)
    for name, value in new.__dict__.items():
        if value is not before[name] and name not in _CLOCK_FIELDS and value != before[name]:
            return True
    return False


class TurnMetrics(ServiceMetrics):
    def __init__(self, lag: Callable[[], float]) -> None:
        super().__init__("streams", per="event", lag=lag)
        self.asr_timeouts = Counter("voicebus_streams_asr_timeouts_total", "Turns ended unanswered because their "
                                    "final transcript did not come within the ASR wait (turn_asr_wait_ms).")


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
        self._sources = frozenset(settings.topic(spec.name) for spec in SOURCES)
        self.metrics = TurnMetrics(self._lag)
        raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
        state_codec = StateCodec()
        source = app.topic(*(settings.topic(spec.name) for spec in SOURCES), **raw)
        # acks=False as Faust's own changelogs have: the topic is read only to recover the table, never by a
        # stream that acks its events, and Faust's livelock check takes an acked topic nobody streams for a
        # stalled stream ("Stream has not started processing TP(...changelog...)", an ERROR every few minutes).
        changelog = app.topic(settings.topic(TURN_STATE_CHANGELOG.name), partitions=SESSION_PARTITIONS,
                              compacting=True, deleting=False, internal=True, key_serializer="raw",
                              value_serializer=state_codec, acks=False)
        self.table = app.Table(TABLE, partitions=SESSION_PARTITIONS, changelog_topic=changelog,
                               key_type=bytes, value_type=TurnState)
        # Faust takes a table's serializer from a faust Record's options; TurnState is pydantic: set it here.
        # The table writes its changelog with it (send_changelog); the topic reads with it (recovery).
        self.table.value_serializer = state_codec
        app.agent(source, name="turns")(self._agent)
        self.metrics.gauge("voicebus_streams_sessions", "Sessions in the turn table (this worker's partitions).",
                           lambda: len(self.table))

    async def _agent(self, stream: Any) -> None:
        m = self.metrics
        async for event in stream.events():
            t0 = time.perf_counter()
            m.events_in.inc()
            await self.handle(event.message)
            m.processing.observe((time.perf_counter() - t0) * 1000)

    def _lag(self) -> int:
        """Over the source partitions assigned: the consumer's highwater minus the offset after the last record
        Faust read (its Monitor sensor notes it for every record)."""
        consumer = self.app.consumer
        try:
            assigned = consumer.assignment()
        except ConsumerNotStarted:
            return 0
        read = self.app.monitor.tp_read_offsets

        def highwater(tp: Any) -> int | None:
            try:
                return consumer.highwater(tp)
            except AssertionError:  # revoked since (aiokafka asserts the partition is assigned)
                return None

        return partition_lag((tp for tp in assigned if tp.topic in self._sources), highwater,
                             lambda tp: None if (offset := read.get(tp)) is None else offset + 1)

    async def handle(self, message: Any) -> None:
        spec = spec_for(message.topic.removeprefix(self.settings.topic_prefix))
        event = await decode_or_dead_letter(spec.codec, message, self._dlq, self.settings.topic(DLQ.name),
                                            consumer=self.consumer_name)
        if event is None:
            self.metrics.dead_letters.inc()
            return
        key = event.session_id.encode()
        stored: TurnState | None = self.table.get(key)
        state = stored if stored is not None else initial(event.session_id)
        new, decisions = step(state, event, Context(self.policy, now_ns()))
        if new is state:
            return  # already applied: a redelivery
        await self._publish(key, decisions)
        if needs_write(stored, new, decisions):
            self.table[key] = new  # the store, and the changelog
        else:
            self.table.raw_update({key: new})  # the store only: the clock moved (needs_write)

    async def _publish(self, key: bytes, decisions: tuple[Event, ...]) -> None:
        producer = self.app.producer
        pending = []
        for d in decisions:
            spec = topic_of(type(d))
            pending.append(await producer.send(self.settings.topic(spec.name), key, spec.codec.encode(d),
                                               None, None, [(TYPE_HEADER, d.type.encode())]))
            if isinstance(d, TurnCancelled) and d.reason == "asr_timeout":
                self.metrics.asr_timeouts.inc()
                log.warning("turn cancelled: no final transcript within the ASR wait (%d ms); is the ASR worker "
                            "up?", self.settings.turn_asr_wait_ms,
                            extra={"session_id": d.session_id, "turn_id": d.turn_id})
            elif not isinstance(d, StageStamped):
                log.info("%s", d.type, extra={"session_id": d.session_id, "turn_id": getattr(d, "turn_id", "")})
        if pending:
            self.metrics.events_out.inc(len(pending))
            await asyncio.gather(*pending)
