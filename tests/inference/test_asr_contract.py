"""The ASR contract, run against every implementation (embedded pocketsphinx; a Whisper-protocol server)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.engines.base import EngineError
from runtime.pcm import resample
from tests.inference.recordings import load

FRAME_BYTES = 640  # 20 ms at 16 kHz


async def transcribe(engine, pcm: bytes, rate: int = 16000, piece: int = FRAME_BYTES) -> str:
    stream = await engine.stream(rate)
    try:
        for i in range(0, len(pcm), piece):
            await stream.push(pcm[i:i + piece])
        return await stream.finish()
    finally:
        await stream.aclose()


async def test_other_sample_rates_are_accepted(asr_engine, speech_dir):
    pcm = resample(load(speech_dir / "misc" / "goforward.wav"), 16000, 48000)
    assert await transcribe(asr_engine, pcm, 48000, piece=1920) == "go forward ten meters"


async def test_silence_gives_empty_text(asr_engine):
    assert await transcribe(asr_engine, bytes(16000)) == ""
    assert await transcribe(asr_engine, b"") == ""


async def test_real_speech_is_transcribed_with_partials_when_streaming(asr_engine, speech_dir):
    pcm = load(speech_dir / "misc" / "goforward.wav")
    stream = await asr_engine.stream(16000)
    try:
        partials = []
        for i in range(0, len(pcm), FRAME_BYTES):
            await stream.push(pcm[i:i + FRAME_BYTES])
            if i % (FRAME_BYTES * 25) == 0:
                partials.append(await stream.partial())
        final = await stream.finish()
    finally:
        await stream.aclose()
    if asr_engine.capabilities.streaming:
        assert any(partials) and set(partials[-1].split()) & set(final.split())
    else:
        assert not any(partials)
    assert final == "go forward ten meters"


async def test_stream_lifecycle(asr_engine, speech_dir):
    stream = await asr_engine.stream(16000)
    await stream.push(bytes(8000))
    first = await stream.finish()
    assert await stream.finish() == first  # finish is idempotent
    with pytest.raises(EngineError):
        await stream.push(bytes(640))
    await stream.aclose()
    await stream.aclose()
    # An abandoned stream leaves the engine usable.
    abandoned = await asr_engine.stream(16000)
    await abandoned.push(bytes(np.full(3200, 1000, dtype="<i2").tobytes()))
    await abandoned.aclose()
    assert await transcribe(asr_engine, load(speech_dir / "misc" / "goforward.wav")) == "go forward ten meters"
