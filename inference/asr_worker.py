"""`voicebus asr`: voice.audio (+ voice.vad, voice.sessions) -> partial and final transcripts on voice.transcripts.

One recogniser stream per session while the person speaks, opened at the edge VAD's SpeechStarted (with a
little audio from before it, kept in a short ring) and finished at its SpeechStopped, so the final text is out
a few ms after the turn ends (a recogniser whose final takes longer starts it at the first pause:
``inference.speculation``).
At each speech stop an end-of-turn scorer (Smart Turn) also judges the turn's audio up to the stop, and its
score goes out just before the utterance's final (``inference.turn_scoring``).
The three topics are read with the range assignor: they are co-partitioned by session id, so one worker holds
all of a session. Audio is short-lived state: offsets are auto-committed and a
worker that takes over a session mid-utterance transcribes what it still finds in its ring.

Each transcript is also copied, as a SpeechRecognised, to the reply topic of the edge node holding the session
(the node named by the VAD events), so that the edge shows the person their words without reading every
session's transcripts (``inference.reply_nodes``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from inference import speculation
from inference.engine_choice import make_asr, make_turn_scorer
from inference.engines.base import AsrEngine, AsrStream, EngineError, TurnEndEngine
from inference.reply_nodes import ReplyNodes
from inference.settings import AsrSettings
from inference.speculation import Speculation
from inference.turn_scoring import TURN_PREROLL_MS, ScoreStats, TurnAudio, TurnScoring
from runtime.kafka import make_consumer, make_producer
from runtime.metrics import ServiceMetrics, serve_metrics, stop_serving
from runtime.service import run_until_signal
from runtime.tasks import Supervisor
from schemas.audio import AudioFrame
from schemas.base import Envelope, Stamper
from schemas.conversation import EndOfTurnScored, SpeechRecognised, TranscriptFinal, TranscriptPartial
from schemas.dlq import decode_or_dead_letter
from schemas.edge import SessionEnded, SessionStarted, SpeechStarted, SpeechStopped, VadProgress
from schemas.topics import AUDIO, DLQ, REPLIES, SESSIONS, TYPE_HEADER, VAD, replies_topic, spec_for, topic_of

log = logging.getLogger(__name__)

CONSUMES = (AUDIO, VAD, SESSIONS)  # co-partitioned: one worker holds all of a session
RING_MS = 2000  # audio kept before a SpeechStarted arrives (the VAD topic may lag the audio topic)
STOP_WAIT_S = 0.5  # after SpeechStopped, finish anyway once the session's audio has stalled this long
# Events of the subscribed topics that the worker does nothing with: a record whose type header names one is
# passed over undecoded (the edge sends a VadProgress per 20 ms frame for a while after every utterance).
IGNORED_TYPES = frozenset(m.model_fields["type"].default.encode() for m in (VadProgress, SessionStarted))
__all__ = ["AsrWorker", "RING_MS", "STOP_WAIT_S", "TURN_PREROLL_MS", "main"]


@dataclass
class Utterance:
    stream: AsrStream
    start_ns: int
    fed_until_ns: int = 0  # media time at the end of the last frame fed
    stop_ns: int | None = None  # the VAD's speech end: finish once audio up to it was fed
    stop_seen: float = 0.0  # monotonic time the SpeechStopped arrived
    stop_decided_ns: int | None = None  # media time of the SpeechStopped: the scored audio ends there
    vad_end_wall_ns: int | None = None  # when the edge decided speech stopped (the final's lag is from here)
    partial: str = ""
    next_partial_ns: int = 0
    speculation: Speculation = field(default_factory=Speculation)


@dataclass
class Session:
    stamper: Stamper  # this worker's envelopes (seq) for the session's transcripts
    ring: deque[AudioFrame] = field(default_factory=deque)
    utterance: Utterance | None = None
    last_audio: float = field(default_factory=time.monotonic)
    media_ns: int = 0  # media time of the last transcript sent: never goes backwards (schemas.conversation)
    turn: TurnAudio = field(default_factory=TurnAudio)  # for the end-of-turn scorer
    node_id: str = ""  # the edge node holding the session (from its VAD events): where the words are copied


@dataclass
class Stats(ScoreStats):
    utterances: int = 0
    partials: int = 0
    finals: int = 0
    empty_finals: int = 0
    errors: int = 0
    prepared: int = 0  # finals started at a pause (speculatively)
    prepared_used: int = 0  # ... that were the utterance's final
    final_lag_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))  # speech over -> final out
    finals_after_vad_end_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))  # wall clock


def _type_header(record: Any) -> bytes | None:
    """The record's event type header (schemas.topics.TYPE_HEADER), None without one."""
    for name, value in record.headers or ():
        if name == TYPE_HEADER:
            return value
    return None


