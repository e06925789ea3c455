"""Outbound audio: the per-session reply queue and the track that sends it, paced on an absolute 20 ms clock.

The track hands aiortc pre-encoded Opus packets (mono, ``bitrate``): aiortc's own encoder is fixed at stereo
96 kbit/s and runs in a thread pool, the most expensive part of a session. While nothing plays, one cached
packet of silence is sent. Every frame sent is also given to the echo canceller as its far-end reference.

Barge-in (``interrupt``) takes effect on the very next frame: the reply is *paused*, not dropped. Silence is sent
from then on, its unplayed frames are kept and chunks of it that still arrive queue behind them, so that a
barge-in that turns out false (a cough, a door: the turn processor's ``FalseInterruption``) resumes it exactly
where it stopped (``resume``, on the responder's ``ReplyResumed``) with no regeneration and no audio sent
through Kafka again. The rest is kept here because the edge already holds it (LiveKit also pauses at its audio
output). A paused reply is dropped when it is cancelled, when a chunk of another turn arrives (a newer reply
supersedes it), when it stays paused longer than ``resume_window_ms`` (counted in frames of this track's own
20 ms clock) or when the session closes.

A reply that stops coming (no chunk, no end, for ``stall_ms``: its responder died mid-reply and the one that
takes its turns over did not go on with it) is finished after what was played: the edge must not stay
"playing" forever, which would also take the person's next words for a barge-in.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from ingest.audio import RTP_TICKS_PER_FRAME
from runtime.pcm import Resampler
from schemas.audio import FRAME_MS, FRAME_SAMPLES, RATE

log = logging.getLogger(__name__)

FRAME_S = FRAME_MS / 1000
TIME_BASE = fractions.Fraction(1, 48_000)
RESYNC_S = 0.2  # this far behind the grid (a stalled loop), skip ahead instead of bursting the backlog
MAX_QUEUED_FRAMES = 120 * 1000 // FRAME_MS  # two minutes of reply audio per session
DONE_REMEMBERED = 64  # finished replies per session whose late duplicates are still recognised
FADE_IN_SAMPLES = 160  # a resumed reply's first 10 ms ramp up from silence: no click
# Longer than a responder failover (about 6-7 s: the group's session timeout), after which the new owner goes
# on with the reply (or cancels it); far longer than a loaded responder's gap between two chunks.
REPLY_STALL_MS = 10_000


class PlayoutListener(Protocol):
    def playout_started(self, turn_id: str) -> None: ...
    def playout_finished(self, turn_id: str, played_ms: int) -> None: ...
    def playout_paused(self, turn_id: str, played_ms: int) -> None: ...  # barge-in
    def playout_resumed(self, turn_id: str, played_ms: int) -> None: ...
    def playout_dropped(self, turn_id: str, played_ms: int) -> None: ...  # a paused reply is given up


@dataclass
class Reply:
    turn_id: str
    frames: deque[np.ndarray] = field(default_factory=deque)
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))  # < one frame, not yet full
    ended: bool = False
    played: int = 0  # frames sent
    next_index: int = 0  # the chunk index accepted next: chunks play exactly once, in order
    resampler: Resampler | None = None
    paused_at: int | None = None  # the track's frame count when a barge-in paused it
    fade_in: bool = False  # the next frame is the first after a resume
    starved: int = 0  # frames in a row it had nothing to play and no end (an underrun)


class OpusPacketizer:
    """16 kHz mono PCM -> Opus packets for RTP (48 kHz clock)."""

    def __init__(self, bitrate: int, complexity: int = 3) -> None:
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.bit_rate = bitrate
        self._codec.format = "s16"
        self._codec.layout = "mono"
        self._codec.sample_rate = RATE
        self._codec.options = {"application": "voip", "compression_level": str(complexity)}
        self._pts = 0

    def encode(self, pcm: np.ndarray) -> bytes | None:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        self._pts += len(pcm)
        packets = self._codec.encode(frame)
        return bytes(packets[-1]) if packets else None


def silence_packet(bitrate: int) -> bytes:
    encoder = OpusPacketizer(bitrate)
    packet = None
    for _ in range(10):  # past the encoder's start-up
        packet = encoder.encode(np.zeros(FRAME_SAMPLES, dtype=np.int16)) or packet
    assert packet is not None
    return packet


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


class PlayoutTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, listener: PlayoutListener, far_end: Callable[[np.ndarray], None] | None = None,
                 bitrate: int = 32000, on_sent: Callable[[float], None] | None = None,
                 resume_window_ms: int = 3000, stall_ms: int = REPLY_STALL_MS) -> None:
        super().__init__()
        self._listener, self._far_end, self._on_sent = listener, far_end, on_sent
        self._resume_window = max(1, resume_window_ms // FRAME_MS)  # frames a paused reply is kept
        self._stall = max(1, stall_ms // FRAME_MS)  # underrun frames after which a reply is over
        self._fade = np.linspace(0.0, 1.0, FADE_IN_SAMPLES, endpoint=False, dtype=np.float32)
        self._replies: deque[Reply] = deque()
        # Replies over (finished, cancelled, interrupted): a redelivered chunk of one must not play it again.
        self._done: deque[str] = deque(maxlen=DONE_REMEMBERED)
        self._encoder = OpusPacketizer(bitrate)
        self._silence = silence_packet(bitrate)
        self._zeros = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._t0: float | None = None
        self._n = 0
        self._idle_wait: asyncio.Future[bool] | None = None  # the track's wait for its next slot, while silent
        self.frames_sent = 0
        self.lateness_ms: deque[float] = deque(maxlen=3000)  # send time minus grid slot, recent frames
        self.send_times: deque[float] = deque(maxlen=3000)  # wall clock of each frame handed to aiortc

    # -- the reply queue (called from the replies consumer and the inbound pipeline) --

    @property
    def playing_turn(self) -> str | None:
        """The turn whose reply is being sent now, if any (a paused reply is not)."""
        head = self._replies[0] if self._replies else None
        return head.turn_id if head is not None and head.played and head.paused_at is None else None

    @property
    def paused_turn(self) -> str | None:
        """The turn whose reply a barge-in paused, if any."""
        head = self._replies[0] if self._replies else None
        return head.turn_id if head is not None and head.paused_at is not None else None

    def queued_frames(self) -> int:
        return sum(len(r.frames) for r in self._replies)

    def enqueue(self, turn_id: str, index: int, pcm: np.ndarray, sample_rate: int) -> None:
        """Queue chunk ``index`` of a reply. A chunk seen before (a responder that took over a turn resends from
        0) or one out of order is ignored, so a reply plays once whatever the delivery."""
        reply = self._reply(turn_id, create=True)
        if reply is None or reply.ended or index != reply.next_index:
            return
        reply.next_index += 1
        paused = self.paused_turn
        if paused is not None and paused != turn_id:
            self._drop(self._replies[0])  # a newer reply supersedes the paused one
        if self.queued_frames() >= MAX_QUEUED_FRAMES:
            log.warning("playout queue full: dropping reply audio", extra={"turn_id": turn_id})
            return
        if sample_rate != RATE:
            reply.resampler = reply.resampler or Resampler(sample_rate, RATE)
            pcm = reply.resampler(pcm)
        pcm = np.concatenate([reply.tail, pcm])
        whole = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
        reply.frames.extend(pcm[i:i + FRAME_SAMPLES] for i in range(0, whole, FRAME_SAMPLES))
        reply.tail = pcm[whole:]
        if reply.frames and self._replies[0] is reply and reply.paused_at is None and self._idle_wait is not None:
            _resolve(self._idle_wait, True)  # audio to play: do not wait for the rest of the silent slot

    def end(self, turn_id: str) -> None:
        """No more audio will come for this reply: finish it after what is queued."""
        reply = self._reply(turn_id, create=True)
        if reply is not None and not reply.ended:
            if len(reply.tail):
                reply.frames.append(np.concatenate([reply.tail, self._zeros[len(reply.tail):]]))
                reply.tail = self._zeros[:0]
            reply.ended = True

    def cancel(self, turn_id: str) -> None:
        """Stop this reply now if it plays, and drop what is queued of it (a paused one is dropped)."""
        reply = self._reply(turn_id, create=False)
        if reply is None:
            return
        if reply.paused_at is not None:
            self._drop(reply)
            return
        self._replies.remove(reply)
        self._done.append(turn_id)
        if reply.played:
            self._listener.playout_finished(turn_id, reply.played * FRAME_MS)

    def interrupt(self) -> tuple[str, int] | None:
        """Barge-in: pause the playing reply from the next frame on, keeping the rest; returns (turn, played ms)."""
        turn = self.playing_turn
        if turn is None:
            return None
        reply = self._replies[0]
        reply.paused_at = self.frames_sent
        reply.fade_in = False
        played_ms = reply.played * FRAME_MS
        self._listener.playout_paused(turn, played_ms)
        return turn, played_ms

    def resume(self, turn_id: str) -> bool:
        """The barge-in was false: play the paused reply on from where it stopped. False if it is not paused
        here (never was, or already dropped)."""
        if self.paused_turn != turn_id:
            return False
        reply = self._replies[0]
        reply.paused_at, reply.fade_in = None, True
        self._listener.playout_resumed(turn_id, reply.played * FRAME_MS)
        if reply.frames and self._idle_wait is not None:
            _resolve(self._idle_wait, True)
        return True

    def _drop(self, reply: Reply) -> None:
        """Give up a paused reply: its rest is never played."""
        self._replies.remove(reply)
        self._done.append(reply.turn_id)
        self._listener.playout_dropped(reply.turn_id, reply.played * FRAME_MS)

    def _reply(self, turn_id: str, create: bool) -> Reply | None:
        for reply in self._replies:
            if reply.turn_id == turn_id:
                return reply
        if not create or turn_id in self._done:
            return None
        reply = Reply(turn_id)
        self._replies.append(reply)
        return reply

    # -- the track --

    def _next_pcm(self) -> np.ndarray | None:
        while self._replies:
            reply = self._replies[0]
            if reply.paused_at is not None:
                if self.frames_sent - reply.paused_at < self._resume_window:
                    return None  # paused: silence, while the turn processor judges the barge-in
                self._drop(reply)  # no resume came in time
                continue
            if reply.frames:
                if reply.played == 0:
                    self._listener.playout_started(reply.turn_id)
                reply.played += 1
                reply.starved = 0
                pcm = reply.frames.popleft()
                if reply.fade_in:
                    reply.fade_in = False
                    pcm = pcm.copy()
                    pcm[:FADE_IN_SAMPLES] = (pcm[:FADE_IN_SAMPLES] * self._fade).astype(np.int16)
                return pcm
            if not reply.ended:
                reply.starved += 1
                if reply.starved < self._stall:
                    return None  # underrun: the reply's next chunk has not arrived yet
                log.warning("reply stalled: no audio and no end for %d ms; finished after %d ms played",
                            reply.starved * FRAME_MS, reply.played * FRAME_MS, extra={"turn_id": reply.turn_id})
            self._replies.popleft()
            self._done.append(reply.turn_id)
            if reply.played:
                self._listener.playout_finished(reply.turn_id, reply.played * FRAME_MS)
        return None

    def _has_audio(self) -> bool:
        return bool(self._replies and self._replies[0].frames and self._replies[0].paused_at is None)

    async def _wait(self, delay: float, wakeable: bool) -> bool:
        """Sleep ``delay`` s; True if a reply's audio cut a wakeable sleep short. A future and a timer, as
        asyncio.sleep uses, so the silent path costs no more than before."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(delay, _resolve, future, False)
        self._idle_wait = future if wakeable else None
        try:
            return await future
        finally:
            timer.cancel()
            self._idle_wait = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.time()
        if self._t0 is None:
            self._t0 = now
        else:
            self._n += 1
            due = self._t0 + self._n * FRAME_S
            if now - due > RESYNC_S:
                self._t0, self._n = now, 0
            elif due > now and await self._wait(due - now, wakeable=not self._has_audio()):
                # A reply arrived while silence was due: send its first frame now and move the 20 ms grid
                # here (RTP timestamps stay continuous), instead of making it wait up to a frame for the slot.
                self._t0 = time.time() - self._n * FRAME_S
        sent = time.time()
        self.lateness_ms.append((sent - (self._t0 + self._n * FRAME_S)) * 1000)
        self.send_times.append(sent)
        pcm = self._next_pcm()
        payload = self._encoder.encode(pcm) if pcm is not None else None
        if self._far_end is not None:
            self._far_end(pcm if pcm is not None else self._zeros)
        packet = av.Packet(payload or self._silence)
        packet.pts = self.frames_sent * RTP_TICKS_PER_FRAME
        packet.time_base = TIME_BASE
        self.frames_sent += 1
        if self._on_sent is not None:
            self._on_sent(self.lateness_ms[-1])
        return packet
