"""Bounded queues in front of one aiokafka producer, so that the media path never waits for Kafka.

``audio()`` and ``event()`` only append to a queue and return; a single task feeds the producer, with at most
``max_in_flight`` sends unacknowledged.

What a broker outage keeps (issue 18). A send that fails (aiokafka gives up after its request timeout) is not
lost: it goes back to its queue, in order, and the publisher turns to probing: one send at a time until one is
acknowledged, then everything queued goes out. Meanwhile the queues are bounded by what matters:

- audio: the most recent ``audio_bound`` frames. The oldest is dropped first: after the outage the recogniser
  gets what the person just said, not what they said a minute ago (which no turn can use any more);
- events: every decision (speech started/stopped, sessions, playout, telemetry) is kept up to ``event_bound``
  (sized for minutes of an edge's decisions); the VAD's per-frame heartbeats (VadProgress) are dropped first,
  the oldest first (the newest carries the session's media clock furthest). Order is kept: the turn processor
  relies on the order of each session's VAD events.

Every drop is counted (/metrics, and SessionEnded.frames_dropped for the session's own frames); the broker's
state is logged once per change, never per message.

Every event goes out with the header ``schemas.topics.TYPE_HEADER`` naming its type, so consumers skip the
ones they ignore (the ASR worker: the per-frame VadProgress) without decoding them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError

from ingest.metrics import Metrics
from runtime.tasks import Supervisor
from schemas.audio import AudioFrame, encode_frame
from schemas.base import Event
from schemas.edge import VadProgress
from schemas.topics import AUDIO, TYPE_HEADER, topic_of

log = logging.getLogger(__name__)

TASK = "kafka-publisher"
PROBE_INTERVAL_S = 0.5  # between failed probes of a broker that is away (each also waits its request timeout)
QUEUED, SENT, DROPPED = 0, 1, 2
KEYS_KEPT = 10_000  # session keys kept encoded


class _Item:
    __slots__ = ("topic", "key", "value", "headers", "queued_ns", "order", "session_id", "is_event", "heartbeat",
                 "state")

    def __init__(self, topic: str, session_id: str, key: bytes, value: bytes,
                 headers: list[tuple[str, bytes]] | None, order: int, is_event: bool, heartbeat: bool = False) -> None:
        self.topic, self.session_id, self.key, self.value, self.headers = topic, session_id, key, value, headers
        self.queued_ns, self.order = time.perf_counter_ns(), order
        self.is_event, self.heartbeat, self.state = is_event, heartbeat, QUEUED


class Publisher:
    def __init__(self, producer: AIOKafkaProducer, metrics: Metrics, topic_prefix: str,
                 audio_bound: int, event_bound: int, max_in_flight: int = 256) -> None:
        self._producer, self._metrics, self._prefix = producer, metrics, topic_prefix
        self._audio: deque[_Item] = deque()
        self._events: deque[_Item] = deque()  # may hold heartbeats dropped in place (state DROPPED)
        self._heartbeats: deque[_Item] = deque()  # the VadProgress among them, oldest first: dropped first
        self._live_events = 0
        self._audio_bound, self._event_bound, self._max_in_flight = audio_bound, event_bound, max_in_flight
        self._order = itertools.count()
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Event()  # an ack, a failure, a state change (wait_for)
        self._tasks: Supervisor | None = None
        self._in_flight = 0
        self._closed = False
        self.connected = True  # the broker acknowledges sends
        self._down_since = 0.0
        self._dropped_at_down = (0, 0)
        self._session_drops: dict[str, int] = {}  # frames of each session dropped (its SessionEnded says so)
        # Made once, not per frame: the audio topic's name, each event topic's, and each session's key.
        self._audio_topic = topic_prefix + AUDIO.name
        self._topics: dict[str, str] = {}
        self._keys: dict[str, bytes] = {}
        self._headers: dict[str, list[tuple[str, bytes]]] = {}
        metrics.gauge("voicebus_ingest_kafka_up", "1 while the broker acknowledges what the edge publishes.",
                      lambda: int(self.connected))

    @property
    def audio_depth(self) -> int:
        return len(self._audio)

    @property
    def event_depth(self) -> int:
        return self._live_events

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing waiting for an ack."""
        return not self._audio and not self._live_events and not self._in_flight

    async def start(self, tasks: Supervisor) -> None:
        await self._producer.start()
        self._tasks = tasks
        tasks.start(TASK, self._run)

    async def wait_for(self, predicate: Callable[[Publisher], bool], timeout: float) -> None:
        """Until ``predicate(self)`` holds (tests wait on it); TimeoutError after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    def audio(self, frame: AudioFrame) -> bool:
        """Queue a frame for voice.audio; False if it was dropped (the publisher is closed)."""
        if self._closed:
            self._drop_frame(frame.session_id)
            return False
        if len(self._audio) >= self._audio_bound:
            self._drop_frame(self._audio.popleft().session_id)  # the oldest speech goes first
        self._audio.append(_Item(self._audio_topic, frame.session_id, self._key(frame.session_id), encode_frame(frame),
                                 None, next(self._order), False))
        self._wakeup.set()
        return True

    def event(self, event: Event) -> bool:
        """Queue an event for the topic the registry puts it on; False if it was dropped."""
        spec = topic_of(type(event))
        if self._closed or (self._live_events >= self._event_bound and not self._drop_heartbeat()):
            self._dropped(spec.name, event.session_id, self._metrics.events_dropped)
            return False
        topic = self._topics.get(spec.name) or self._topics.setdefault(spec.name, self._prefix + spec.name)
        headers = self._headers.get(event.type) or self._headers.setdefault(event.type,
                                                                             [(TYPE_HEADER, event.type.encode())])
        item = _Item(topic, event.session_id, self._key(event.session_id), spec.codec.encode(event), headers,
                     next(self._order), True, isinstance(event, VadProgress))
        self._events.append(item)
        if item.heartbeat:
            self._heartbeats.append(item)
        self._live_events += 1
        self._wakeup.set()
        return True

    def _key(self, session_id: str) -> bytes:
        key = self._keys.get(session_id)
        if key is None:
            if len(self._keys) >= KEYS_KEPT:  # sessions come and go: forget them all now and then
                self._keys.clear()
            key = self._keys[session_id] = session_id.encode()
        return key

    def take_frames_dropped(self, session_id: str) -> int:
        """Frames of the session dropped so far, forgotten once read (at the session's end)."""
        return self._session_drops.pop(session_id, 0)

    async def stop(self, timeout_s: float) -> None:
        """Stop accepting, send what is queued, flush the producer (each bounded by ``timeout_s``)."""
        self._closed = True
        self._wakeup.set()
        try:
            async with asyncio.timeout(timeout_s):
                await self.wait_for(lambda p: p.idle, timeout_s)
                await self._producer.flush()
        except TimeoutError:
            log.warning("kafka flush timed out with %d frames and %d events queued", len(self._audio),
                        self._live_events)
        if self._tasks is not None:
            await self._tasks.cancel(TASK)
        await self._producer.stop()

    # -- losses --

    def _drop_frame(self, session_id: str) -> None:
        self._session_drops[session_id] = self._session_drops.get(session_id, 0) + 1
        self._dropped("audio", session_id, self._metrics.frames_dropped)

    def _drop_heartbeat(self) -> bool:
        """Make room among the events: drop the oldest queued VadProgress, if there is one."""
        while self._heartbeats:
            item = self._heartbeats.popleft()
            if item.state == QUEUED:
                item.state = DROPPED
                self._live_events -= 1
                self._dropped("voice.vad heartbeat", item.session_id, self._metrics.events_dropped)
                return True
        return False

    def _dropped(self, what: str, session_id: str, counter: Any) -> None:
        counter.inc()
        if self.connected and (counter.value == 1 or counter.value % 500 == 0):  # an outage says it once
            log.warning("kafka queue full: dropped %s (%d dropped so far)", what, counter.value,
                        extra={"session_id": session_id})

    # -- sending --

    def _take(self) -> _Item | None:
        """The next item to send: events first (few and small), then audio."""
        while self._events:
            item = self._events.popleft()
            if item.state == DROPPED:
                continue
            self._live_events -= 1
            item.state = SENT
            while self._heartbeats and self._heartbeats[0].state != QUEUED:
                self._heartbeats.popleft()  # sent or dropped: no longer one to drop (a failed send comes back
                # to the queue, not to this deque: few, they stay)
            return item
        if self._audio:
            item = self._audio.popleft()
            item.state = SENT
            return item
        return None

    def _requeue(self, item: _Item) -> None:
        """A failed send back to its queue, before everything queued after it (sends fail in about the order
        they were made, so it goes in near the front). The bounds hold for it too."""
        queue = self._events if item.is_event else self._audio
        i = 0
        while i < len(queue) and queue[i].order < item.order:
            i += 1
        item.state = QUEUED
        queue.insert(i, item)
        if item.is_event:
            self._live_events += 1
            if self._live_events > self._event_bound and not self._drop_heartbeat():
                queue.remove(item)
                item.state = DROPPED
                self._live_events -= 1
                self._dropped(item.topic, item.session_id, self._metrics.events_dropped)
        elif len(queue) > self._audio_bound:
            self._drop_frame(queue.popleft().session_id)

    async def _run(self) -> None:
        while True:
            item = self._take()
            if item is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.connected:
                while self._in_flight >= self._max_in_flight:
                    self._changed.clear()
                    await self._changed.wait()
                future = await self._send(item)
                if future is not None:
                    future.add_done_callback(lambda f, i=item: self._acked(i, f))
            elif not await self._probe(item):
                await asyncio.sleep(PROBE_INTERVAL_S)  # the broker is away: try again in a while

    async def _send(self, item: _Item) -> asyncio.Future[Any] | None:
        self._in_flight += 1
        try:
            return await self._producer.send(item.topic, value=item.value, key=item.key, headers=item.headers)
        except KafkaError as exc:  # no metadata within the request timeout: the broker is away
            self._in_flight -= 1
            self._failed(item, exc)
            return None

    async def _probe(self, item: _Item) -> bool:
        """Send one item and wait for its ack: whether the broker is back."""
        future = await self._send(item)
        if future is None:
            return False
        try:
            await future
        except KafkaError as exc:
            self._in_flight -= 1
            self._failed(item, exc)
            return False
        self._in_flight -= 1
        self._published(item)
        return True

    def _acked(self, item: _Item, future: asyncio.Future[Any]) -> None:
        self._in_flight -= 1
        if future.cancelled():
            self._failed(item, "cancelled")
        elif (exc := future.exception()) is not None:
            self._failed(item, exc)
        else:
            self._published(item)

    def _published(self, item: _Item) -> None:
        m = self._metrics
        m.publish_latency.observe((time.perf_counter_ns() - item.queued_ns) / 1e6)
        (m.events_published if item.is_event else m.frames_published).inc()
        if not self.connected:
            self.connected = True
            frames, events = m.frames_dropped.value - self._dropped_at_down[0], \
                m.events_dropped.value - self._dropped_at_down[1]
            log.info("kafka reachable again after %.1f s; dropped meanwhile: %d frames (the oldest), %d events "
                     "(VAD heartbeats first); %d frames and %d events still queued", time.monotonic()
                     - self._down_since, frames, events, len(self._audio), self._live_events)
        self._changed.set()

    def _failed(self, item: _Item, exc: object) -> None:
        self._metrics.publish_errors.inc()
        if isinstance(exc, KafkaError) and not (exc.retriable or isinstance(exc, KafkaTimeoutError)):
            # Refused for what it is (too large, not authorised): sending it again would block the queue.
            log.error("kafka refused a message for %s, dropped: %r", item.topic, exc,
                      extra={"session_id": item.session_id})
            (self._metrics.events_dropped if item.is_event else self._metrics.frames_dropped).inc()
            if not item.is_event:
                self._session_drops[item.session_id] = self._session_drops.get(item.session_id, 0) + 1
            self._changed.set()
            return
        self._requeue(item)
        if self.connected:
            self.connected = False
            self._down_since = time.monotonic()
            self._dropped_at_down = (self._metrics.frames_dropped.value, self._metrics.events_dropped.value)
            self._metrics.kafka_outages.inc()
            log.warning("kafka unreachable (%s): holding what the edge publishes (the last %d frames, every "
                        "decision) until it is back", exc, self._audio_bound)
        self._changed.set()
        self._wakeup.set()
