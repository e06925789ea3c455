"""PCM16 mono helpers shared by the services: one resampler, WAV in and out."""

from __future__ import annotations

import fractions
import io
import wave
from pathlib import Path

import av
import numpy as np


class Resampler:
    """Stateful PCM16 mono resampler for one stream (libswresample through PyAV, a core dependency): the
    filter spans calls. ``__call__`` takes and gives int16 arrays; ``push`` and ``flush`` take and give bytes."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.rate_in, self.rate_out = rate_in, rate_out
        self._av = None if rate_in == rate_out else av.AudioResampler(format="s16", layout="mono", rate=rate_out)
        self._pts = 0
        self._odd = b""  # a trailing half sample waits for its other byte

    def __call__(self, pcm: np.ndarray) -> np.ndarray:
        if self._av is None:
            return pcm
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate_in
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate_in)
        self._pts += len(pcm)
        out = [f.to_ndarray().reshape(-1) for f in self._av.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)

    def push(self, pcm: bytes) -> bytes:
        pcm, self._odd = self._odd + pcm, b""
        if len(pcm) % 2:
            pcm, self._odd = pcm[:-1], pcm[-1:]
        if self._av is None or not pcm:
            return pcm
        return self(np.frombuffer(pcm, dtype="<i2")).tobytes()

    def flush(self) -> bytes:
        if self._av is None:
            return b""
        return b"".join(f.to_ndarray().reshape(-1).tobytes() for f in self._av.resample(None))


def resample(pcm: bytes, rate_in: int, rate_out: int) -> bytes:
    r = Resampler(rate_in, rate_out)
    return r.push(pcm) + r.flush()


def read_wav(source: bytes | str | Path) -> tuple[np.ndarray, int]:
    """(int16 samples, sample rate) of a 16-bit mono WAV given as bytes or a path; ValueError for anything else."""
    try:
        with wave.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ValueError(f"need 16-bit mono WAV, got {w.getsampwidth() * 8}-bit x {w.getnchannels()}")
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a WAV file: {exc}") from None


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def duration_ms(pcm: bytes, sample_rate: int) -> float:
    return len(pcm) / 2 * 1000 / sample_rate
