"""Voice activity: a speech probability for every 20 ms frame.

Two ways to run it: ``stream()`` answers each frame at once with the last complete model window (offline tools
and tests), ``windows()`` is the edge's: the model's own windows, scored for all sessions of the process in one
call per event-loop turn (``ingest.engines.vad_batch``)."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ingest.engines.vad_batch import SileroBatch, WindowStream


class VadStream(ABC):
    """One session's detector state."""

    @abstractmethod
    def probability(self, frame: np.ndarray) -> float:
        """Speech probability (0..1) for one 16 kHz int16 frame; may lag the frame by up to one model window."""


class VadEngine(ABC):
    name: str

    @abstractmethod
    def stream(self) -> VadStream: ...

    @abstractmethod
    def windows(self, listener: Callable[[], None] | None = None) -> WindowStream:
        """A stream scored in the process's batch; ``listener`` is called after a run that scored its windows."""


def silero_model_path() -> Path:
    """The Silero VAD ONNX file inside the ``silero-vad`` wheel, found without importing the package
    (its ``__init__`` imports torch; the wheel is installed with --no-deps)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("silero-vad is not installed: pip install --no-deps 'silero-vad>=6' "
                          "(and 'voicebus[vad]' for onnxruntime)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"


@cache
def _silero_session() -> Any:
    from runtime.optional import optional_import

    ort = optional_import("onnxruntime", "vad")
    options = ort.SessionOptions()
    # One thread: the edge runs many sessions on one core; a thread pool per call only adds overhead.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(silero_model_path()), sess_options=options, providers=["CPUExecutionProvider"])


class SileroVad(VadEngine):
    """Silero VAD v6 on onnxruntime (no torch): one shared model, per-session recurrent state."""

    name = "silero-v6"

    def __init__(self) -> None:
        self.session = _silero_session()
        self.batch = SileroBatch(self.session)  # one per engine: the edge makes one engine per process

    def stream(self) -> VadStream:
        return _SileroStream(self.session)

    def windows(self, listener: Callable[[], None] | None = None) -> WindowStream:
        return self.batch.stream(listener)


class _SileroStream(VadStream):
    WINDOW = 512  # the model's window at 16 kHz (32 ms)
    CONTEXT = 64  # samples of the previous window the model sees first

    def __init__(self, session: Any) -> None:
        self._session = session
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._sr = np.array(16000, dtype=np.int64)
        self._pending = np.zeros(self.CONTEXT, dtype=np.float32)  # context + samples not yet seen by the model
        self._last = 0.0

    def probability(self, frame: np.ndarray) -> float:
        self._pending = np.concatenate([self._pending, frame.astype(np.float32) / 32768.0])
        while len(self._pending) >= self.CONTEXT + self.WINDOW:
            window = self._pending[:self.CONTEXT + self.WINDOW]
            out, self._state = self._session.run(None, {"input": window[None, :], "state": self._state,
                                                        "sr": self._sr})
            self._last = float(out[0][0])
            self._pending = self._pending[self.WINDOW:]
        return self._last
