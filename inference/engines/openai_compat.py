"""Adapters for OpenAI-compatible HTTP servers: Whisper servers (``/audio/transcriptions``), chat models with
streaming (``/chat/completions``: vLLM, llama.cpp server, hosted APIs), speech servers (``/audio/speech``).

Retries happen only before any output was used (``HttpClient.post``); a stream that breaks off later raises a
retryable EngineError and the worker decides.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

import aiohttp

from inference.engines.base import (
    AsrCapabilities,
    AsrEngine,
    AsrStream,
    EngineError,
    LlmEngine,
    Message,
    TtsEngine,
)
from inference.engines.openai_http import Endpoint, HttpClient, json_event, sse_data
from runtime.pcm import wav_bytes

MAX_UTTERANCE_S = 120  # Whisper servers take at most a few minutes per request; a live utterance is far less


class OpenAiAsr(AsrEngine):
    """Whole-utterance transcription: audio is buffered while the person speaks and sent when speech ends."""

    capabilities = AsrCapabilities(streaming=False)

    def __init__(self, endpoint: Endpoint, language: str = "") -> None:
        self.name = f"openai:{endpoint.model}"
        self._http = HttpClient(endpoint)
        self._endpoint, self._language = endpoint, language

    async def stream(self, sample_rate: int = 16000) -> AsrStream:
        return _BufferedAsrStream(self, sample_rate)

    async def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("file", wav_bytes(pcm, sample_rate), filename="utterance.wav", content_type="audio/wav")
            data.add_field("model", self._endpoint.model)
            data.add_field("response_format", "json")
            if self._language:
                data.add_field("language", self._language)
            return data

        async with self._http.post("/audio/transcriptions", data=form) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError as exc:
                raise EngineError(f"transcription response is not JSON: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise EngineError(f"transcription response has no text: {str(body)[:200]}")
        return " ".join(body["text"].split())

    async def aclose(self) -> None:
        await self._http.aclose()


class _BufferedAsrStream(AsrStream):
    def __init__(self, engine: OpenAiAsr, sample_rate: int) -> None:
        self._engine, self._rate = engine, sample_rate
        self._pcm = bytearray()
        self._open = True
        self._final: str | None = None

    async def push(self, pcm: bytes) -> None:
        if not self._open:
            raise EngineError("audio pushed after finish() or aclose()")
        if len(self._pcm) + len(pcm) > MAX_UTTERANCE_S * self._rate * 2:
            raise EngineError(f"utterance longer than {MAX_UTTERANCE_S} s")
        self._pcm += pcm

    async def partial(self) -> str:
        return ""

    async def finish(self) -> str:
        if self._final is None:
            if not self._open:
                raise EngineError("finish() after aclose()")
            self._open = False
            # Silence in, nothing out: Whisper models invent words for empty audio.
            self._final = await self._engine.transcribe(bytes(self._pcm), self._rate) if self._pcm else ""
        return self._final

    async def aclose(self) -> None:
        self._open = False
        self._pcm.clear()


class OpenAiLlm(LlmEngine):
    def __init__(self, endpoint: Endpoint, temperature: float = 0.7, max_tokens: int = 300) -> None:
        self.name = f"openai:{endpoint.model}"
        self._http = HttpClient(endpoint)
        self._endpoint, self._temperature, self._max_tokens = endpoint, temperature, max_tokens

    async def stream(self, messages: Sequence[Message]) -> AsyncGenerator[str, None]:
        body: dict[str, Any] = {
            "model": self._endpoint.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "temperature": self._temperature,
            "max_tokens": self._max_tokens,
        }
        async with self._http.post("/chat/completions", json=body) as response:
            async for data in sse_data(response):
                event = json_event(data)
                for choice in event.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        yield content

    async def aclose(self) -> None:
        await self._http.aclose()


class OpenAiTts(TtsEngine):
    """Asks for ``response_format: pcm`` (raw PCM16 mono; OpenAI's is 24 kHz) and streams the body."""

    def __init__(self, endpoint: Endpoint, voice: str = "alloy", sample_rate: int = 24000) -> None:
        self.name = f"openai:{endpoint.model}"
        self.sample_rate = sample_rate
        self._http = HttpClient(endpoint)
        self._endpoint, self._voice = endpoint, voice

    async def stream(self, text: str) -> AsyncGenerator[bytes, None]:
        if not text.strip():
            return
        body = {"model": self._endpoint.model, "input": text, "voice": self._voice, "response_format": "pcm"}
        odd = b""
        async with self._http.post("/audio/speech", json=body) as response:
            try:
                async for piece in response.content.iter_any():
                    piece, odd = odd + piece, b""
                    if len(piece) % 2:  # keep samples whole across network chunks
                        piece, odd = piece[:-1], piece[-1:]
                    if piece:
                        yield piece
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
                raise EngineError(f"speech stream broke off: {exc or type(exc).__name__}", retryable=True) from exc

    async def aclose(self) -> None:
        await self._http.aclose()
