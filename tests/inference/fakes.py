"""Engine fakes shared by the responder's tests: real implementations of the engine ABCs, no mocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from inference.engines.base import TtsEngine


class Tone(TtsEngine):
    """Half a second of audio per sentence, in 100 ms pieces, yielding to the loop between them."""

    name, sample_rate = "tone", 16000

    async def stream(self, text: str) -> AsyncGenerator[bytes, None]:
        for _ in range(5):
            await asyncio.sleep(0)
            yield b"\x10\x00" * 1600
