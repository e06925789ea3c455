"""The Smart Turn model the install step extracted is the pinned file (scripts/fetch_smart_turn.sh), and the
engine that runs it batches the requests of one tick."""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from inference.engines.base import EngineError
from inference.engines.smart_turn import MODEL_SHA256, SmartTurn, model_path
from runtime.pcm import read_wav

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_smart_turn.sh"


def test_the_installed_model_has_the_pinned_hash() -> None:
    path = model_path()
    # Not skipped when missing: .ci/run runs scripts/install.sh first, and the ASR worker needs the file.
    assert path.is_file(), f"{path} is missing: run scripts/install.sh (or scripts/fetch_smart_turn.sh PYTHON)"
    assert path.stat().st_size == 8_679_182
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MODEL_SHA256


def test_the_install_step_pins_the_same_hash() -> None:
    assert re.search(r'^sha256="([0-9a-f]{64})"', SCRIPT.read_text(), re.M).group(1) == MODEL_SHA256


@pytest.fixture(scope="module")
def clips(speech_dir: Path) -> list[np.ndarray]:
    jfk, _ = read_wav(speech_dir / "misc" / "jfk.wav")
    go, _ = read_wav(speech_dir / "misc" / "goforward.wav")
    return [jfk[: 16000 * 3], jfk, go]


async def test_requests_of_one_tick_are_batched_and_each_gets_its_own_score(clips: list[np.ndarray]) -> None:
    engine = SmartTurn(max_batch=8)
    alone = [engine.predict([c])[0] for c in clips]
    calls: list[int] = []
    predict = engine.predict
    engine.predict = lambda batch: calls.append(len(batch)) or predict(batch)  # type: ignore[method-assign]
    together = await asyncio.gather(*(engine.score(c.tobytes()) for c in clips))
    await engine.aclose()
    assert calls == [3]
    assert together == pytest.approx(alone, abs=1e-4) and all(0 <= p <= 1 for p in together)
    assert len({round(p, 3) for p in alone}) == 3  # different audio, different scores: the order is checked


async def test_one_at_a_time_when_the_batch_is_one(clips: list[np.ndarray]) -> None:
    engine = SmartTurn(max_batch=1)
    calls: list[int] = []
    predict = engine.predict
    engine.predict = lambda batch: calls.append(len(batch)) or predict(batch)  # type: ignore[method-assign]
    await asyncio.gather(*(engine.score(c.tobytes()) for c in clips))
    await engine.aclose()
    assert calls == [1, 1, 1]


async def test_a_missing_model_fails_with_the_install_hint(tmp_path: Path) -> None:
    engine = SmartTurn(path=tmp_path / "none.onnx")
    with pytest.raises(EngineError, match="install.sh"):
        await engine.score(bytes(3200))
    await engine.aclose()
