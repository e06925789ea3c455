"""The ASR contract, run against every implementation (embedded pocketsphinx and Whisper; a Whisper-protocol
server). Texts are compared as words: Whisper writes case, punctuation and numbers as digits."""

from __future__ import annotations

import re

import numpy as np
import pytest

from inference.engines.base import EngineError
from runtime.pcm import resample
from tests.inference.recordings import load

FRAME_BYTES = 640  # 20 ms at 16 kHz
NUMBERS = {"10": "ten"}


def said(text: str) -> str:
    """The words of a transcript, without case, punctuation or digits."""
    return " ".join(NUMBERS.get(w, w) for w in re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


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
    assert said(await transcribe(asr_engine, pcm, 48000, piece=1920)) == "go forward ten meters"


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
        assert any(partials) and set(said(partials[-1]).split()) & set(said(final).split())
    else:
        assert not any(partials)
    assert said(final) == "go forward ten meters"


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
    assert said(await transcribe(asr_engine, load(speech_dir / "misc" / "goforward.wav"))) == "go forward ten meters"


async def test_a_prepared_final_is_the_final_of_the_audio_it_heard(asr_engine, speech_dir):
    """``prepare`` at a pause, silence after it: ``finish_prepared`` gives the speech's text. More speech after a
    preparation: ``finish`` hears all of it (a speculative engine works it out again)."""
    pcm = load(speech_dir / "misc" / "goforward.wav")
    stream = await asr_engine.stream(16000)
    try:
        await stream.push(pcm)
        await stream.prepare()
        await stream.push(bytes(FRAME_BYTES * 10))
        assert said(await stream.finish_prepared()) == "go forward ten meters"
        assert said(await stream.partial()) in ("", "go forward ten meters")  # once final, the final
    finally:
        await stream.aclose()
    stream = await asr_engine.stream(16000)
    try:
        await stream.push(pcm[: len(pcm) // 2])
        await stream.prepare()
        await stream.push(pcm[len(pcm) // 2:])
        assert said(await stream.finish()) == "go forward ten meters"
    finally:
        await stream.aclose()
