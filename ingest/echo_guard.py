"""Is this "speech" the agent's own voice coming back? A check made only when speech starts during playout.

WebRTC AEC3 needs agent audio to converge on a session's echo path; until then a loud echo can pass it and the
agent would interrupt itself. When speech starts while a reply may be heard, the guard compares the residual
after echo cancellation over the last ``window`` with the audio played over the last second (every lag): a
strong normalised correlation means it is the reply coming back, not a person (ingest/gate.py decides).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from schemas.audio import RATE

FAR_FLOOR_RMS = 30.0  # PCM16 RMS (about -61 dBFS) below which a stretch of played audio counts as silence


class EchoGuard:
    def __init__(self, window_ms: int = 300, max_lag_ms: int = 1000, threshold: float = 0.5) -> None:
        self.window = RATE * window_ms // 1000
        self.threshold = threshold
        frames = (max_lag_ms + window_ms) // 20 + 1
        self._far: deque[np.ndarray] = deque(maxlen=frames)
        self._near: deque[np.ndarray] = deque(maxlen=window_ms // 20)

    def far(self, pcm: np.ndarray) -> None:
        self._far.append(pcm)

    def near(self, pcm: np.ndarray) -> None:
        self._near.append(pcm)

    def similarity(self) -> float:
        """Highest normalised correlation of the recent microphone with the played audio, over all lags."""
        if not self._near or not self._far:
            return 0.0
        near = np.concatenate(self._near).astype(np.float64)
        far = np.concatenate(self._far).astype(np.float64)
        if len(far) < len(near) or not near.any() or not far.any():
            return 0.0
        n = len(far) + len(near)
        size = 1 << (n - 1).bit_length()
        corr = np.fft.irfft(np.fft.rfft(far, size) * np.conj(np.fft.rfft(near, size)), size)[:len(far) - len(near) + 1]
        energy = np.convolve(far * far, np.ones(len(near)), mode="valid")  # |far segment|^2 at each lag
        # Where the played audio was (near) silent there is nothing to echo: those lags do not count. Without
        # the floor, rounding noise over exact digital silence divided by ~0 gave "similarities" in the
        # thousands, and every barge-in in a reply's first second was taken for echo.
        audible = energy > len(near) * FAR_FLOOR_RMS ** 2
        if not audible.any():
            return 0.0
        norm = np.sqrt(energy[audible] * float(near @ near))
        return float(np.max(np.abs(corr[audible]) / norm))

    def is_echo(self) -> bool:
        return self.similarity() >= self.threshold
