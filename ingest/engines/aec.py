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


class WebRtcAec3(EchoCanceller):
    """WebRTC AEC3 (with its own delay estimator), optionally with noise suppression in the same pass.

    Every far-end frame is fed, silence included: AEC3 aligns the two streams by counting frames, and a reply
    that follows skipped silence found its echo estimate misplaced (the residual came out louder than the raw
    microphone, and the echo was taken for a person talking over the reply)."""

    name = "webrtc-aec3"

    def __init__(self, noise_suppression: bool = False) -> None:
        from ingest.engines.apm import Apm

        self._apm = Apm(echo_cancellation=True, noise_suppression=noise_suppression)

    def far_end(self, pcm: np.ndarray) -> None:
        self._apm.reverse(pcm)

    def near_end(self, pcm: np.ndarray) -> np.ndarray:
        return self._apm.forward(pcm)
