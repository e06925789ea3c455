from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

SPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "speech"


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def lab_span(path: Path) -> tuple[float, float]:
    """(speech onset, speech offset) in seconds from a .lab file."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    start = next(float(r[0]) for r in rows if r[2] == "speech")
    end = next(float(r[0]) for r in rows if r[2] == "silence" and float(r[0]) > start)
    return start, end


@pytest.fixture(scope="session")
def speech() -> Path:
    if not SPEECH.is_dir():
        pytest.skip(f"speech data not found at {SPEECH}")
    return SPEECH
