"""Inbound audio: Opus payloads -> 48 kHz PCM -> 16 kHz mono -> exact 20 ms frames, and the capture clock.

Everything here is synchronous and per session; the event loop calls it as packets leave the receive buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

from schemas.audio import FRAME_MS, FRAME_SAMPLES

OPUS_RATE = 48_000  # RTP clock of Opus, and the rate its decoder gives
RTP_TICKS_PER_FRAME = OPUS_RATE * FRAME_MS // 1000  # 960


class OpusDecoder:
    """Opus payload -> mono int16 at 48 kHz. A lost packet is concealed from the last good one."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libopus", "r")
        self._codec.format = "s16"
        self._codec.layout = "mono"
        self._codec.sample_rate = OPUS_RATE
        self._last = np.zeros(RTP_TICKS_PER_FRAME, dtype=np.int16)
        self._lost_run = 0

    def decode(self, payload: bytes) -> np.ndarray:
        try:
            frames = self._codec.decode(av.Packet(payload))
        except av.FFmpegError:
            return self.conceal()
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]) if frames else self.conceal()
        self._last, self._lost_run = pcm, 0
        return pcm

    def conceal(self) -> np.ndarray:
        # The first lost frame repeats the last one at half level (hides a click), after that silence.
        self._lost_run += 1
        if self._lost_run == 1:
            return (self._last // 2).astype(np.int16)
        return np.zeros(RTP_TICKS_PER_FRAME, dtype=np.int16)


@dataclass(frozen=True)
class RawFrame:
    index: int  # 0 at the session's first frame: the frame's seq, media time = index * 20 ms
    pcm: np.ndarray  # FRAME_SAMPLES int16
    concealed: bool


class Framer:
    """Cuts a 16 kHz stream into exact 20 ms frames; a frame with any concealed sample is marked concealed."""

    def __init__(self) -> None:
        self._buf = np.zeros(0, dtype=np.int16)
        self._concealed_until = 0  # samples of _buf[:n] that came from concealment
        self._index = 0

    def push(self, pcm: np.ndarray, concealed: bool = False) -> list[RawFrame]:
        if concealed:
            self._concealed_until = len(self._buf) + len(pcm)
        self._buf = np.concatenate([self._buf, pcm]) if len(self._buf) else pcm
        out = []
        while len(self._buf) >= FRAME_SAMPLES:
            out.append(RawFrame(self._index, self._buf[:FRAME_SAMPLES].copy(), self._concealed_until > 0))
            self._buf = self._buf[FRAME_SAMPLES:]
            self._concealed_until = max(0, self._concealed_until - FRAME_SAMPLES)
            self._index += 1
        return out


class CaptureClock:
    """Maps an RTP timestamp to the wall time it was captured at (ns).

    With an RTCP sender report the sender's own mapping is used (Chrome and aiortc put Unix wall time in it).
    Before one arrives, the estimate is the earliest arrival line: the fastest packet's transit taken as zero
    jitter, so the estimate is capture + the smallest one-way delay.
    """

    def __init__(self) -> None:
        self._sr: tuple[int, int] | None = None  # (ntp wall ns, rtp timestamp), unwrapped
        self._line: tuple[int, int] | None = None  # (arrival ns, rtp timestamp) of the earliest arrival

    def on_arrival(self, rtp_ts: int, arrival_ns: int) -> None:
        if self._line is None or arrival_ns - self._ticks_ns(rtp_ts - self._line[1]) < self._line[0]:
            self._line = (arrival_ns, rtp_ts)

    def on_sender_report(self, ntp_wall_ns: int, rtp_ts: int) -> None:
        self._sr = (ntp_wall_ns, rtp_ts)

    @property
    def synced(self) -> bool:
        return self._sr is not None

    def capture_ns(self, rtp_ts: int) -> int:
        ref = self._sr or self._line
        if ref is None:
            return 0
        return ref[0] + self._ticks_ns(rtp_ts - ref[1])

    @staticmethod
    def _ticks_ns(ticks: int) -> int:
        return ticks * 1_000_000_000 // OPUS_RATE


def ntp_to_unix_ns(ntp: int) -> int:
    """64-bit NTP timestamp (seconds since 1900 << 32 | fraction) -> Unix ns."""
    seconds, fraction = ntp >> 32, ntp & 0xFFFFFFFF
    return (seconds - 2_208_988_800) * 1_000_000_000 + (fraction * 1_000_000_000 >> 32)
