"""The microphone side of one session, per 20 ms frame: echo cancellation and noise suppression, the VAD on the
cleaned signal (and on the raw one while a reply plays), and the gate that decides speech, echo and barge-in.

A frame is cleaned as it arrives (the canceller must see near and far frames in the order they happen), then
waits for its speech probability: the model window holding the frame's centre, scored in the process's batch
(``ingest.engines.vad_batch``). That window ends at most 20 ms of audio after the frame: 5 frames in 8 wait for the
next one (12.5 ms on average, bench.vad_frames), the others are heard in their own event-loop turn. Frames leave in
order, through ``sink``, once their windows are scored.

Synchronous and allocation-light: it runs on the event loop for every frame of every session.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest.echo_guard import EchoGuard
from ingest.engines.aec import EchoCanceller
from ingest.engines.ns import NoiseSuppressor
from ingest.engines.vad import VadEngine
from ingest.engines.vad_batch import window_of
from ingest.gate import EchoMatch, FrameIn, Gate, GateParams
from ingest.speech import Decision, SpeechStart, VadParams

ECHO_REACH_FRAMES = 50  # 1 s: the round trip to the peer and back, its jitter buffers and the room (the guard's max lag)


@dataclass(frozen=True, slots=True)
class Heard:
    tag: Any  # what the caller gave with the frame
    raw: np.ndarray  # the frame as received
    pcm: np.ndarray  # the cleaned frame
    media_ns: int
    wall_ns: int
    probability: float  # its speech probability
    voiced: bool  # in the person's speech, or above the VAD threshold (not the agent's echo)
    decisions: list[Decision]
    barge_in: SpeechStart | None  # the person talks over the playing reply


class _Waiting:
    """A cleaned frame waiting for the model window holding its centre."""

    __slots__ = ("tag", "raw", "pcm", "media_ns", "wall_ns", "far_level", "playing", "window")

    def __init__(self, tag: Any, raw: np.ndarray, pcm: np.ndarray, media_ns: int, wall_ns: int, far_level: float,
                 playing: bool, window: int) -> None:
        self.tag, self.raw, self.pcm, self.media_ns, self.wall_ns = tag, raw, pcm, media_ns, wall_ns
        self.far_level, self.playing, self.window = far_level, playing, window


def _rms(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float32)
    return float(np.sqrt(np.dot(x, x) / len(x)))


class NearEnd:
    def __init__(self, vad: VadEngine, params: VadParams, echo: EchoCanceller | None = None,
                 ns: NoiseSuppressor | None = None, gate: GateParams | None = None,
                 sink: Callable[[Heard], None] | None = None) -> None:
        self._echo, self._ns = echo, ns
        self.sink = sink
        self._vad = vad.windows(self._release)
        # The raw microphone's windows are scored only while a reply plays (``_raw_need``); the ones in between
        # are skipped, which also starts its model afresh for the next reply.
        self._raw_vad = None if echo is None else vad.windows(self._release)
        self._raw_need = -1  # the last raw window a frame heard during playout waits for
        # The played audio against the residual after cancellation and against the raw microphone.
        self._guard = None if echo is None else EchoGuard()
        self.gate = Gate(params, gate or GateParams())
        # What was played over the echo's reach, as RMS per frame (the echo of the last words still arrives).
        self._far_levels: deque[float] = deque([0.0], maxlen=ECHO_REACH_FRAMES)
        self._far_level = 0.0
        self._playing = False
        self._frames = 0
        self._waiting: deque[_Waiting] = deque()

    @property
    def waiting(self) -> int:
        """Frames cleaned but not yet heard (waiting for their model window)."""
        return len(self._waiting)

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
        """A reply started or stopped playing (while it plays the raw microphone's VAD runs too)."""
        self._playing = on

    def process(self, raw: np.ndarray, media_ns: int, wall_ns: int, tag: Any = None) -> None:
        """A microphone frame, in order; it reaches ``sink`` once its speech probability is known."""
        pcm = raw
        if self._echo is not None:
            pcm = self._echo.near_end(pcm)
        if self._ns is not None:
            pcm = self._ns.process(pcm)
        window = window_of(self._frames)
        self._frames += 1
        self._waiting.append(_Waiting(tag, raw, pcm, media_ns, wall_ns, self._far_level, self._playing, window))
        if self._raw_vad is not None:
            if self._playing:
                self._raw_need = window
            self._raw_vad.push(raw, self._raw_need)
        self._vad.push(pcm)

    def flush(self) -> None:
        """The session ends: frames still waiting are heard with the last probabilities scored, and the streams
        leave the batch."""
        while self._waiting:
            w = self._waiting.popleft()
            p = self._vad.probability(w.window)
            raw_p = None
            if w.playing and self._raw_vad is not None:
                raw_p = self._raw_vad.probability(w.window)
                raw_p = self._raw_vad.last if raw_p is None else raw_p
            self._hear(w, self._vad.last if p is None else p, raw_p)
        self._vad.close()
        if self._raw_vad is not None:
            self._raw_vad.close()

    def _release(self) -> None:
        vad, raw_vad, waiting = self._vad, self._raw_vad, self._waiting
        heard = None
        while waiting:
            w = waiting[0]
            p = vad.probability(w.window)
            if p is None:
                break
            raw_p = None
            if w.playing and raw_vad is not None:
                raw_p = raw_vad.probability(w.window)
                if raw_p is None:
                    break
            waiting.popleft()
            heard = w.window
            self._hear(w, p, raw_p)
        if heard is not None:  # the next frame may share the last one's window, none needs an earlier one
            vad.forget(heard)
            if raw_vad is not None:
                raw_vad.forget(heard)

    def _hear(self, w: _Waiting, probability: float, raw_p: float | None) -> None:
        if self._guard is not None:
            self._guard.near(w.pcm, w.raw)
        out = self.gate.push(FrameIn(w.media_ns, w.wall_ns, probability, raw_p, _rms(w.raw), _rms(w.pcm),
                                     w.far_level, w.playing), self._echo_match)
        voiced = not out.echo and (self.gate.speaking or probability >= self.gate.vad.threshold)
        if self.sink is not None:
            self.sink(Heard(w.tag, w.raw, w.pcm, w.media_ns, w.wall_ns, probability, voiced, out.decisions,
                            out.barge_in))

    def _echo_match(self) -> EchoMatch:
        return EchoMatch(*self._guard.similarity()) if self._guard is not None else EchoMatch(0.0, 0.0)
