"""Embedded ASR: pocketsphinx, whose English model ships inside the wheel (nothing to download).

Install it without its ``sounddevice`` dependency (that is for microphones only). ``fwdflat=False,
bestpath=False`` skip the second and third search passes: the final result is ready a few ms after the last
audio, which is what a live turn needs. Loading a decoder takes about half a second and ~90 MB, so decoders
are pooled: an utterance borrows one and gives it back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from inference.engines.base import AsrCapabilities, AsrEngine, AsrStream, EngineError
from runtime.optional import optional_import
from runtime.pcm import Resampler

MODEL_RATE = 16000
# Fewer active HMMs and word exits per frame, fewer Gaussians scored: real-time factor 0.21 -> 0.12 on the shared
# librivox clips, jfk and goforward, with the same word error rate (39 %). Several sessions share one core.
SEARCH_LIMITS = {"maxhmmpf": 5000, "maxwpf": 10, "topn": 2}


class PocketSphinxAsr(AsrEngine):
    name = "pocketsphinx"
    capabilities = AsrCapabilities(streaming=True)

    def __init__(self, keep_idle: int = 4) -> None:
        self._ps = optional_import("pocketsphinx", "asr")
        self._keep_idle = keep_idle
        self._idle: list[Any] = []

    def _new_decoder(self) -> Any:
        return self._ps.Decoder(fwdflat=False, bestpath=False, loglevel="FATAL", **SEARCH_LIMITS)

    async def warm(self) -> None:
        """Load the pool ahead (about 0.5 s and 90 MB each), so the first utterances of several sessions
        speaking at once do not wait for decoders and their finals are not late."""
        while len(self._idle) < self._keep_idle:
            self._idle.append(await asyncio.to_thread(self._new_decoder))

    async def stream(self, sample_rate: int = 16000) -> AsrStream:
        decoder = self._idle.pop() if self._idle else await asyncio.to_thread(self._new_decoder)
        await asyncio.to_thread(decoder.start_utt)
        return _SphinxStream(self, decoder, sample_rate)

    def _give_back(self, decoder: Any) -> None:
        if len(self._idle) < self._keep_idle:
            self._idle.append(decoder)

    async def aclose(self) -> None:
        self._idle.clear()


class _SphinxStream(AsrStream):
    def __init__(self, engine: PocketSphinxAsr, decoder: Any, sample_rate: int) -> None:
        self._engine, self._decoder = engine, decoder
        self._resampler = Resampler(sample_rate, MODEL_RATE)
        self._in_utt = True
        self._final: str | None = None
        # A cancelled caller leaves its thread running: the lock keeps the next call off the decoder until then.
        self._lock = threading.Lock()

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        def locked() -> Any:
            with self._lock:
                return fn(*args)

        return await asyncio.to_thread(locked)

    async def push(self, pcm: bytes) -> None:
        if not self._in_utt:
            raise EngineError("audio pushed after finish() or aclose()")
        data = self._resampler.push(pcm)
        if data:
            await self._call(self._decoder.process_raw, data, False, False)

    async def partial(self) -> str:
        if not self._in_utt:
            return self._final or ""
        hyp = await self._call(self._decoder.hyp)
        return hyp.hypstr if hyp is not None else ""

    async def finish(self) -> str:
        if self._final is not None:
            return self._final
        if not self._in_utt:
            raise EngineError("finish() after aclose()")
        tail = self._resampler.flush()

        def end() -> str:
            if tail:
                self._decoder.process_raw(tail, False, False)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
            return hyp.hypstr if hyp is not None else ""

        self._in_utt = False
        self._final = await self._call(end)
        self._engine._give_back(self._decoder)
        return self._final

    async def aclose(self) -> None:
        if self._in_utt:
            self._in_utt = False
            # An unfinished utterance: end it so the decoder is clean for the next borrower.
            await self._call(self._decoder.end_utt)
            self._engine._give_back(self._decoder)
