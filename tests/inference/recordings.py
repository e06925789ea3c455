"""The shared speech recordings as the workers get them: 16 kHz mono PCM16 bytes."""

from __future__ import annotations

from pathlib import Path

from runtime.pcm import read_wav
from schemas.audio import RATE


def load(path: Path) -> bytes:
    samples, rate = read_wav(path)
    assert rate == RATE, f"{path}: {rate} Hz"
    return samples.tobytes()
