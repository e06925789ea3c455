"""The telephone variant of a recording: band-limited to 300-3400 Hz, 8 kHz G.711 mu-law and back to 16 kHz."""

from __future__ import annotations

import numpy as np

from schemas.audio import RATE
from tests.streams.replay import TELEPHONE


def _band_limit(x: np.ndarray, rate: int, lo: float, hi: float) -> np.ndarray:
    """Zero-phase band pass by FFT, with 100 Hz raised-cosine edges (a brick wall rings)."""
    spectrum = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1 / rate)
    edge = 100.0
    gain = np.clip(np.minimum((f - (lo - edge)) / edge, ((hi + edge) - f) / edge), 0, 1)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spectrum * gain, len(x))


def _mulaw_encode(x: np.ndarray) -> np.ndarray:
    """G.711 mu-law (as the reference g711.c: 14-bit magnitude, segments), int16 in, one byte out."""
    v = x.astype(np.int32) >> 2
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), 8159) + 33
    seg = np.maximum(np.floor(np.log2(v)).astype(np.int32) - 5, 0)
    u = np.where(seg >= 8, 0x7F, (np.minimum(seg, 7) << 4) | ((v >> (np.minimum(seg, 7) + 1)) & 0x0F))
    return (u ^ mask).astype(np.uint8)


def _mulaw_decode(u: np.ndarray) -> np.ndarray:
    u = ~u.astype(np.int32) & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    mag = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -mag, mag).astype(np.int16)


def telephone(pcm: np.ndarray) -> np.ndarray:
    """16 kHz int16 -> band-limited 300-3400 Hz -> 8 kHz G.711 mu-law and back -> 16 kHz int16."""
    lo, hi = TELEPHONE["band_hz"]
    n = len(pcm) - len(pcm) % 2
    narrow = _band_limit(pcm[:n].astype(np.float64), RATE, lo, hi)
    at8k = np.clip(np.round(narrow[::2]), -32768, 32767).astype(np.int16)  # nothing above 4 kHz left to alias
    line = _mulaw_decode(_mulaw_encode(at8k)).astype(np.float64)
    spectrum = np.fft.rfft(line)
    up = np.fft.irfft(np.concatenate([spectrum, np.zeros(n // 2 + 1 - len(spectrum))]), n) * 2
    return np.clip(np.round(up), -32768, 32767).astype(np.int16)
