"""One session's inbound media path: RTP packet -> receive buffer -> Opus decode -> 16 kHz -> 20 ms frame ->
the near end (echo cancellation, noise suppression, VAD, the speech/echo/barge-in gate) -> frame and decisions
handed to the session.

All of it runs on the event loop, synchronously per packet; nothing here awaits. A frame reaches the session
once the VAD has scored the model window holding its centre (``ingest.near_end``): usually later in the same
event-loop turn, in one batch with the other sessions' windows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ingest.audio import OPUS_RATE, RTP_TICKS_PER_FRAME, CaptureClock, Framer, OpusDecoder, RawFrame, ntp_to_unix_ns
from ingest.jitter import TS_MOD, AdaptiveJitterBuffer, Slot, unwrap
from ingest.near_end import Heard, NearEnd
from ingest.speech import Decision, SpeechStart
from runtime.pcm import Resampler
from schemas.audio import NS_PER_FRAME, RATE

STALL_NS = 5_000_000  # a deadline timer this late means the event loop, not the network, held the packet


@dataclass(frozen=True)
class ProcessedFrame:
    index: int
    media_ns: int
    capture_ns: int
    arrival_ns: int  # when the newest packet that went into this frame arrived
    raw: np.ndarray  # as received
    pcm: np.ndarray  # after echo cancellation and noise suppression
    probability: float
    voiced: bool
    concealed: bool


# A frame, the speech decisions it completes, and the start of the person's speech over a playing reply.
FrameSink = Callable[[ProcessedFrame, list[Decision], SpeechStart | None], None]


class Inbound:
    def __init__(self, near_end: NearEnd, sink: FrameSink, max_wait_ms: float = 120.0) -> None:
        self.buffer = AdaptiveJitterBuffer(max_wait_ms=max_wait_ms)
        self.clock = CaptureClock()
        self.near_end = near_end
        near_end.sink = self._heard
        self._decoder = OpusDecoder()
        self._resampler = Resampler(OPUS_RATE, RATE)
        self._framer = Framer()
        self._sink = sink
        self._first_ts: int | None = None
        self._ts_ref: int | None = None  # last extended RTP timestamp, to unwrap sender reports against
        self._last_arrival = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: int | None = None  # the receive buffer's deadline the timer is armed for
        self._grace = False
        self._closed = False
        self.frames = 0
        self.concealed = 0

    @property
    def media_ns(self) -> int:
        """The session's media clock: the end of the last frame cut."""
        return self.frames * NS_PER_FRAME

    def on_packet(self, seq: int, ts: int, payload: bytes, arrival_ns: int) -> None:
        if self._closed:
            return
        self._ts_ref = ts if self._ts_ref is None else unwrap(ts, self._ts_ref, TS_MOD)
        self.clock.on_arrival(self._ts_ref, arrival_ns)
        self._deliver(self.buffer.push(seq, ts, payload, arrival_ns))

    def on_sender_report(self, ntp: int, rtp_ts: int) -> None:
        if self._ts_ref is not None:
            self.clock.on_sender_report(ntp_to_unix_ns(ntp), unwrap(rtp_ts, self._ts_ref, TS_MOD))

    def close(self) -> None:
        """No more packets; the frames still waiting for the VAD go to the sink now."""
        if self._closed:
            return
        self._closed = True
        if self._timer:
            self._timer.cancel()
        self.near_end.flush()

    def _poll(self, deadline_ns: int) -> None:
        self._timer, self._timer_deadline = None, None
        if self._closed:
            return
        now = time.time_ns()
        if now - deadline_ns > STALL_NS and not self._grace:
            # Our own loop was busy past the deadline: the packet may be waiting in the socket, not lost.
            # Let the loop read it before giving up on it.
            self._grace = True
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + STALL_NS / 1e9, self._poll, deadline_ns)
            self._timer_deadline = deadline_ns
            return
        self._grace = False
        self._deliver(self.buffer.poll(now))

    def _deliver(self, slots: list[Slot]) -> None:
        for slot in slots:
            if self._first_ts is None:
                self._first_ts = slot.rtp_ts
            pcm48 = self._decoder.decode(slot.payload) if slot.payload is not None else self._decoder.conceal()
            self._last_arrival = slot.arrival_ns
            for raw in self._framer.push(self._resampler(pcm48), concealed=slot.payload is None):
                self._process(raw)
        # A missing packet holds the ones behind it only until its deadline: then it is concealed. The timer is
        # re-armed only when the deadline moved (a packet that released nothing, one behind a gap, leaves it).
        deadline = self.buffer.deadline_ns()
        if deadline == self._timer_deadline:
            return
        if self._timer:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + max(0, deadline - time.time_ns()) / 1e9, self._poll, deadline)

    def _process(self, raw: RawFrame) -> None:
        assert self._first_ts is not None
        media_ns = raw.index * NS_PER_FRAME
        capture_ns = self.clock.capture_ns(self._first_ts + raw.index * RTP_TICKS_PER_FRAME)
        self.frames += 1
        self.concealed += raw.concealed
        self.near_end.process(raw.pcm, media_ns, capture_ns, (raw.index, self._last_arrival, raw.concealed))

    def _heard(self, heard: Heard) -> None:
        index, arrival_ns, concealed = heard.tag
        self._sink(ProcessedFrame(index, heard.media_ns, heard.wall_ns, arrival_ns, heard.raw, heard.pcm,
                                  heard.probability, heard.voiced, concealed), heard.decisions, heard.barge_in)
