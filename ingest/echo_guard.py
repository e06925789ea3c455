"""Is this "speech" the agent's own voice coming back? A check made only when speech starts during playout.

WebRTC AEC3 needs agent audio to converge on a session's echo path; until then a loud echo can pass it and the
agent would interrupt itself. When speech starts while a reply may be heard, the guard compares the residual
after echo cancellation and the raw microphone over the last ``window`` with the audio played over the last
second (every lag): a strong normalised correlation means it is the reply coming back, not a person
(ingest/gate.py decides how strong).
"""

from __future__ import annotations

from collections import deque

import numpy as np

FAR_FLOOR_RMS = 30.0  # PCM16 RMS (about -61 dBFS) below which a stretch of played audio counts as silence


class EchoGuard:
    """What was played over the last second, and the residual and the raw microphone of the last ``window``."""

    def __init__(self, window_ms: int = 300, max_lag_ms: int = 1000) -> None:
        frames = (max_lag_ms + window_ms) // 20 + 1
        self._far: deque[np.ndarray] = deque(maxlen=frames)
        self._residual: deque[np.ndarray] = deque(maxlen=window_ms // 20)
        self._raw: deque[np.ndarray] = deque(maxlen=window_ms // 20)

    def far(self, pcm: np.ndarray) -> None:
        self._far.append(pcm)

    def near(self, residual: np.ndarray, raw: np.ndarray) -> None:
        self._residual.append(residual)
        self._raw.append(raw)

    def similarity(self) -> tuple[float, float]:
        """Highest normalised correlation with the played audio, over all lags, of the residual and of the raw
        microphone (0 where there is nothing to compare)."""
        if not self._far or not self._raw:
            return 0.0, 0.0
        far = np.concatenate(self._far).astype(np.float64)
        n = sum(len(f) for f in self._raw)
        if not n or len(far) < n or not far.any():
            return 0.0, 0.0
        size = 1 << (len(far) + n - 1).bit_length()
        spectrum = np.fft.rfft(far, size)  # once for both
        energy = np.convolve(far * far, np.ones(n), mode="valid")  # |far segment|^2 at each lag
        # Where the played audio was (near) silent there is nothing to echo: those lags do not count. Without
        # the floor, rounding noise over exact digital silence divided by ~0 gave "similarities" in the
        # thousands, and every barge-in in a reply's first second was taken for echo.
        audible = energy > n * FAR_FLOOR_RMS ** 2
        if not audible.any():
            return 0.0, 0.0
        return (_match(spectrum, energy, audible, self._residual, size),
                _match(spectrum, energy, audible, self._raw, size))


def _match(spectrum: np.ndarray, energy: np.ndarray, audible: np.ndarray, frames: deque[np.ndarray],
           size: int) -> float:
    near = np.concatenate(frames).astype(np.float64)
    if not near.any():
        return 0.0
    corr = np.fft.irfft(spectrum * np.conj(np.fft.rfft(near, size)), size)[:len(energy)]
    norm = np.sqrt(energy[audible] * float(near @ near))
    return float(np.max(np.abs(corr[audible]) / norm))
