from __future__ import annotations

import numpy as np
import pytest

from ingest.audio import CaptureClock, Framer, OpusDecoder, ntp_to_unix_ns
from ingest.playout import OpusPacketizer
from runtime.pcm import Resampler
from schemas.audio import FRAME_SAMPLES, RATE


@pytest.mark.parametrize("chunks", [[320] * 5, [100, 540, 320, 640], [960, 1, 319, 320], [7] * 100])
def test_framer_cuts_exact_frames_in_order(chunks: list[int]) -> None:
    framer = Framer()
    stream = np.arange(sum(chunks), dtype=np.int16)
    frames, pos = [], 0
    for n in chunks:
        frames += framer.push(stream[pos:pos + n])
        pos += n
    assert [f.index for f in frames] == list(range(sum(chunks) // FRAME_SAMPLES))
    assert all(len(f.pcm) == FRAME_SAMPLES for f in frames)
    joined = np.concatenate([f.pcm for f in frames])
    assert np.array_equal(joined, stream[:len(joined)])


def test_framer_marks_frames_that_hold_concealed_samples() -> None:
    framer = Framer()
    out = framer.push(np.zeros(480, np.int16)) + framer.push(np.zeros(320, np.int16), concealed=True)
    out += framer.push(np.zeros(640, np.int16))
    assert [f.concealed for f in out] == [False, True, True, False]


def test_resampler_48k_to_16k_keeps_a_tone() -> None:
    resample = Resampler(48_000, RATE)
    t = np.arange(48_000) / 48_000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    out = np.concatenate([resample(tone[i:i + 960]) for i in range(0, len(tone), 960)])
    assert abs(len(out) - 16_000) <= 64
    spectrum = np.abs(np.fft.rfft(out[1000:1000 + 8000]))
    assert abs(np.argmax(spectrum) * 16_000 / 8000 - 440) <= 4


def test_opus_round_trip_and_concealment() -> None:
    encoder, decoder = OpusPacketizer(32000), OpusDecoder()
    t = np.arange(320 * 50) / 16_000
    tone = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    decoded = [decoder.decode(p) for i in range(50) if (p := encoder.encode(tone[i * 320:(i + 1) * 320]))]
    assert all(len(d) == 960 for d in decoded)
    assert np.sqrt(np.mean(decoded[-1].astype(float) ** 2)) > 3000
    first, second = decoder.conceal(), decoder.conceal()
    assert np.abs(first).max() > 0 and not second.any()


def test_capture_clock_uses_the_earliest_arrival_until_a_sender_report() -> None:
    clock = CaptureClock()
    clock.on_arrival(960, 1_000_000_000 + 25_000_000)  # 5 ms late relative to the next one
    clock.on_arrival(1920, 1_000_000_000 + 40_000_000)
    assert clock.capture_ns(1920) == 1_040_000_000
    assert clock.capture_ns(960) == 1_020_000_000
    clock.on_sender_report(500_000_000, 960)
    assert clock.synced and clock.capture_ns(1920) == 520_000_000


def test_ntp_to_unix() -> None:
    assert ntp_to_unix_ns((2_208_988_800 + 10) << 32 | (1 << 31)) == 10_500_000_000
