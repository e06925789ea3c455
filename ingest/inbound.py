"""One session's inbound media path: RTP packet -> receive buffer -> Opus decode -> 16 kHz -> 20 ms frame ->
echo cancellation and noise suppression -> VAD -> frame and decisions handed to the session.

All of it runs on the event loop, synchronously per packet; nothing here awaits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ingest.audio import OPUS_RATE, RTP_TICKS_PER_FRAME, CaptureClock, Framer, OpusDecoder, RawFrame, ntp_to_unix_ns
from ingest.engines.aec import EchoCanceller
from ingest.engines.ns import NoiseSuppressor
from ingest.engines.vad import VadStream
from ingest.jitter import TS_MOD, AdaptiveJitterBuffer, Slot, unwrap
from ingest.speech import Decision, Segmenter, SpeechStart
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


FrameSink = Callable[[ProcessedFrame, list[Decision]], None]


class Inbound:
    def __init__(self, vad: VadStream, segmenter: Segmenter, sink: FrameSink, echo: EchoCanceller | None = None,
                 ns: NoiseSuppressor | None = None, max_wait_ms: float = 120.0,
                 raw_vad: Callable[[], VadStream] | None = None,
                 raw_speech: Callable[[SpeechStart], None] | None = None) -> None:
        self.buffer = AdaptiveJitterBuffer(max_wait_ms=max_wait_ms)
        self.clock = CaptureClock()
        self._decoder = OpusDecoder()
        self._resampler = Resampler(OPUS_RATE, RATE)
        self._framer = Framer()
        self._vad, self._segmenter, self._sink, self._echo, self._ns = vad, segmenter, sink, echo, ns
        self._raw_vad, self._raw_speech = raw_vad, raw_speech
        self._raw: tuple[VadStream, Segmenter] | None = None
        self._first_ts: int | None = None
        self._ts_ref: int | None = None  # last extended RTP timestamp, to unwrap sender reports against
        self._last_arrival = 0
        self._timer: asyncio.TimerHandle | None = None
        self._grace = False
        self._closed = False
        self.frames = 0
        self.concealed = 0

    @property
    def media_ns(self) -> int:
        """The session's media clock: the end of the last frame cut."""
        return self.frames * NS_PER_FRAME

    def watch_raw(self, on: bool) -> None:
        """While the agent talks, also run the VAD on the raw microphone and report speech starts to
        ``raw_speech``. AEC3 that has not converged (there was no echo to learn from: a headset, or a browser
        that cancels its own) suppresses the person's voice along with the echo, so barge-in must not depend on
        the cleaned signal alone. Off again when the agent is quiet: it costs a second VAD run per frame."""
        if not on:
            self._raw = None
        elif self._raw is None and self._raw_vad is not None:
            self._raw = (self._raw_vad(), Segmenter(self._segmenter.params))

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
        self._closed = True
        if self._timer:
            self._timer.cancel()

    def _poll(self, deadline_ns: int) -> None:
        self._timer = None
        if self._closed:
            return
        now = time.time_ns()
        if now - deadline_ns > STALL_NS and not self._grace:
            # Our own loop was busy past the deadline: the packet may be waiting in the socket, not lost.
            # Let the loop read it before giving up on it.
            self._grace = True
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + STALL_NS / 1e9, self._poll, deadline_ns)
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
        # A missing packet holds the ones behind it only until its deadline: then it is concealed.
        deadline = self.buffer.deadline_ns()
        if self._timer:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(loop.time() + max(0, deadline - time.time_ns()) / 1e9, self._poll, deadline)

    def _process(self, raw: RawFrame) -> None:
        assert self._first_ts is not None
        pcm = raw.pcm
        if self._echo is not None:
            pcm = self._echo.near_end(pcm)
        if self._ns is not None:
            pcm = self._ns.process(pcm)
        probability = self._vad.probability(pcm)
        media_ns = raw.index * NS_PER_FRAME
        capture_ns = self.clock.capture_ns(self._first_ts + raw.index * RTP_TICKS_PER_FRAME)
        decisions = self._segmenter.push(media_ns, capture_ns, probability)
        self.frames += 1
        self.concealed += raw.concealed
        self._sink(ProcessedFrame(raw.index, media_ns, capture_ns, self._last_arrival, raw.pcm, pcm, probability,
                                  self._segmenter.speaking or probability >= self._segmenter.params.threshold,
                                  raw.concealed), decisions)
        if self._raw is not None and self._raw_speech is not None:
            raw_vad, raw_segmenter = self._raw
            for decision in raw_segmenter.push(media_ns, capture_ns, raw_vad.probability(raw.pcm)):
                if isinstance(decision, SpeechStart):
                    self._raw_speech(decision)
