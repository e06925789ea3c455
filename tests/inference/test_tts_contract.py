"""The TTS contract, run against every implementation (embedded espeak-ng; a speech server)."""

from __future__ import annotations

import numpy as np


async def speak(engine, text: str) -> list[bytes]:
    return [piece async for piece in engine.stream(text)]


async def test_speaks_text_as_pcm16_at_its_rate(tts_engine):
    pieces = await speak(tts_engine, "Hello there. How can I help you today?")
    assert pieces and all(len(p) % 2 == 0 and p for p in pieces)
    samples = np.frombuffer(b"".join(pieces), dtype="<i2").astype(np.float64)
    seconds = len(samples) / tts_engine.sample_rate
    assert 1.0 < seconds < 6.0  # eight words at a speaking rate
    assert np.sqrt(np.mean(samples**2)) > 300  # speech, not silence


async def test_longer_text_gives_longer_audio(tts_engine):
    short = sum(map(len, await speak(tts_engine, "Yes.")))
    long = sum(map(len, await speak(tts_engine, "Yes, of course, I would be glad to help you with that today.")))
    assert long > 2 * short


async def test_empty_text_gives_no_audio(tts_engine):
    assert await speak(tts_engine, "") == []
    assert await speak(tts_engine, "   ") == []


async def test_closing_the_stream_early_stops_it_and_the_engine_stays_usable(tts_engine):
    stream = tts_engine.stream("Once upon a time, a small robot lived in a lighthouse by the sea. " * 3)
    assert await anext(stream)
    await stream.aclose()
    assert await speak(tts_engine, "Still here.")
