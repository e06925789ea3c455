"""Smart Turn v3.2 (Daily/Pipecat, BSD-2-Clause): P(the person finished their turn) from the turn's audio.

The ONNX file is not in the repository: ``scripts/fetch_smart_turn.sh`` (run by ``install.sh``) takes it out of
the ``pipecat-ai`` wheel into ``inference/engines/data/`` and checks its hash. Pipecat is never imported.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from inference.engines.base import EngineError, TurnEndEngine
from inference.engines.whisper_features import WINDOW_SAMPLES, log_mel
from runtime.optional import optional_import

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
# Pinned in scripts/fetch_smart_turn.sh too: the file inside pipecat-ai==1.14.0.
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def model_path() -> Path:
    """Where the install step put the model (package data: found in a checkout and in an installed wheel)."""
    return Path(__file__).resolve().parent / "data" / MODEL_FILE


class SmartTurn(TurnEndEngine):
    """Smart Turn v3.2 on onnxruntime, one thread. Requests made while the model is busy (or in the same event
    loop tick: the ASR worker handles a poll's sessions together) are scored in one batch of up to ``max_batch``.
    """

    name = "smart-turn-v3.2"

    def __init__(self, path: Path | None = None, max_batch: int = 1) -> None:
        self._path = path or model_path()
        self._max_batch = max_batch
        self._session: Any = None
        self._pending: list[tuple[bytes, asyncio.Future[float]]] = []
        self._runner: asyncio.Task[None] | None = None
        # The model's own thread: a score must not wait behind the recogniser's calls in the default pool.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")

    def _load(self) -> Any:
        if self._session is None:
            ort = optional_import("onnxruntime", "vad")
            if not self._path.is_file():
                raise EngineError(f"Smart Turn model missing at {self._path}: run scripts/install.sh")
            options = ort.SessionOptions()
            # One thread: scores of many sessions share the ASR worker's core with the recogniser.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._session = ort.InferenceSession(str(self._path), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
        return self._session

    def predict(self, clips: list[np.ndarray]) -> list[float]:
        """P(complete) of each clip (16 kHz int16 or float), in one batch. Blocking."""
        features = np.stack([log_mel(c) for c in clips])
        out = self._load().run(None, {"input_features": features})[0]  # [B, 1], already a sigmoid
        return [float(p) for p in np.clip(out[:, 0], 0.0, 1.0)]

    async def warm(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self.predict, [np.zeros(1600, np.int16)])

    async def score(self, pcm: bytes) -> float:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pending.append((pcm, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)  # let the other sessions of this tick add theirs
        while self._pending:
            # A caller that gave up (timed out) is not scored.
            live = [(pcm, f) for pcm, f in self._pending if not f.done()]
            batch, self._pending = live[:self._max_batch], live[self._max_batch:]
            if not batch:
                continue
            clips = [np.frombuffer(pcm[-2 * WINDOW_SAMPLES:], np.int16) for pcm, _ in batch]
            try:
                scores = await loop.run_in_executor(self._thread, self.predict, clips)
            except Exception as exc:  # the callers decide what a failed score means
                for _, f in batch:
                    if not f.done():
                        f.set_exception(EngineError(f"smart turn failed: {exc}"))
                continue
            for (_, f), p in zip(batch, scores, strict=True):
                if not f.done():
                    f.set_result(p)

    async def aclose(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
