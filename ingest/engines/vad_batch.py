"""Silero VAD for every session of an edge process in one ONNX call per event-loop turn, in the model's own windows.

The model scores 512-sample windows (32 ms at 16 kHz, each preceded by 64 samples of context) and takes a batch
with one recurrent state per stream (``state`` is ``[2, B, 128]``): B streams in one call give the same
probabilities as B calls, for less than half the time per stream. Each stream keeps its own state here; nothing
is reset when the batch changes size (Silero's own Python wrapper resets it then: the edge does not use it).

When is the batch run? A stream whose window completed asks for a run; the first ask in an event-loop turn
schedules one run with ``loop.call_soon``, which the loop makes before it reads the sockets again. So every window
completed while this turn's packets were processed goes into that run: under load many sessions' packets are read
in one turn and share a call, while on an idle edge a window is scored alone right after its packet. No window
waits for a timer or for other sessions, only for the rest of its own loop turn (the same work that would have
run ahead of it anyway). Without a running loop (offline tools, benchmarks) a window is scored at once.

A window is on the session's sample clock: window ``i`` covers samples ``[512 i, 512 (i + 1))``. A 20 ms frame is
described by the window that holds its centre (the one that covers most of it), not by the last window complete
when the frame arrived, which described audio about a frame older (``window_of``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from schemas.audio import FRAME_SAMPLES

log = logging.getLogger(__name__)

WINDOW = 512  # the model's window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the model sees first
_FRESH = np.zeros((2, 1, 128), dtype=np.float32)  # the model's state before any audio (read only: shared)
_FRESH.flags.writeable = False
KEPT = 4096  # probabilities a stream remembers at most (131 s) if its reader does not ``forget`` them


def window_of(frame_index: int) -> int:
    """The window holding the centre of 20 ms frame ``frame_index`` on the same sample clock."""
    return (frame_index * FRAME_SAMPLES + FRAME_SAMPLES // 2) // WINDOW


class WindowStream:
    """One signal of one session (the cleaned or the raw microphone) cut into the model's windows.

    ``push`` appends a frame; each window it completes is scored by the batch, or skipped when the caller does not
    need it (a skipped window also clears the recurrent state, so the next scored one starts afresh, with the real
    audio before it as context). ``listener`` is called after a run that scored any of its windows."""

    def __init__(self, batch: SileroBatch, listener: Callable[[], None] | None = None) -> None:
        self._batch, self.listener = batch, listener
        self.state = _FRESH
        self._buf = np.zeros(CONTEXT + WINDOW + 2 * FRAME_SAMPLES, dtype=np.float32)
        self._fill = CONTEXT  # samples in _buf: the context, then samples of the window being filled
        self.windows = 0  # windows completed (scored, skipped or queued)
        self.scored = 0  # windows whose probability is known (scored or skipped), in order
        # Of windows [scored - len, scored): until the reader forgets them (a burst of frames after a stall of the
        # loop completes many windows in one turn; their frames are handed on only after the whole run).
        self._probs: deque[float] = deque(maxlen=KEPT)
        self.last = 0.0  # the last probability scored
        self.queued: deque[np.ndarray] = deque()  # complete windows (context + window) waiting for the batch
        self.closed = False

    def push(self, frame: np.ndarray, score_upto: int | None = None) -> None:
        """Append one int16 frame; windows it completes are scored if their index is <= ``score_upto``
        (None: all), otherwise skipped."""
        buf, fill, n = self._buf, self._fill, len(frame)
        if fill + n > len(buf):
            raise ValueError(f"frames of at most {2 * FRAME_SAMPLES} samples")
        np.multiply(frame, 1.0 / 32768.0, out=buf[fill:fill + n], casting="unsafe")
        fill += n
        while fill >= CONTEXT + WINDOW:
            index = self.windows
            self.windows += 1
            if score_upto is None or index <= score_upto:
                self.queued.append(buf[:CONTEXT + WINDOW].copy())
                self._batch.want(self)
            elif self.queued:  # skipped behind windows still waiting: keep the order, drop it when its turn comes
                self.queued.append(np.empty(0, dtype=np.float32))
                self._batch.want(self)
            else:
                self._skipped()
            rest = fill - WINDOW
            buf[:rest] = buf[WINDOW:fill]
            fill = rest
        self._fill = fill

    def probability(self, window: int) -> float | None:
        """The probability of window ``window`` if it is known (NaN if it was skipped), else None."""
        if window >= self.scored:
            return None
        offset = window - (self.scored - len(self._probs))
        if offset < 0:
            raise LookupError(f"window {window} is forgotten")
        return self._probs[offset]

    def forget(self, before: int) -> None:
        """The reader needs no window before ``before`` any more."""
        probs, first = self._probs, self.scored - len(self._probs)
        while probs and first < before:
            probs.popleft()
            first += 1

    def close(self) -> None:
        self.closed = True
        self.queued.clear()

    def _skipped(self) -> None:
        self.state = _FRESH
        self._probs.append(float("nan"))
        self.scored += 1

    def scored_one(self, probability: float, state: np.ndarray) -> None:
        self.state, self.last = state, probability
        self._probs.append(probability)
        self.scored += 1
        while self.queued and not len(self.queued[0]):  # skipped windows that waited behind this one
            self.queued.popleft()
            self._skipped()


class SileroBatch:
    """Scores the queued windows of every stream of this process, one ONNX call per round."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self._sr = np.array(16000, dtype=np.int64)
        self._wanting: list[WindowStream] = []
        self._scheduled = False
        self.calls = 0  # ONNX calls made (a benchmark's view of the batching)
        self.windows = 0  # windows scored

    def stream(self, listener: Callable[[], None] | None = None) -> WindowStream:
        return WindowStream(self, listener)

    def want(self, stream: WindowStream) -> None:
        """``stream`` has a window queued: score it in this loop turn's run (at once if no loop runs)."""
        self._wanting.append(stream)
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.run()
            return
        self._scheduled = True
        loop.call_soon(self.run)

    def run(self) -> None:
        self._scheduled = False
        wanting, self._wanting = self._wanting, []
        streams = list(dict.fromkeys(s for s in wanting if not s.closed))  # once each, in order of asking
        touched = streams
        while streams:
            self._round(streams)
            streams = [s for s in streams if s.queued and not s.closed]
        for listener in dict.fromkeys(s.listener for s in touched if s.listener is not None):
            try:
                listener()
            except Exception:  # one session's failure must not hold up the frames of the others
                log.exception("a VAD listener failed")

    def _round(self, streams: list[WindowStream]) -> None:
        """One ONNX call: the oldest queued window of each stream, each with its own state."""
        windows = np.stack([s.queued.popleft() for s in streams])
        state = streams[0].state if len(streams) == 1 else np.concatenate([s.state for s in streams], axis=1)
        out, new_state = self._session.run(None, {"input": windows, "state": state, "sr": self._sr})
        self.calls += 1
        self.windows += len(streams)
        for i, s in enumerate(streams):
            s.scored_one(float(out[i, 0]), new_state[:, i:i + 1, :])
