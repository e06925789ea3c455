"""Silero VAD + the segmenter on real read speech: onsets and offsets against the .lab ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.engines.vad import SileroVad
from ingest.speech import Progress, Segmenter, SpeechStart, SpeechStop, VadParams
from tests.ingest.conftest import SPEECH, lab_span, load_speech

CLIPS = sorted((SPEECH / "librivox").glob("*.wav")) if SPEECH.is_dir() else []


@pytest.mark.parametrize("wav", CLIPS, ids=[p.stem[-4:] for p in CLIPS])
def test_speech_start_and_stop_within_150_ms_of_the_labels(wav: Path) -> None:
    start, end = lab_span(wav.with_suffix(".lab"))
    pcm = np.concatenate([load_speech(wav), np.zeros(16_000, np.int16)])  # a second of silence after
    vad, seg = SileroVad().stream(), Segmenter()
    starts, stops = [], []
    for i in range(len(pcm) // 320):
        for d in seg.push(i * 20_000_000, 0, vad.probability(pcm[i * 320:(i + 1) * 320])):
            if isinstance(d, SpeechStart):
                starts.append(d.start_media_ns / 1e9)
            elif isinstance(d, SpeechStop):
                stops.append(d.end_media_ns / 1e9)
    assert starts and stops
    assert abs(starts[0] - start) <= 0.150
    assert abs(stops[-1] - end) <= 0.150
    assert all(start - 0.150 <= t <= end + 0.150 for t in starts + stops)


def test_silence_and_noise_are_not_speech() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(16_000 * 3) * 300).astype(np.int16)
    vad, seg = SileroVad().stream(), Segmenter()
    decisions = [d for i in range(len(noise) // 320)
                 for d in seg.push(i * 20_000_000, 0, vad.probability(noise[i * 320:(i + 1) * 320]))]
    assert not any(isinstance(d, SpeechStart) for d in decisions)


P = VadParams(threshold=0.5, min_speech_ms=60, min_silence_ms=100, onset_pad_ms=0, progress_every_ms=200,
              progress_after_speech_ms=60)


@pytest.mark.parametrize("probs, expected", [
    ([0.9, 0.9], []),  # 40 ms: not yet speech
    ([0.9, 0.9, 0.9], [("start", 0)]),
    ([0.4, 0.9, 0.9, 0.9], [("start", 0)]),  # the rise (>= 0.35) is the onset
    ([0.1, 0.9, 0.9, 0.9], [("start", 20)]),
    ([0.9, 0.1, 0.9, 0.9, 0.9], [("start", 40)]),  # a dip resets the run
    ([0.9] * 3 + [0.4] * 3 + [0.1] * 5, [("start", 0), ("stop", 100)]),  # hysteresis keeps 0.4 voiced
])
def test_segmenter_table(probs: list[float], expected: list[tuple[str, int]]) -> None:
    seg = Segmenter(P)
    got = []
    for i, p in enumerate(probs):
        for d in seg.push(i * 20_000_000, 5 + i, p):
            if isinstance(d, SpeechStart):
                got.append(("start", d.start_media_ns // 1_000_000))
            elif isinstance(d, SpeechStop):
                got.append(("stop", d.end_media_ns // 1_000_000))
    assert got == expected


def test_progress_every_frame_after_speech_then_every_200_ms() -> None:
    seg = Segmenter(P)
    probs = [0.9] * 3 + [0.1] * 5 + [0.1] * 30
    progress_at = [i for i, p in enumerate(probs) for d in seg.push(i * 20_000_000, 0, p) if isinstance(d, Progress)]
    assert progress_at[0] == 0
    stop_frame = 7
    assert all(f in progress_at for f in range(stop_frame, stop_frame + 4))  # every frame right after speech
    late = [f for f in progress_at if f > stop_frame + 4]
    assert all(b - a == 10 for a, b in zip(late, late[1:], strict=False))
