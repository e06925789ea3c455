"""PCM16 helpers: resampling (libswresample through PyAV, already a core dependency) and WAV bytes."""

from __future__ import annotations

import io
import wave

import av
import numpy as np


class Resampler:
    """Stateful PCM16 mono resampler for one stream: ``push`` pieces in order, ``flush`` at the end."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate, self.to_rate = from_rate, to_rate
        self._av = None if from_rate == to_rate else av.AudioResampler(format="s16", layout="mono", rate=to_rate)
        self._odd = b""  # a trailing half sample waits for its other byte

    def push(self, pcm: bytes) -> bytes:
        pcm, self._odd = self._odd + pcm, b""
        if len(pcm) % 2:
            pcm, self._odd = pcm[:-1], pcm[-1:]
        if self._av is None or not pcm:
            return pcm
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.from_rate
        return b"".join(bytes(out.planes[0])[: out.samples * 2] for out in self._av.resample(frame))

    def flush(self) -> bytes:
        if self._av is None:
            return b""
        return b"".join(bytes(out.planes[0])[: out.samples * 2] for out in self._av.resample(None))


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    r = Resampler(from_rate, to_rate)
    return r.push(pcm) + r.flush()


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def read_wav(data: bytes) -> tuple[bytes, int]:
    """(PCM16 mono, sample rate) of a 16-bit mono WAV; ValueError for anything else."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ValueError(f"need 16-bit mono WAV, got {w.getsampwidth() * 8}-bit x {w.getnchannels()}")
            return w.readframes(w.getnframes()), w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a WAV file: {exc}") from None


def duration_ms(pcm: bytes, sample_rate: int) -> float:
    return len(pcm) / 2 * 1000 / sample_rate
