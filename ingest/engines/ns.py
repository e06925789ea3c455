"""Noise suppression before the VAD."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class NoiseSuppressor(ABC):
    name: str

    @abstractmethod
    def process(self, pcm: np.ndarray) -> np.ndarray:
        """16 kHz mono int16 in multiples of 10 ms, with less noise."""


class WebRtcNoiseSuppressor(NoiseSuppressor):
    name = "webrtc-ns"

    def __init__(self) -> None:
        from ingest.engines.apm import Apm

        self._apm = Apm(echo_cancellation=False, noise_suppression=True)

    def process(self, pcm: np.ndarray) -> np.ndarray:
        return self._apm.forward(pcm)
