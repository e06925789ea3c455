"""WebRTC's audio processing module (AEC3, noise suppression) through livekit's ``rtc.AudioProcessingModule``."""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas.audio import RATE

CHUNK = RATE // 100  # the APM works on exactly 10 ms


class Apm:
    def __init__(self, echo_cancellation: bool, noise_suppression: bool) -> None:
        from runtime.optional import optional_import

        self._rtc: Any = optional_import("livekit.rtc", "aec")
        self._apm = self._rtc.AudioProcessingModule(
            echo_cancellation=echo_cancellation, noise_suppression=noise_suppression, high_pass_filter=True)

    def reverse(self, pcm: np.ndarray) -> None:
        for start in range(0, len(pcm) - CHUNK + 1, CHUNK):
            frame = self._rtc.AudioFrame(bytearray(pcm[start:start + CHUNK].tobytes()), RATE, 1, CHUNK)
            self._apm.process_reverse_stream(frame)

    def forward(self, pcm: np.ndarray) -> np.ndarray:
        out = np.empty_like(pcm)
        for start in range(0, len(pcm) - CHUNK + 1, CHUNK):
            data = bytearray(pcm[start:start + CHUNK].tobytes())
            self._apm.process_stream(self._rtc.AudioFrame(data, RATE, 1, CHUNK))  # in place
            out[start:start + CHUNK] = np.frombuffer(data, dtype=np.int16)
        return out