def _order(item: tuple[str, Any]) -> tuple[int, int]:
    """Within a batch, one session's audio and VAD events in the order the edge made them (its media clock)."""
    kind, value = item
    return (value.media_ns, 0) if kind == "audio" else (value.media_ns, 1)


class AsrWorker:
    def __init__(self, settings: AsrSettings, engine: AsrEngine | None = None,
                 scorer: TurnEndEngine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_asr(settings)
        self.scorer = scorer or make_turn_scorer(settings)
        self.stats = Stats()
        self._scoring = (TurnScoring(self.scorer, settings.asr_turn_score_wait_ms / 1000, self.stats)
                         if self.scorer is not None else None)
        self._speculate_ns = (settings.asr_speculate_after_ms * 1_000_000
                              if self.engine.capabilities.speculative else 0)
        self._sessions: dict[str, Session] = {}
        self._producer: Any = None
        self._nodes: ReplyNodes | None = None
        self._changed = asyncio.Event()
        self.metrics = m = ServiceMetrics("asr")
        self.tasks = Supervisor(m, "voicebus_asr")
        m.gauge("voicebus_asr_sessions", "Sessions held (audio seen lately).", lambda: len(self._sessions))
        m.gauge("voicebus_asr_open_streams", "Utterances being recognised.", lambda: self.open_streams)
        m.counter("voicebus_asr_utterances_total", "Recogniser streams opened.", lambda: self.stats.utterances)
        m.counter("voicebus_asr_recogniser_errors_total", "Recogniser failures (the utterance is dropped).",
                  lambda: self.stats.errors)
        m.counter("voicebus_asr_finals_prepared_total", "Finals started at a pause, before the speech stop "
                  "(recognisers with a slow final).", lambda: self.stats.prepared)
        m.counter("voicebus_asr_finals_prepared_used_total", "Finals started at a pause that were the utterance's "
                  "final (the rest: the person went on).", lambda: self.stats.prepared_used)
        m.counter("voicebus_asr_turn_scores_total", "End-of-turn scores sent (one per speech stop).",
                  lambda: self.stats.scores)
        m.counter("voicebus_asr_turn_scores_missed_total", "Speech stops whose end-of-turn score was late or "
                  "failed: the final went alone and the turn processor used silence and text.",
                  lambda: self.stats.scores_missed)

    async def wait_for(self, predicate: Any, timeout: float) -> None:
        """Until ``predicate(self)`` holds (tests and benchmarks wait on it); TimeoutError after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    @property
    def open_streams(self) -> int:
        return sum(s.utterance is not None for s in self._sessions.values())

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        s = self.settings
        await self.engine.warm()
        if self.scorer is not None:
            await self.scorer.warm()
        names = [s.topic(spec.name) for spec in CONSUMES]
        consumer = make_consumer(s, *names, group_id=s.asr_group_id, enable_auto_commit=True,
                                 auto_commit_interval_ms=1000, session_timeout_ms=s.asr_session_timeout_ms,
                                 heartbeat_interval_ms=s.asr_session_timeout_ms // 5,
                                 group_instance_id=s.asr_group_instance_id or None,
                                 partition_assignment_strategy=(RangePartitionAssignor,))
        self._producer = make_producer(s)
        self._nodes = ReplyNodes(self._producer, lambda node: s.topic(replies_topic(node)))
        await self._producer.start()
        await consumer.start()
        self.metrics.consumer = consumer
        metrics = await serve_metrics(self.metrics, s.metrics_host, s.asr_metrics_port,
                                      down=lambda: self.tasks.down)
        log.info("asr worker: engine %s", self.engine.name)
        if ready is not None:
            ready.set()
        try:
            self.tasks.start("asr-consumer", lambda: self._consume(consumer, stop), until=stop)
            await self.tasks.join()
        finally:
            await self.tasks.stop()
            await stop_serving(metrics)
            for sid in list(self._sessions):
                await self._end_session(sid)
            await self._nodes.aclose()
            await consumer.stop()
            await self._producer.stop()
            await self.engine.aclose()
            if self.scorer is not None:
                await self.scorer.aclose()

    async def _consume(self, consumer: Any, stop: asyncio.Event) -> None:
        """The worker's loop (supervised: runtime.tasks restarts it if it dies). Audio is short-lived state with
        auto-committed offsets: what a dead loop's batch still held is not read again."""
        s = self.settings
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            t0 = time.perf_counter()
            self.metrics.consumed(batch)
            by_session: dict[str, list[tuple[str, Any]]] = {}
            for tp, records in batch.items():
                spec = spec_for(tp.topic.removeprefix(s.topic_prefix))
                kind = "audio" if spec is AUDIO else "event"
                for record in records:
                    if kind == "event" and _type_header(record) in IGNORED_TYPES:
                        continue
                    value = await decode_or_dead_letter(spec.codec, record, self._producer, s.topic(DLQ.name),
                                                        consumer="asr")
                    if value is not None:
                        by_session.setdefault(value.session_id, []).append((kind, value))
                    else:
                        self.metrics.dead_letters.inc()
            await asyncio.gather(*(self._session_batch(sid, sorted(items, key=_order))
                                   for sid, items in by_session.items()))
            await self._sweep()
            if batch:
                self.metrics.processing.observe((time.perf_counter() - t0) * 1000)
            self._changed.set()

    async def _session_batch(self, session_id: str, items: list[tuple[str, Any]]) -> None:
        for kind, value in items:
            try:
                if kind == "audio":
                    await self._audio(session_id, value)
                elif isinstance(value, SpeechStarted):
                    await self._speech_started(session_id, value)
                elif isinstance(value, SpeechStopped):
                    await self._speech_stopped(session_id, value)
                elif isinstance(value, SessionEnded):
                    await self._end_session(session_id)
            except EngineError as exc:
                self.stats.errors += 1
                log.error("recogniser failed: %s", exc, extra={"session_id": session_id})
                await self._drop_utterance(session_id)

    # -- per session ---------------------------------------------------------------------------------------

    def _session(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            session = self._sessions[session_id] = Session(Stamper(session_id, first_seq=1))
        return session

    async def _audio(self, session_id: str, frame: AudioFrame) -> None:
        session = self._session(session_id)
        session.last_audio = time.monotonic()
        session.ring.append(frame)
        while session.ring and session.ring[0].media_ns < frame.media_ns - RING_MS * 1_000_000:
            session.ring.popleft()
        if self.scorer is not None:
            session.turn.add(frame)
        utt = session.utterance
        if utt is None:
            return
        await self._feed(session_id, utt, frame)
        too_long = frame.media_ns - utt.start_ns > self.settings.asr_max_utterance_s * 1e9
        if (utt.stop_ns is not None and utt.fed_until_ns > utt.stop_ns) or too_long:
            await self._finish(session_id)

    async def _feed(self, session_id: str, utt: Utterance, frame: AudioFrame) -> None:
        preroll_ns = self.settings.asr_preroll_ms * 1_000_000
        if frame.media_ns < max(utt.fed_until_ns, utt.start_ns - preroll_ns):
            return  # before the utterance, or fed already
        await utt.stream.push(frame.pcm)
        utt.fed_until_ns = frame.media_ns + frame.duration_ns
        utt.speculation, prepare = speculation.on_frame(utt.speculation, utt.fed_until_ns, frame.duration_ns,
                                                        frame.voiced, self._speculate_ns)
        if prepare:
            self.stats.prepared += 1
            await utt.stream.prepare()
        caps = self.engine.capabilities
        if (caps.streaming or caps.speculative) and utt.fed_until_ns >= utt.next_partial_ns:
            utt.next_partial_ns = utt.fed_until_ns + self.settings.asr_partial_interval_ms * 1_000_000
            text = await utt.stream.partial()
            if text and text != utt.partial:
                utt.partial = text
                self.stats.partials += 1
                await self._send(session_id, TranscriptPartial(
                    text=text, start_media_ns=utt.start_ns, end_media_ns=utt.fed_until_ns,
                    engine=self.engine.name, **self._base(session_id, utt.fed_until_ns)))

    async def _speech_started(self, session_id: str, event: SpeechStarted) -> None:
        session = self._session(session_id)
        self._held_by(session, event.node_id)
        if session.utterance is not None:
            log.warning("speech started before the last utterance stopped: finishing it",
                        extra={"session_id": session_id})
            await self._finish(session_id)
        await self._open(session_id, event.speech_start_media_ns)

    async def _open(self, session_id: str, start_ns: int) -> Utterance:
        session = self._sessions[session_id]
        session.turn.speech_started(start_ns, self.settings.asr_turn_gap_ms * 1_000_000)
        rate = session.ring[-1].sample_rate if session.ring else 16000
        utt = session.utterance = Utterance(await self.engine.stream(rate), start_ns)
        self.stats.utterances += 1
        for frame in list(session.ring):  # the speech's beginning arrived before the VAD said so
            await self._feed(session_id, utt, frame)
        return utt

    async def _speech_stopped(self, session_id: str, event: SpeechStopped) -> None:
        session = self._session(session_id)
        self._held_by(session, event.node_id)
        utt = session.utterance
        if utt is None:  # started before this worker held the session: use what the ring still has
            utt = await self._open(session_id, event.speech_start_media_ns)
        utt.stop_ns = event.speech_end_media_ns
        utt.stop_seen = time.monotonic()
        utt.stop_decided_ns = event.media_ns
        utt.vad_end_wall_ns = event.wall_ns
        if utt.fed_until_ns > utt.stop_ns:
            await self._finish(session_id)

    async def _finish(self, session_id: str) -> None:
        session = self._sessions[session_id]
        utt, session.utterance = session.utterance, None
        if utt is None:
            return
        t0 = time.perf_counter()
        # Scored alongside the recogniser's last work.
        scoring = self._scoring.start(session.turn, utt.stop_decided_ns) if self._scoring else None
        prepared = utt.stop_ns is not None and speculation.stands(utt.speculation, utt.stop_ns)
        try:
            text = " ".join((await (utt.stream.finish_prepared() if prepared else utt.stream.finish())).split())
        finally:
            await utt.stream.aclose()
        self.stats.prepared_used += prepared
        end_ns = max(utt.stop_ns if utt.stop_ns is not None else utt.fed_until_ns, utt.start_ns)
        session.turn.last_end_ns = end_ns
        probability = await self._scoring.result(session_id, scoring) if self._scoring else None
        # The score first (schemas.conversation): a turn processor that has the final has the score too.
        if probability is not None:
            await self._send(session_id, EndOfTurnScored(
                start_media_ns=utt.start_ns, end_media_ns=end_ns, probability=probability,
                engine=self.scorer.name if self.scorer else "",
                **self._base(session_id, max(end_ns, utt.fed_until_ns))))
        # The span is the speech; the event's media time is the audio consumed, as for the partials before it.
        await self._send(session_id, TranscriptFinal(
            text=text, start_media_ns=utt.start_ns, end_media_ns=end_ns,
            engine=self.engine.name, **self._base(session_id, max(end_ns, utt.fed_until_ns))))
        self.stats.finals += 1
        self.stats.empty_finals += not text
        self.stats.final_lag_ms.append((time.perf_counter() - t0) * 1000)
        if utt.vad_end_wall_ns is not None:
            self.stats.finals_after_vad_end_ms.append((time.time_ns() - utt.vad_end_wall_ns) / 1e6)
        if not text:
            log.info("utterance gave no words", extra={"session_id": session_id})

    async def _drop_utterance(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None and session.utterance is not None:
            utt, session.utterance = session.utterance, None
            await utt.stream.aclose()

    async def _end_session(self, session_id: str) -> None:
        if session_id in self._sessions:
            await self._finish(session_id)
            del self._sessions[session_id]

    async def _sweep(self) -> None:
        """Finish utterances whose audio will not come, forget sessions gone quiet (SessionEnded lost)."""
        now = time.monotonic()
        for sid, session in list(self._sessions.items()):
            utt = session.utterance
            # Audio still flowing will reach the speech end (the VAD topic may run ahead); stalled audio will not.
            stalled = utt is not None and now - max(utt.stop_seen, session.last_audio) > STOP_WAIT_S
            if utt is not None and utt.stop_ns is not None and stalled:
                await self._finish(sid)
            if now - session.last_audio > self.settings.asr_idle_session_s:
                await self._end_session(sid)

    # -- output --------------------------------------------------------------------------------------------

    def _base(self, session_id: str, media_ns: int) -> Envelope:
        session = self._sessions[session_id]
        session.media_ns = max(session.media_ns, media_ns)
        return session.stamper(session.media_ns)

    async def _send(self, session_id: str, event: TranscriptPartial | TranscriptFinal | EndOfTurnScored) -> None:
        spec = topic_of(type(event))
        await self._producer.send(self.settings.topic(spec.name), spec.codec.encode(event), key=session_id.encode())
        self.metrics.events_out.inc()
        node = self._sessions[session_id].node_id
        if isinstance(event, TranscriptPartial | TranscriptFinal) and node and self._nodes.known(node):
            copy = SpeechRecognised(**event.model_dump(include={"session_id", "seq", "media_ns", "wall_ns", "text",
                                                                "start_media_ns", "end_media_ns"}),
                                    final=isinstance(event, TranscriptFinal))
            await self._producer.send(self.settings.topic(replies_topic(node)), REPLIES.codec.encode(copy),
                                      key=session_id.encode())
            self.metrics.events_out.inc()

    def _held_by(self, session: Session, node_id: str) -> None:
        session.node_id = node_id
        self._nodes.known(node_id)  # looked up now, so that it is known by the utterance's first transcript


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicebus asr", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    settings = AsrSettings()
    return run_until_signal(settings, AsrWorker(settings).run)
