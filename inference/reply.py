"""One reply: LLM tokens -> sentences -> TTS -> 16 kHz chunks -> reply events, for one turn.

A speculative reply is generated ahead but *held*: its events wait here until the turn is committed
(``release``) and are discarded if it is withdrawn, so the edge never gets playable audio of a withdrawn turn.
Audio is sent at most ``max_lead_ms`` ahead of real time (and a held reply prepares at most that much), which
bounds the work a barge-in or a withdrawal wastes. Chunk boundaries and indices depend only on the text, so a
reply generated twice (a redelivered turn) repeats the same (turn_id, index) chunks and the edge drops copies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal

from inference.engines.base import EngineError, LlmEngine, Message, TtsEngine
from inference.history import Exchange, Spoken
from inference.text import SentenceSplitter
from runtime.pcm import Resampler, duration_ms
from schemas.base import Envelope, Event
from schemas.conversation import ReplyAudioChunk, ReplyEnded, ReplyStages, ReplyText, TurnCommitted, TurnSpeculative
from schemas.telemetry import StageStamped

log = logging.getLogger(__name__)

REPLY_RATE: Literal[16000] = 16000  # the edge upsamples for Opus

Send = Callable[[Event], Awaitable[Any]]  # event -> enqueued on the topic the registry puts it on


@dataclass
class Work:
    """What a reply cost; counted as wasted when a speculative reply is thrown away."""

    tokens: int = 0
    audio_ms: float = 0.0
    busy_s: float = 0.0  # wall time the reply was being generated (not waiting on its lead or its commit)


@dataclass
class ReplyJob:
    turn: TurnSpeculative | TurnCommitted
    messages: list[Message]
    llm: LlmEngine
    tts: TtsEngine
    send: Send
    envelope: Callable[[int], Envelope]  # the session's next envelope at a media time (the responder's seq)
    chunk_ms: int = 200
    max_lead_ms: int = 2000
    held: bool = False
    on_progress: Callable[[], None] = lambda: None  # called after each chunk is made (held or sent)
    exchange: Exchange | None = None  # where the spoken sentences go once the reply is heard
    outcome: Literal["running", "completed", "failed", "cancelled"] = "running"
    work: Work = field(default_factory=Work)
    chunks: int = 0
    first_chunk_ns: int | None = None  # when the first playable chunk was handed to Kafka
    # Wall ns of the stages the edge learns from us (ReplyStages, before the first chunk it may play).
    stages: dict[str, int] = field(default_factory=dict)
    _pending: list[Event] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _t0: float = 0.0  # monotonic time the reply became playable: the pacing clock
    _sentences: list[Spoken] = field(default_factory=list)
    _releasing: bool = False
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.turn, TurnCommitted):
            self.stages["turn_committed"] = self.turn.wall_ns  # the turn processor stamps its commit with it

    @property
    def turn_id(self) -> str:
        return self.turn.turn_id

    @property
    def released(self) -> bool:
        """Committed (never held, or its release has begun): the edge may hold its audio."""
        return not self.held or self._releasing

    def start(self) -> asyncio.Task[None]:
        if not self.held:
            self._released.set()
            self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"reply-{self.turn_id}")
        return self._task

    async def release(self, exchange: Exchange, committed_wall_ns: int | None = None) -> None:
        """The turn was committed (by the TurnCommitted made at ``committed_wall_ns``): send what was held, then
        stream on. The reply stays held until everything held is out, so nothing it makes meanwhile (the rest of
        the audio, its end) overtakes the held chunks."""
        self._releasing, self.exchange = True, exchange
        if committed_wall_ns is not None:
            self.stages["turn_committed"] = committed_wall_ns
            if self.chunks:  # the first chunk was made while held: its stages go out ahead of it
                await self._out(self._stages_event())
        exchange.sentences.extend(self._sentences)
        self._t0 = time.monotonic()
        while self._pending:
            pending, self._pending = self._pending, []
            for event in pending:
                await self._out(event)
        self.held = False  # no await since the queue was found empty: nothing can slip in between
        self._released.set()

    async def stop(self) -> None:
        """Stop generating at once (mid-token, mid-sentence); what was held is dropped."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)
        self._pending.clear()
        if self.outcome == "running":
            self.outcome = "cancelled"

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.wait([self._task])

    # -- generation ---------------------------------------------------------------------------------------

    async def _run(self) -> None:
        busy_from = time.monotonic()
        try:
            splitter = SentenceSplitter()
            async with aclosing(self._tokens()) as tokens:
                async for token in tokens:
                    for sentence in splitter.push(token):
                        await self._speak(sentence)
            for sentence in splitter.flush():
                await self._speak(sentence)
            self.outcome = "completed"
        except EngineError as exc:
            self.outcome = "failed"
            log.error("reply failed after %d chunks: %s", self.chunks, exc,
                      extra={"session_id": self.turn.session_id, "turn_id": self.turn_id})
        except Exception:  # a bug must not leave the turn hanging either
            self.outcome = "failed"
            log.exception("reply crashed after %d chunks", self.chunks,
                          extra={"session_id": self.turn.session_id, "turn_id": self.turn_id})
        finally:
            self.work.busy_s += time.monotonic() - busy_from
        # Even a failed reply ends cleanly: the edge plays what it got and nothing waits for more.
        text = " ".join(s.text for s in self._sentences)
        if text:
            await self._emit(ReplyText(turn_id=self.turn_id, text=text, **self._base()))
        await self._emit(ReplyEnded(turn_id=self.turn_id, chunks=self.chunks, **self._base()))
        await self._released.wait()  # a finished speculative reply waits here for its commit (or its cancel)

    async def _tokens(self) -> AsyncGenerator[str, None]:
        async with aclosing(self.llm.stream(self.messages)) as tokens:
            async for token in tokens:
                if token and self.work.tokens == 0:
                    await self._stamp("llm_first_token", self.llm.name)
                self.work.tokens += 1
                yield token

    async def _speak(self, sentence: str) -> None:
        resampler = Resampler(self.tts.sample_rate, REPLY_RATE)
        buffer, size = b"", REPLY_RATE * 2 * self.chunk_ms // 1000
        spoken = Spoken(sentence)  # grows chunk by chunk: a reply cut mid-sentence keeps what was sent
        self._sentences.append(spoken)
        if self.exchange is not None:
            self.exchange.sentences.append(spoken)
        async with aclosing(self.tts.stream(sentence)) as audio:
            async for piece in audio:
                if self.work.audio_ms == 0 and not buffer:
                    await self._stamp("tts_first_audio", self.tts.name)
                buffer += resampler.push(piece)
                while len(buffer) >= size:
                    await self._chunk(buffer[:size], spoken)
                    buffer = buffer[size:]
        buffer += resampler.flush()
        if buffer:
            await self._chunk(buffer, spoken)
        spoken.complete = True

    async def _chunk(self, pcm: bytes, spoken: Spoken) -> None:
        await self._pace()
        if self.chunks == 0 and "turn_committed" in self.stages:  # else release() sends it, when committed
            await self._emit(self._stages_event())
        # The sentence's text rides on its first chunk (captions at the edge).
        event = ReplyAudioChunk(turn_id=self.turn_id, index=self.chunks, sample_rate=REPLY_RATE, pcm=pcm,
                                text="" if spoken.ms else spoken.text,
                                speech_start_media_ns=self.turn.speech_start_media_ns,
                                speech_end_media_ns=self.turn.speech_end_media_ns, **self._base())
        self.chunks += 1
        self.work.audio_ms += duration_ms(pcm, REPLY_RATE)
        spoken.ms += duration_ms(pcm, REPLY_RATE)
        await self._emit(event)
        self.on_progress()

    async def _pace(self) -> None:
        """Wait while the audio already made is more than ``max_lead_ms`` ahead of real time."""
        if not self.max_lead_ms:
            return
        while True:
            if self.held:
                if self.work.audio_ms < self.max_lead_ms:
                    return
                paused = time.monotonic()
                await self._released.wait()
                self.work.busy_s -= time.monotonic() - paused
                continue
            ahead = self.work.audio_ms - self.max_lead_ms - (time.monotonic() - self._t0) * 1000
            if ahead <= 0:
                return
            self.work.busy_s -= ahead / 1000
            await asyncio.sleep(ahead / 1000)  # real-time pacing of output, not synchronisation

    # -- output --------------------------------------------------------------------------------------------

    def _base(self) -> Envelope:
        return self.envelope(self.turn.speech_end_media_ns)

    async def _stamp(self, stage: Any, engine: str) -> None:
        self.stages[stage] = now = time.time_ns()
        await self._emit(StageStamped(
            turn_id=self.turn_id, node_id=self.turn.node_id, stage=stage, stage_wall_ns=now,
            service="responder", engine=engine, **self._base()))

    def _stages_event(self) -> ReplyStages:
        return ReplyStages(turn_id=self.turn_id, stages=dict(self.stages), **self._base())  # type: ignore[arg-type]

    async def _emit(self, event: Event) -> None:
        if self.held:
            self._pending.append(event)
        else:
            await self._out(event)

    async def _out(self, event: Event) -> None:
        if self.first_chunk_ns is None and isinstance(event, ReplyAudioChunk):
            self.first_chunk_ns = time.monotonic_ns()
        await self.send(event)
