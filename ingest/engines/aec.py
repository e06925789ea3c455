"""Echo cancellation: remove the agent's own voice (the audio the edge plays) from the microphone."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class EchoCanceller(ABC):
    """Fed the far end (what the edge sent to the peer) as it is sent, and the near end (the peer's microphone)
    as it arrives, both 16 kHz mono int16 in multiples of 10 ms."""

    name: str

    @abstractmethod
    def far_end(self, pcm: np.ndarray) -> None: ...

    @abstractmethod
    def near_end(self, pcm: np.ndarray) -> np.ndarray:
        """The microphone audio with the echo removed."""


# Silence still fed to the canceller after the agent stops: the echo of the last words is still arriving.
QUIET_TAIL_FRAMES = 25  # 500 ms


class WebRtcAec3(EchoCanceller):
    """WebRTC AEC3 (with its own delay estimator), optionally with noise suppression in the same pass."""

    name = "webrtc-aec3"

    def __init__(self, noise_suppression: bool = False) -> None:
        from ingest.engines.apm import Apm

        self._apm = Apm(echo_cancellation=True, noise_suppression=noise_suppression)
        self._quiet = QUIET_TAIL_FRAMES

    def far_end(self, pcm: np.ndarray) -> None:
        # While the agent is silent there is no echo to model: skipping those frames saves two FFI round trips
        # per frame per idle session (the edge's largest cost after the VAD).
        if pcm.any():
            self._quiet = 0
        elif self._quiet >= QUIET_TAIL_FRAMES:
            return
        else:
            self._quiet += 1
        self._apm.reverse(pcm)

    def near_end(self, pcm: np.ndarray) -> np.ndarray:
        return self._apm.forward(pcm)
