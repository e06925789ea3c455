"""`voicebus responder`: voice.turns -> LLM -> sentence TTS -> reply events on voice.replies.<node_id>.

Responders form one consumer group: add processes to scale, and when one dies its partitions move to another.
Offsets are committed only once a turn's reply is finished, so the new owner answers an interrupted turn
again; its chunks repeat the same (turn_id, index), which the edge drops as duplicates. A turn the new owner
finds too old to answer (``responder_max_turn_age_s``) is cancelled at the edge instead (``ReplyCancelled``): a
responder may have died mid-reply, and the edge would otherwise hold the cut reply until its stall timeout.
Speculative turns are answered ahead and held until committed (see inference.reply). Cancels stop a reply
mid-stream.

A barge-in (``BargeIn``) does not stop the reply: the edge has paused it and keeps its unplayed audio, and the
turn processor has yet to judge it. The history records what was heard so far; generation goes on at its
normal pace (the edge queues what comes meanwhile, at most ``reply_resume_window_ms`` more than usual). Words
make it real: ``TurnCancelled`` / ``TurnEnded(interrupted)`` cancel the reply as any cancel does. No words: on
``FalseInterruption`` the edge is told ``ReplyResumed`` (also when the reply finished generating here: the
edge may hold its rest) and the history forgets the truncation. A paused reply not judged within
``reply_resume_window_ms`` is cancelled (inference.paused keeps those clocks).

The history is also on the log (voice.history, schemas.history), so it survives the responder: each change the
turn events alone cannot rebuild (a reply made, a barge-in, a false interruption) publishes the session's
history, and the broker has it before the offsets of the turn events that made it are committed. A responder
assigned partitions of voice.turns first reads the same partitions of voice.history (the topics are
co-partitioned by session), then reads on from the committed offsets: the fold goes on where it was.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from inference.answering import Stats, Turn, add_work
from inference.engine_choice import make_llm, make_tts
from inference.engines.base import LlmEngine, TtsEngine
from inference.history import History
from inference.history_log import HistoryLog
from inference.offsets import OffsetTracker
from inference.paused import PausedReplies
from inference.reply import ReplyJob
from inference.settings import ResponderSettings
from runtime.kafka import make_consumer, make_producer, rewind
from runtime.metrics import ServiceMetrics, serve_metrics, stop_serving
from runtime.service import run_until_signal
from runtime.tasks import Supervisor
from schemas.base import Event, Stamper
from schemas.conversation import (
    BargeIn,
    FalseInterruption,
    ReplyCancelled,
    ReplyResumed,
    TurnCancelled,
    TurnCommitted,
    TurnEnded,
    TurnSpeculative,
)
from schemas.dlq import dead_letter_for, decode_or_dead_letter
from schemas.topics import DLQ, HISTORY, REPLIES, TURNS, replies_topic, topic_of

log = logging.getLogger(__name__)

SOURCES = (TURNS,)
CONSUMES = (*SOURCES, HISTORY)  # the history: read back, for the sessions of the partitions assigned
WORKER_HEADER = "voicebus-worker"  # which process produced a reply event (for operators and tests)
# How long after its turn's age limit a reply cut by a dead responder may still be held at an edge (the edge itself
# ends a reply that stalls for 10 s, ingest.playout.REPLY_STALL_MS; a long reply lasts a minute at most).
CUT_REPLY_S = 60.0
RECENT_TURNS = 10_000  # finished turns remembered to ignore redeliveries and to cancel replies still playing


class Responder:
    def __init__(self, settings: ResponderSettings, llm: LlmEngine | None = None,
                 tts: TtsEngine | None = None) -> None:
        self.settings = settings
        self.llm = llm or make_llm(settings)
        self.tts = tts or make_tts(settings)
        self.stats = Stats()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._history = History(settings.responder_history_turns, settings.responder_max_sessions)
        self._active: dict[str, Turn] = {}
        # turn id -> (node id, the edge may hold its audio: it got some and was not told to drop it)
        self._done: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._paused = PausedReplies(settings.reply_resume_window_ms / 1000, self._give_up)
        self._offsets: OffsetTracker[TopicPartition] = OffsetTracker()
        self._nodes: dict[str, tuple[bool, float]] = {}  # node id -> (reply topic exists, until when)
        self._stampers: dict[str, Stamper] = {}
        self._changed = asyncio.Event()  # pulsed whenever a turn makes progress or ends
        self._producer: Any = None
        self._log: HistoryLog | None = None  # the history on voice.history
        self._history_ready = asyncio.Event()  # the assigned sessions' histories are rebuilt
        self.metrics = m = ServiceMetrics("responder")
        self.tasks = Supervisor(m, "voicebus_responder")
        m.gauge("voicebus_responder_active_replies", "Replies being made (speculative ones included).",
                lambda: len(self._active))
        m.counter("voicebus_responder_turns_total", "Turns answered (replies started).", lambda: self.stats.turns)
        m.counter("voicebus_responder_replies_completed_total", "Replies made to their end.",
                  lambda: self.stats.completed)
        m.counter("voicebus_responder_replies_cancelled_total", "Replies stopped by a cancel or a barge-in.",
                  lambda: self.stats.cancelled)
        m.counter("voicebus_responder_replies_failed_total", "Replies that failed (engine error, unknown node).",
                  lambda: self.stats.failed)
        m.counter("voicebus_responder_speculative_wasted_total", "Speculative replies thrown away.",
                  lambda: self.stats.speculative_wasted)
        m.counter("voicebus_responder_replies_resumed_total", "Replies paused by a barge-in that proved false "
                  "(no words) and resumed.", lambda: self.stats.resumed)

    async def wait_for(self, predicate: Callable[[Responder], bool], timeout: float) -> None:
        """Until ``predicate(self)`` holds (tests and benchmarks wait on it); TimeoutError after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    def held_audio_ms(self, turn_id: str) -> float:
        """Audio made for a speculative turn still held back (0 if there is none)."""
        turn = self._active.get(turn_id)
        return turn.job.work.audio_ms if turn is not None and turn.job.held else 0.0

    def _notify(self) -> None:
        self._changed.set()

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        s = self.settings
        await asyncio.gather(self.llm.warm(), self.tts.warm())
        self._producer = make_producer(s)
        topics = [s.topic(spec.name) for spec in SOURCES]
        consumer = make_consumer(s, *topics, group_id=s.responder_group_id,
                                 session_timeout_ms=s.responder_session_timeout_ms,
                                 heartbeat_interval_ms=s.responder_session_timeout_ms // 5,
                                 group_instance_id=s.responder_group_instance_id or None)
        loader = make_consumer(s, group_id=None)
        self._log = HistoryLog(s, self._history, self._producer, loader, self._stamper)
        await self._producer.start()
        await loader.start()
        consumer.subscribe(topics, listener=_Rebalance(self, consumer))
        await consumer.start()
        self.metrics.consumer = consumer
        metrics = await serve_metrics(self.metrics, s.metrics_host, s.responder_metrics_port,
                                      down=lambda: self.tasks.down)
        log.info("responder %s: llm %s, tts %s", self.worker, self.llm.name, self.tts.name)
        if ready is not None:
            ready.set()
        try:
            self.tasks.start("responder-consumer", lambda: self._consume(consumer, stop), until=stop)
            await self.tasks.join()
        finally:
            await self.tasks.stop()
            await stop_serving(metrics)
            await self._paused.close()
            await self._abandon(list(self._active.values()))
            await self._commit(consumer)
            await consumer.stop()
            await loader.stop()
            await self._producer.stop()
            await self.llm.aclose()
            await self.tts.aclose()

    async def _consume(self, consumer: Any, stop: asyncio.Event) -> None:
        """The responder's loop (supervised: runtime.tasks restarts it if it dies). A record whose handling
        raised counts as consumed (it is not read again: that would kill the loop again), the rest of its
        batch is read again."""
        s = self.settings
        await rewind(consumer, self._offsets.next_offsets())
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            if batch:
                await self._history_ready.wait()  # records of partitions just assigned wait for their history
            t0 = time.perf_counter()
            self.metrics.consumed(batch)
            for tp, records in batch.items():
                for record in records:
                    self._offsets.consumed(tp, record.offset)
                    event = await decode_or_dead_letter(TURNS.codec, record, self._producer,
                                                        s.topic(DLQ.name), consumer="responder")
                    if event is not None:
                        await self._handle(event, tp, record)
                    else:
                        self.metrics.dead_letters.inc()
                    self._notify()
            await self._commit(consumer)
            if batch:
                self.metrics.processing.observe((time.perf_counter() - t0) * 1000)

    async def _commit(self, consumer: Any) -> None:
        offsets = self._offsets.committable()
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
            self._offsets.committed(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("offsets not committed (a rebalance moved partitions): %s", exc)

    # -- turn events ---------------------------------------------------------------------------------------

    async def _handle(self, event: Event, tp: TopicPartition, record: Any) -> None:
        ctx = {"session_id": event.session_id, "turn_id": getattr(event, "turn_id", None)}
        if isinstance(event, TurnSpeculative | TurnCommitted):
            if self._history.answered(event.session_id, event.turn_id) and event.turn_id not in self._done:
                # Answered by the responder this one took the session over from (its history says so): the
                # edge holds the reply, which a cancel or a resume may still concern.
                self._done[event.turn_id] = (event.node_id, True)
            if event.turn_id in self._done or (
                    isinstance(event, TurnSpeculative) and event.turn_id in self._active):
                self.stats.duplicates += 1
                log.info("turn already answered: ignored", extra=ctx)
            elif (age := (time.time_ns() - event.wall_ns) / 1e9) > self.settings.responder_max_turn_age_s:
                self.stats.stale += 1
                log.warning("turn is %.0f s old (a replay?): not answered", age, extra=ctx)
                if isinstance(event, TurnCommitted) and age < self.settings.responder_max_turn_age_s + CUT_REPLY_S:
                    # Not answered here, and maybe begun by a responder that died mid-reply: the edge may hold a
                    # reply cut short, so it is told to drop it (an edge that holds none ignores this). Older
                    # turns (a new group reading the log from its start) are left alone: none can still play.
                    self._done[event.turn_id] = (event.node_id, False)
                    await self._tell_edge(ReplyCancelled(**self._stamper(event.session_id)(0),
                                                         turn_id=event.turn_id), event.node_id)
            elif not event.text.strip():
                self.stats.empty += 1
                log.warning("%s with an empty transcript: nothing to answer", event.type, extra=ctx)
            elif isinstance(event, TurnSpeculative):
                await self._begin(event, tp, record, held=True)
            else:
                await self._commit_turn(event, tp, record)
        elif isinstance(event, TurnCancelled):
            self._paused.unpause(event.turn_id)
            if event.reason == "session_ended" and self._history.knows(event.session_id):
                assert self._log is not None
                await self._log.forget(event.session_id)
            await self._cancel(event.turn_id, event.session_id, event.node_id, event.reason != "withdrawn")
        elif isinstance(event, BargeIn):
            # Paused at the edge, not stopped: the turn processor has yet to say whether words came.
            self._paused.pause(event)
            if self._history.heard(event.session_id, event.turn_id, event.played_ms):
                await self._record(event.session_id, event.media_ns)
        elif isinstance(event, TurnEnded):
            self._paused.unpause(event.turn_id)
            if event.outcome != "completed":
                await self._cancel(event.turn_id, event.session_id, event.node_id, True)
        elif isinstance(event, FalseInterruption):
            await self._resume(event)

    async def _commit_turn(self, event: TurnCommitted, tp: TopicPartition, record: Any) -> None:
        for other in [t for t in self._active.values()
                      if t.job.turn.session_id == event.session_id and t.job.turn_id != event.turn_id]:
            await self._cancel(other.job.turn_id, event.session_id, event.node_id, True)  # superseded
        turn = self._active.get(event.turn_id)
        if turn is not None and turn.job.released:
            self.stats.duplicates += 1
            return
        if turn is not None and " ".join(turn.job.turn.text.split()) == " ".join(event.text.split()):
            turn.offsets.append((tp, record.offset))
            self._offsets.hold(tp, record.offset)
            turn.committed_ns = time.monotonic_ns()
            await turn.job.release(self._history.add(event.session_id, event.turn_id, event.text), event.wall_ns)
            return
        if turn is not None:  # the text changed since the speculation: start again from the committed text
            await self._cancel(event.turn_id, event.session_id, event.node_id, False)
            await turn.job.wait()
        await self._begin(event, tp, record, held=False)

    async def _begin(self, event: TurnSpeculative | TurnCommitted, tp: TopicPartition, record: Any,
                     held: bool) -> None:
        s = self.settings
        messages = self._history.messages(event.session_id, s.llm_system_prompt, event.text, event.turn_id)
        job = ReplyJob(event, messages, self.llm, self.tts, send=lambda ev: self._send(turn, ev),
                       envelope=self._stamper(event.session_id), chunk_ms=s.responder_chunk_ms,
                       max_lead_ms=s.responder_max_lead_ms, held=held, on_progress=self._notify)
        turn = Turn(job, record, [(tp, record.offset)], speculative=held,
                    committed_ns=None if held else time.monotonic_ns())
        if not held:
            job.exchange = self._history.add(event.session_id, event.turn_id, event.text)
        self._offsets.hold(tp, record.offset)
        self._active[event.turn_id] = turn
        self.stats.turns += 1
        self.stats.speculative += held
        turn.task = asyncio.create_task(self._answer(turn), name=f"answer-{event.turn_id}")

    async def _answer(self, turn: Turn) -> None:
        job = turn.job
        try:
            if not await self._node_known(job.turn.node_id):
                job.outcome = "failed"
                self.stats.unknown_node += 1
                error = f"no reply topic for node {job.turn.node_id!r}: unknown node"
                log.error(error, extra={"session_id": job.turn.session_id, "turn_id": job.turn_id})
                letter = dead_letter_for(turn.record, error, consumer="responder")
                await self._producer.send_and_wait(self.settings.topic(DLQ.name), DLQ.codec.encode(letter),
                                                   key=turn.record.key)
                self.metrics.dead_letters.inc()
            elif job.outcome == "running":
                job.start()
                await job.wait()
        finally:
            await self._finish(turn)

    async def _finish(self, turn: Turn) -> None:
        job, s = turn.job, self.stats
        for result in await asyncio.gather(*turn.acks, return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("reply event not delivered: %s", result, extra={"turn_id": job.turn_id})
        if self._active.get(job.turn_id) is turn:
            del self._active[job.turn_id]
            if not turn.abandoned:
                self._done[job.turn_id] = (job.turn.node_id, job.released and not turn.cancelled)
                while len(self._done) > RECENT_TURNS:
                    self._done.popitem(last=False)
        if turn.abandoned:
            self._notify()
            return  # its offsets stay uncommitted: whoever owns the partition next answers it again
        if job.exchange is not None:  # a reply the person hears (some of): on the log before its turn is done
            job.exchange.answered = True
            await self._record(job.turn.session_id, job.turn.speech_end_media_ns)
        if turn.speculative and job.held:
            s.speculative_wasted += 1
            add_work(s.wasted, job.work)
        else:
            s.speculative_used += turn.speculative
            add_work(s.used, job.work)
            if job.outcome in ("completed", "failed", "cancelled"):
                setattr(s, job.outcome, getattr(s, job.outcome) + 1)
        if job.first_chunk_ns is not None and turn.committed_ns is not None:
            s.commit_to_first_chunk_ms.append((job.first_chunk_ns - turn.committed_ns) / 1e6)
        for tp, offset in turn.offsets:
            self._offsets.release(tp, offset)
        self._notify()

    async def _abandon(self, turns: list[Turn]) -> None:
        """Stop these replies without telling the edge: the partitions' next owner answers them again."""
        for turn in turns:
            turn.abandoned = True
            await turn.job.stop()
        tasks = [t.task for t in turns if t.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    async def _cancel(self, turn_id: str, session_id: str, node_id: str, notify: bool) -> None:
        """Stop the turn's reply; tell the edge to drop it if it may hold any of its audio."""
        t0 = time.perf_counter()
        turn = self._active.get(turn_id)
        if turn is not None:
            await turn.job.stop()
            notify = turn.job.released and not turn.cancelled
            turn.cancelled = True
        elif turn_id in self._done:
            node_id, notify = self._done[turn_id]  # finished here, maybe still playing at the edge
            self._done[turn_id] = (node_id, False)
        if not notify:
            return
        await self._tell_edge(ReplyCancelled(**self._stamper(session_id)(0), turn_id=turn_id), node_id)
        self.stats.cancel_ms.append((time.perf_counter() - t0) * 1000)
        log.info("reply cancelled", extra={"session_id": session_id, "turn_id": turn_id})

    async def _give_up(self, event: BargeIn) -> None:
        """A paused reply not judged within the resume window: cancelled, as any cancel."""
        if event.turn_id not in self._active and event.turn_id not in self._done:
            return  # not answered here (any more: its partition moved): the edge's own window drops it
        log.info("barge-in not judged within %d ms: reply cancelled", self.settings.reply_resume_window_ms,
                 extra={"session_id": event.session_id, "turn_id": event.turn_id})
        await self._cancel(event.turn_id, event.session_id, event.node_id, True)

    async def _resume(self, event: FalseInterruption) -> None:
        """No words after the barge-in: the edge plays the paused reply on, and it counts as heard again."""
        ctx = {"session_id": event.session_id, "turn_id": event.turn_id}
        self._paused.unpause(event.turn_id)
        turn = self._active.get(event.turn_id)
        if turn is not None:
            held = turn.job.released and not turn.cancelled
        else:
            held = self._done.get(event.turn_id, ("", False))[1]  # finished here: the edge may hold the rest
        if not held:
            log.info("false interruption of a reply already given up: not resumed", extra=ctx)
            return
        await self._tell_edge(ReplyResumed(**self._stamper(event.session_id)(0), turn_id=event.turn_id),
                              event.node_id)
        if self._history.resumed(event.session_id, event.turn_id):  # after: the person is waiting for the rest
            await self._record(event.session_id, event.media_ns)
        self.stats.resumed += 1
        log.info("false interruption at %d ms: reply resumed", event.played_ms, extra=ctx)

    async def _record(self, session_id: str, media_ns: int) -> None:
        assert self._log is not None
        await self._log.record(session_id, media_ns)

    async def _tell_edge(self, event: ReplyCancelled | ReplyResumed, node_id: str) -> None:
        try:
            await self._producer.send(self.settings.topic(replies_topic(node_id)), REPLIES.codec.encode(event),
                                      key=event.session_id.encode(), headers=[(WORKER_HEADER, self.worker.encode())])
            self.metrics.events_out.inc()
        except KafkaError as exc:
            log.error("could not send %s: %s", event.type, exc, extra={"turn_id": event.turn_id})

    # -- output --------------------------------------------------------------------------------------------

    async def _send(self, turn: Turn, event: Event) -> None:
        spec = topic_of(type(event))
        name = replies_topic(turn.job.turn.node_id) if spec is REPLIES else spec.name
        turn.acks.append(await self._producer.send(self.settings.topic(name), spec.codec.encode(event),
                                                   key=event.session_id.encode(),
                                                   headers=[(WORKER_HEADER, self.worker.encode())]))
        self.metrics.events_out.inc()

    async def _node_known(self, node_id: str) -> bool:
        known, until = self._nodes.get(node_id, (False, 0.0))
        if time.monotonic() < until:
            return known
        try:
            await asyncio.wait_for(self._producer.partitions_for(self.settings.topic(replies_topic(node_id))),
                                   self.settings.responder_node_timeout_s)
            known = True
        except (TimeoutError, KafkaError):
            known = False
        self._nodes[node_id] = (known, time.monotonic() + (300.0 if known else 10.0))
        return known

    def _stamper(self, session_id: str) -> Stamper:
        """The session's envelopes from this worker (its seq), for the most recent sessions."""
        stamper = self._stampers.get(session_id)
        if stamper is None:
            stamper = self._stampers[session_id] = Stamper(session_id)
            if len(self._stampers) > self.settings.responder_max_sessions:
                self._stampers.pop(next(iter(self._stampers)))
        return stamper


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, responder: Responder, consumer: Any) -> None:
        self.responder, self.consumer = responder, consumer

    async def on_partitions_revoked(self, revoked: Any) -> None:
        r = self.responder
        await r._abandon([t for t in r._active.values() if any(tp in revoked for tp, _ in t.offsets)])
        await r._commit(self.consumer)
        r._offsets.forget(revoked)
        r._history_ready.clear()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        assert self.responder._log is not None
        try:
            await self.responder._log.rebuild(assigned)
        finally:  # whatever happened, the turns are answered (without their past, at worst)
            self.responder._history_ready.set()
        log.info("responder %s assigned %d partitions", self.responder.worker, len(assigned))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicebus responder", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    settings = ResponderSettings()
    return run_until_signal(settings, Responder(settings).run)
