"""Bounded queues in front of one aiokafka producer, so that the media path never waits for Kafka.

``audio()`` and ``event()`` only append to a queue and return; a single task feeds the producer. When a queue
is at its bound, the new item is dropped and counted (and logged, rate-limited): media keeps flowing while
Kafka is slow, and the loss is visible in /metrics and in SessionEnded.frames_dropped.

Every event goes out with the header ``schemas.topics.TYPE_HEADER`` naming its type, so consumers skip the
ones they ignore (the ASR worker: the per-frame VadProgress) without decoding them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from aiokafka import AIOKafkaProducer

from ingest.metrics import Metrics
from runtime.tasks import Supervisor
from schemas.audio import AudioFrame, encode_frame
from schemas.base import Event
from schemas.topics import AUDIO, TYPE_HEADER, topic_of

log = logging.getLogger(__name__)

_Headers = list[tuple[str, bytes]] | None
_Item = tuple[str, bytes, bytes, _Headers, int]  # topic, key, value, headers, enqueue time (perf ns)
TASK = "kafka-publisher"


class Publisher:
    def __init__(self, producer: AIOKafkaProducer, metrics: Metrics, topic_prefix: str,
                 audio_bound: int, event_bound: int) -> None:
        self._producer, self._metrics, self._prefix = producer, metrics, topic_prefix
        self._audio: deque[_Item] = deque()
        self._events: deque[_Item] = deque()
        self._audio_bound, self._event_bound = audio_bound, event_bound
        self._wakeup = asyncio.Event()
        self._tasks: Supervisor | None = None
        self._in_flight = 0
        self._closed = False

    @property
    def audio_depth(self) -> int:
        return len(self._audio)

    @property
    def event_depth(self) -> int:
        return len(self._events)

    async def start(self, tasks: Supervisor) -> None:
        await self._producer.start()
        self._tasks = tasks
        tasks.start(TASK, self._run)

    def audio(self, frame: AudioFrame) -> bool:
        """Queue a frame for voice.audio; False if it was dropped."""
        if self._closed or len(self._audio) >= self._audio_bound:
            self._dropped("audio", frame.session_id, self._metrics.frames_dropped)
            return False
        self._audio.append((self._prefix + AUDIO.name, frame.session_id.encode(), encode_frame(frame),
                            None, time.perf_counter_ns()))
        self._wakeup.set()
        return True

    def event(self, event: Event) -> bool:
        """Queue an event for the topic the registry puts it on; False if it was dropped."""
        spec = topic_of(type(event))
        if self._closed or len(self._events) >= self._event_bound:
            self._dropped(spec.name, event.session_id, self._metrics.events_dropped)
            return False
        headers = [(TYPE_HEADER, event.type.encode())]
        self._events.append((self._prefix + spec.name, event.session_id.encode(), spec.codec.encode(event), headers,
                             time.perf_counter_ns()))
        self._wakeup.set()
        return True

    async def stop(self, timeout_s: float) -> None:
        """Stop accepting, send what is queued, flush the producer (each bounded by ``timeout_s``)."""
        self._closed = True
        self._wakeup.set()
        try:
            async with asyncio.timeout(timeout_s):
                while self._audio or self._events or self._in_flight:
                    await asyncio.sleep(0.01)  # bounded drain: the sender task empties the queues
                await self._producer.flush()
        except TimeoutError:
            log.warning("kafka flush timed out with %d frames and %d events queued",
                        len(self._audio), len(self._events))
        if self._tasks is not None:
            await self._tasks.cancel(TASK)
        await self._producer.stop()

    def _dropped(self, what: str, session_id: str, counter: Any) -> None:
        counter.inc()
        if counter.value == 1 or counter.value % 500 == 0:
            log.warning("kafka queue full: dropped %s (%d dropped so far)", what, counter.value,
                        extra={"session_id": session_id})

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._events or self._audio:
                is_event = bool(self._events)  # control events go first: they are few and small
                topic, key, value, headers, queued = (self._events if is_event else self._audio).popleft()
                self._in_flight += 1
                try:
                    future = await self._producer.send(topic, value=value, key=key, headers=headers)
                except Exception:  # noqa: BLE001 -- a broken send must not kill the publisher
                    self._in_flight -= 1
                    self._metrics.publish_errors.inc()
                    log.exception("kafka send to %s failed", topic)
                    continue
                future.add_done_callback(lambda f, q=queued, e=is_event: self._acked(f, q, e))

    def _acked(self, future: asyncio.Future[Any], queued_ns: int, is_event: bool) -> None:
        self._in_flight -= 1
        if future.cancelled() or future.exception() is not None:
            self._metrics.publish_errors.inc()
            return
        self._metrics.publish_latency.observe((time.perf_counter_ns() - queued_ns) / 1e6)
        (self._metrics.events_published if is_event else self._metrics.frames_published).inc()
