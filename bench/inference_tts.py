"""TTS benchmark: time to first audio and real-time factor of the embedded espeak-ng, including the resampling
to the 16 kHz reply rate the responder does. Run: .venv/bin/python -m bench.inference_tts
"""

from __future__ import annotations

import asyncio
import statistics
import time

from inference.engines.espeak import EspeakTts
from runtime.pcm import Resampler

SENTENCES = [
    "Hello!",
    "I'm doing well, thank you for asking.",
    "Once upon a time, a small robot lived in a lighthouse by the sea.",
    "Every night it counted the ships that passed, and every morning it wrote their names in a notebook.",
    "7 times 6 is 42.",
]


async def run(rounds: int = 20) -> None:
    tts = EspeakTts()
    await tts.warm()
    print(f"{'sentence':50} {'first audio ms':>14} {'audio s':>8} {'RTF':>7}")
    for text in SENTENCES:
        firsts, rtfs, seconds = [], [], 0.0
        for _ in range(rounds):
            resampler = Resampler(tts.sample_rate, 16000)
            out = 0
            t0 = time.perf_counter()
            first = None
            async for piece in tts.stream(text):
                out += len(resampler.push(piece))
                first = first if first is not None else time.perf_counter() - t0
            out += len(resampler.flush())
            total = time.perf_counter() - t0
            seconds = out / 32000
            firsts.append((first or 0) * 1000)
            rtfs.append(total / seconds)
        print(f"{text[:50]:50} {statistics.median(firsts):14.2f} {seconds:8.2f} {statistics.median(rtfs):7.4f}")


if __name__ == "__main__":
    asyncio.run(run())
