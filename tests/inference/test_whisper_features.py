"""The Smart Turn features against numbers computed once by Pipecat's own code.

The fixture holds ``compute_whisper_log_mel_features`` of pipecat-ai 1.14.0
(``pipecat/audio/turn/smart_turn/_whisper_features.py``) applied as its ``LocalSmartTurnAnalyzerV3`` does:
``misc/goforward.wav`` samples 8000..40000 (2 s of real speech) / 32768, left-padded with zeros to 8 s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.engines.whisper_features import FRAMES, N_MELS, RATE, WINDOW_SAMPLES, last_window, log_mel
from runtime.pcm import read_wav

FIXTURE = Path(__file__).parent / "fixtures" / "smart_turn_features_goforward.npz"


@pytest.fixture(scope="module")
def goforward(speech_dir: Path) -> np.ndarray:
    samples, rate = read_wav(speech_dir / "misc" / "goforward.wav")
    assert rate == RATE
    return samples


def test_features_of_real_speech_match_the_reference(goforward: np.ndarray) -> None:
    expected = np.load(FIXTURE)["features"]
    got = log_mel(goforward[8000:40000])
    assert got.shape == (N_MELS, FRAMES) == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_only_the_last_8_s_count(speech_dir: Path) -> None:
    samples, _ = read_wav(speech_dir / "misc" / "jfk.wav")  # 11 s
    assert samples.size > WINDOW_SAMPLES
    np.testing.assert_array_equal(log_mel(samples), log_mel(samples[-WINDOW_SAMPLES:]))
    assert not np.array_equal(log_mel(samples), log_mel(samples[:WINDOW_SAMPLES]))


def test_short_audio_is_left_padded_and_int16_is_scaled(goforward: np.ndarray) -> None:
    window = last_window(goforward[:1600])
    assert window.shape == (WINDOW_SAMPLES,) and not window[:-1600].any()
    np.testing.assert_array_equal(window[-1600:], goforward[:1600] / np.float32(32768))
    np.testing.assert_array_equal(log_mel(goforward), log_mel(goforward.astype(np.float32) / 32768))
