"""voice.audio: 20 ms PCM16 mono frames in a fixed little-endian binary layout (no JSON, no base64).

Layout, version 1 (52-byte header, then ``sample_count`` int16 samples):

    offset size field
    0      4    magic b"VBAF"
    4      1    version (1)
    5      1    flags (bit 0: the edge's VAD called it voiced; bit 1: concealed, the packet was lost)
    6      16   session id (the uuid behind the 32-hex-char session id)
    22     8    seq (uint64, per session, no gaps: a lost packet becomes a concealed frame; at most 2**63-1)
    30     8    capture wall time, ns (int64; Unix time before 2100, as every event's: schemas.bounds)
    38     8    media time, ns (int64, 0 at the session's first frame; at most 7 days)
    46     4    sample rate (uint32, one of SAMPLE_RATES)
    50     2    sample count (uint16)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from schemas.bounds import MAX_INT64, MAX_MEDIA_NS, MAX_WALL_NS

# The platform's audio: what voice.audio carries and every service computes in.
RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 320
NS_PER_FRAME = FRAME_MS * 1_000_000

MAGIC = b"VBAF"
VERSION = 1
FLAG_VOICED = 1
FLAG_CONCEALED = 2
SAMPLE_RATES = frozenset({8000, 16000, 24000, 48000})
HEADER = struct.Struct("<4sBB16sQqqIH")
HEADER_SIZE = HEADER.size


class FrameError(ValueError):
    """The bytes are not a valid audio frame."""


class AudioFrame(NamedTuple):
    session_id: str
    seq: int
    capture_wall_ns: int
    media_ns: int
    sample_rate: int
    pcm: bytes
    flags: int = 0

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // 2

    @property
    def duration_ns(self) -> int:
        return self.sample_count * 1_000_000_000 // self.sample_rate

    @property
    def voiced(self) -> bool:
        return bool(self.flags & FLAG_VOICED)

    def samples(self) -> np.ndarray:
        """The PCM as int16 (a view, no copy)."""
        return np.frombuffer(self.pcm, dtype="<i2")


def _check_range(seq: int, wall: int, media: int) -> None:
    # The ranges of every event (schemas.bounds): a frame's clocks are the session's too.
    if not (0 <= wall <= MAX_WALL_NS and 0 <= media <= MAX_MEDIA_NS and 0 <= seq <= MAX_INT64):
        what = "negative timestamp" if wall < 0 or media < 0 else "out of range"
        raise FrameError(f"{what} in audio frame: seq {seq}, capture wall ns {wall}, media ns {media}")


def encode_frame(frame: AudioFrame) -> bytes:
    if frame.sample_rate not in SAMPLE_RATES:
        raise FrameError(f"sample rate {frame.sample_rate} is not one of {sorted(SAMPLE_RATES)}")
    n = len(frame.pcm)
    if n % 2 or n == 0 or n > 0x1FFFE:
        raise FrameError(f"PCM16 payload must be a non-empty even number of bytes up to 131070, got {n}")
    try:
        sid = bytes.fromhex(frame.session_id)
    except ValueError:
        sid = b""
    if len(sid) != 16:
        raise FrameError(f"session id must be 32 hex characters, got {frame.session_id!r}")
    _check_range(frame.seq, frame.capture_wall_ns, frame.media_ns)  # what decode_frame would refuse
    try:
        header = HEADER.pack(MAGIC, VERSION, frame.flags, sid, frame.seq, frame.capture_wall_ns,
                             frame.media_ns, frame.sample_rate, n // 2)
    except struct.error as exc:  # seq, flags or a timestamp out of its field's range
        raise FrameError(f"audio frame header field out of range: {exc}") from None
    return header + frame.pcm


def decode_frame(data: bytes) -> AudioFrame:
    if len(data) < HEADER_SIZE:
        raise FrameError(f"frame is {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, version, flags, sid, seq, wall, media, rate, count = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}: not a voicebus audio frame")
    if version != VERSION:
        raise FrameError(f"audio frame version {version} is not supported (this build reads {VERSION})")
    if rate not in SAMPLE_RATES:
        raise FrameError(f"sample rate {rate} is not one of {sorted(SAMPLE_RATES)}")
    if len(data) - HEADER_SIZE != count * 2:
        raise FrameError(f"header says {count} samples ({count * 2} bytes) but {len(data) - HEADER_SIZE} follow")
    _check_range(seq, wall, media)
    return AudioFrame(sid.hex(), seq, wall, media, rate, data[HEADER_SIZE:], flags)
