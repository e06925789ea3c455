"""A local HTTP server that speaks the OpenAI protocol (chat completions with SSE, transcriptions, speech).

It is backed by the embedded engines, so answers are real: a transcription is pocketsphinx's, speech is
espeak-ng's. Tests steer it to misbehave the way real servers do: error statuses with Retry-After, slow token
streams, streams that break off, error events mid-stream, stalls.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from inference.engines.base import Message
from inference.engines.rules_llm import reply_to
from runtime.pcm import read_wav, resample

SPEECH_RATE = 24000


@functools.cache
def shared_sphinx():
    """One pocketsphinx engine for the whole test run: its pooled decoders take half a second each to load."""
    from inference.engines.sphinx import PocketSphinxAsr

    return PocketSphinxAsr(keep_idle=4)


@dataclass
class Fault:
    status: int
    retry_after: str | None = None


@dataclass
class Behaviour:
    faults: list[Fault] = field(default_factory=list)  # answered in order, one per request, before real work
    api_key: str = ""  # if set, requests must carry it
    token_delay_s: float = 0.0  # pause before each streamed token / audio piece
    break_after: int | None = None  # close the connection after this many streamed pieces
    error_event_after: int | None = None  # send an {"error": ...} event after this many tokens
    stall_s: float = 0.0  # wait this long before answering at all
    raw_sse: bytes | None = None  # send exactly this as the chat stream body
    reply_text: str | None = None  # answer every chat with this text instead of the rules engine's reply


class OpenAiProtocolServer:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.disconnects = 0  # streams whose client went away before the end
        self.finished_streams = 0
        self.changed = asyncio.Event()  # set whenever a request or a stream ends (tests wait on it)
        self.url = ""
        from inference.engines.espeak import EspeakTts

        self._asr, self._tts = shared_sphinx(), EspeakTts()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
        app.router.add_post("/v1/audio/speech", self.speech)
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        b = self.behaviour
        if b.stall_s:
            await asyncio.sleep(b.stall_s)
        if b.api_key and request.headers.get("Authorization") != f"Bearer {b.api_key}":
            self.requests.append((request.path, {}))
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        if b.faults:
            fault = b.faults.pop(0)
            self.requests.append((request.path, {}))
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return web.json_response({"error": {"message": f"injected {fault.status}"}}, status=fault.status,
                                     headers=headers)
        return await handler(request)

    def _pieces(self) -> Iterator[int]:
        n = 0
        while True:
            if self.behaviour.break_after is not None and n >= self.behaviour.break_after:
                raise ConnectionAbortedError
            yield n
            n += 1

    async def _stream(self, request: web.Request, response: web.StreamResponse, parts: list[bytes]) -> None:
        await response.prepare(request)
        try:
            for n, part in zip(self._pieces(), parts, strict=False):
                if self.behaviour.token_delay_s:
                    await asyncio.sleep(self.behaviour.token_delay_s)
                if self.behaviour.error_event_after is not None and n == self.behaviour.error_event_after:
                    await response.write(b'data: {"error": {"message": "model crashed"}}\n\n')
                    break
                await response.write(part)
            else:
                await response.write_eof()
            self.finished_streams += 1
        except ConnectionAbortedError:
            request.transport.close()  # an abrupt end, as when a server dies mid-stream
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        finally:
            self.changed.set()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, body))
        try:
            messages = [Message(m["role"], m["content"]) for m in body["messages"]]
            text = self.behaviour.reply_text or reply_to(messages)
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": {"message": str(exc)}}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        if self.behaviour.raw_sse is not None:
            return await self._raw(request, response)
        words = text.split(" ")
        parts = [
            b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": w + (" " if i < len(words) - 1
                                                                                   else "")}}]}).encode() + b"\n\n"
            for i, w in enumerate(words)
        ]
        parts.insert(0, b": keep-alive comment\n\n" + b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n')
        parts.append(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
        await self._stream(request, response, parts)
        return response

    async def _raw(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        await response.prepare(request)
        await response.write(self.behaviour.raw_sse or b"")
        await response.write_eof()
        return response

    async def transcriptions(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        self.requests.append((request.path, {k: v for k, v in form.items() if k != "file"}))
        if upload is None or not hasattr(upload, "file"):
            return web.json_response({"error": {"message": "file is required"}}, status=400)
        try:
            pcm, rate = read_wav(upload.file.read())
        except ValueError as exc:
            return web.json_response({"error": {"message": str(exc)}}, status=400)
        stream = await self._asr.stream(rate)
        try:
            await stream.push(pcm.tobytes())
            text = await stream.finish()
        finally:
            await stream.aclose()
        self.changed.set()
        return web.json_response({"text": text})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, body))
        if body.get("response_format") != "pcm":
            return web.json_response({"error": {"message": "only pcm here"}}, status=400)
        audio = b"".join([piece async for piece in self._tts.stream(body.get("input", ""))])
        pcm = resample(audio, self._tts.sample_rate, SPEECH_RATE)
        step = 4801  # odd on purpose: samples split across network chunks
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await self._stream(request, response, [pcm[i:i + step] for i in range(0, len(pcm), step)])
        return response


@asynccontextmanager
async def serving(server: OpenAiProtocolServer) -> Any:
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server
    finally:
        await runner.cleanup()
