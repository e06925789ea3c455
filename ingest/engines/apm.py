"""WebRTC's audio processing module (AEC3, noise suppression) through livekit's ``rtc.AudioProcessingModule``.

Each call crosses livekit's FFI (a protobuf request and reply, about 10 µs of Python per call, measured by
bench.aec_cost), four per 20 ms frame with echo cancellation. What is ours to save is the rest: every 10 ms chunk
goes through one buffer per direction, made once with its ``AudioFrame`` (the module works on it in place), instead
of a new bytearray and frame per chunk."""

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
        self._near, self._near_frame = self._chunk()
        self._far, self._far_frame = self._chunk()

    def _chunk(self) -> tuple[np.ndarray, Any]:
        data = bytearray(CHUNK * 2)
        return np.frombuffer(data, dtype=np.int16), self._rtc.AudioFrame(data, RATE, 1, CHUNK)

    def reverse(self, pcm: np.ndarray) -> None:
        far, frame, process = self._far, self._far_frame, self._apm.process_reverse_stream
        for start in range(0, len(pcm) - CHUNK + 1, CHUNK):
            far[:] = pcm[start:start + CHUNK]
            process(frame)

    def forward(self, pcm: np.ndarray) -> np.ndarray:
        out = np.empty_like(pcm)
        near, frame, process = self._near, self._near_frame, self._apm.process_stream
        for start in range(0, len(pcm) - CHUNK + 1, CHUNK):
            near[:] = pcm[start:start + CHUNK]
            process(frame)  # in place
            out[start:start + CHUNK] = near
        return out
