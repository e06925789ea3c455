"""The microphone side of one session, per 20 ms frame: echo cancellation and noise suppression, the VAD on the
cleaned signal (and on the raw one while a reply plays), and the gate that decides speech, echo and barge-in.

Synchronous and allocation-light: it runs on the event loop for every frame of every session.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ingest.echo_guard import EchoGuard
from ingest.engines.aec import EchoCanceller
from ingest.engines.ns import NoiseSuppressor
from ingest.engines.vad import VadEngine
from ingest.gate import EchoMatch, FrameIn, Gate, GateParams
from ingest.speech import Decision, SpeechStart, VadParams

ECHO_REACH_FRAMES = 50  # 1 s: the round trip to the peer and back, its jitter buffers and the room (the guard's max lag)


@dataclass(frozen=True)
class Heard:
    pcm: np.ndarray  # the cleaned frame
    probability: float  # its speech probability
    voiced: bool  # in the person's speech, or above the VAD threshold (not the agent's echo)
    decisions: list[Decision]
    barge_in: SpeechStart | None  # the person talks over the playing reply


def _rms(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float32)
    return float(np.sqrt(np.dot(x, x) / len(x)))


class NearEnd:
    def __init__(self, vad: VadEngine, params: VadParams, echo: EchoCanceller | None = None,
                 ns: NoiseSuppressor | None = None, gate: GateParams | None = None) -> None:
        self._vad_engine, self._echo, self._ns = vad, echo, ns
        self._vad = vad.stream()
        self._raw_vad = None if echo is None else vad.stream()
        # The played audio against the residual after cancellation and against the raw microphone.
        self._guard = None if echo is None else EchoGuard()
        self.gate = Gate(params, gate or GateParams())
        # What was played over the echo's reach, as RMS per frame (the echo of the last words still arrives).
        self._far_levels: deque[float] = deque([0.0], maxlen=ECHO_REACH_FRAMES)
        self._far_level = 0.0
        self._playing = False

    def far(self, pcm: np.ndarray) -> None:
        """A frame sent to the peer (silence included), as it is sent."""
        level = _rms(pcm) if pcm.any() else 0.0
        if level or self._far_level:
            self._far_levels.append(level)
            self._far_level = max(self._far_levels)
        if self._echo is not None:
            self._echo.far_end(pcm)
        if self._guard is not None:
            self._guard.far(pcm)

    def playing(self, on: bool) -> None:
        """A reply started or stopped playing. Starting one also starts the raw microphone's VAD afresh."""
        if on and not self._playing and self._raw_vad is not None:
            self._raw_vad = self._vad_engine.stream()
        self._playing = on

    def process(self, raw: np.ndarray, media_ns: int, wall_ns: int) -> Heard:
        pcm = raw
        if self._echo is not None:
            pcm = self._echo.near_end(pcm)
        if self._ns is not None:
            pcm = self._ns.process(pcm)
        probability = self._vad.probability(pcm)
        raw_p = None
        if self._playing and self._raw_vad is not None:
            raw_p = self._raw_vad.probability(raw)
        if self._guard is not None:
            self._guard.near(pcm, raw)
        out = self.gate.push(FrameIn(media_ns, wall_ns, probability, raw_p, _rms(raw), _rms(pcm), self._far_level,
                                     self._playing), self._echo_match)
        voiced = not out.echo and (self.gate.speaking or probability >= self.gate.vad.threshold)
        return Heard(pcm, probability, voiced, out.decisions, out.barge_in)

    def _echo_match(self) -> EchoMatch:
        return EchoMatch(*self._guard.similarity()) if self._guard is not None else EchoMatch(0.0, 0.0)
