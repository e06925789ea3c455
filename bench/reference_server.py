"""A local HTTP server that speaks the OpenAI protocol (chat completions with SSE, transcriptions, speech).

Two kinds of answers behind one protocol:

- ``EmbeddedAnswers`` (the tests' server): real answers from the embedded engines, pocketsphinx's transcription,
  the rules engine's reply, espeak-ng's speech. Tests steer the server to misbehave the way real servers do:
  error statuses with Retry-After, slow token streams, streams that break off, error events mid-stream, stalls.
- ``ReferenceAnswers`` (the reference engines of ``voicebus bench --engines reference``): each registered
  recording's known transcript (placed by ``bench.reference_match``), a fixed reply text and its pre-rendered
  audio, after configurable delays. Model time is then only those delays and costs almost no CPU, so a benchmark
  measures the platform (transport, Kafka hops, turn decisions, playout) and not the recogniser.

Run the reference engines on their own (the bench does this for you)::

    python -m bench.reference_server --port 8000 --audio ../shared/data/speech/misc/*.wav

and point the platform at them: VOICEBUS_ASR_ENGINE=openai VOICEBUS_LLM_ENGINE=openai VOICEBUS_TTS_ENGINE=openai
with VOICEBUS_{ASR,LLM,TTS}_OPENAI_URL=http://127.0.0.1:8000/v1.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from bench.reference_match import Recordings
from inference.engines.base import Message
from inference.engines.rules_llm import reply_to
from runtime.pcm import read_wav, resample

log = logging.getLogger("bench.reference_server")
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
    token_delay_s: float = 0.0  # pause before each streamed chat token
    break_after: int | None = None  # close the connection after this many streamed pieces
    error_event_after: int | None = None  # send an {"error": ...} event after this many tokens
    stall_s: float = 0.0  # wait this long before answering at all
    raw_sse: bytes | None = None  # send exactly this as the chat stream body
    reply_text: str | None = None  # answer every chat with this text instead of the answers' reply
    transcription_delay_s: float = 0.0  # before a transcription is answered (the recogniser's time)
    first_token_delay_s: float = 0.0  # before a chat stream's first token (an LLM's time to first token)
    first_audio_delay_s: float = 0.0  # before a speech stream's first audio (a TTS's time to first audio)


class Answers:
    """What the server answers with; the protocol, faults and delays are the server's."""

    async def transcribe(self, pcm: np.ndarray, rate: int) -> str:
        raise NotImplementedError

    def reply(self, messages: Sequence[Message]) -> str:
        raise NotImplementedError

    async def speech(self, text: str) -> bytes:
        """PCM16 mono at SPEECH_RATE."""
        raise NotImplementedError


class EmbeddedAnswers(Answers):
    def __init__(self) -> None:
        from inference.engines.espeak import EspeakTts

        self._asr, self._tts = shared_sphinx(), EspeakTts()

    async def transcribe(self, pcm: np.ndarray, rate: int) -> str:
        stream = await self._asr.stream(rate)
        try:
            await stream.push(pcm.tobytes())
            return await stream.finish()
        finally:
            await stream.aclose()

    def reply(self, messages: Sequence[Message]) -> str:
        return reply_to(messages)

    async def speech(self, text: str) -> bytes:
        audio = b"".join([piece async for piece in self._tts.stream(text)])
        return resample(audio, self._tts.sample_rate, SPEECH_RATE)


@dataclass
class ReferenceAnswers(Answers):
    """Known transcripts of registered recordings; one reply text and its audio, whatever was said or asked.

    The reply audio is a recording of that text (default: "go forward ten meters", the goforward clip), resampled
    once at start; every speech request gets it, so TTS costs no CPU. Transcriptions that match no registered
    recording get no words and are counted in ``unmatched``.
    """

    recordings: Recordings
    reply_text: str
    reply_audio: bytes  # PCM16 mono at SPEECH_RATE
    matched: int = 0
    unmatched: int = 0

    @classmethod
    def from_files(cls, audio: Sequence[Path], reply_wav: Path, reply_text: str | None = None) -> ReferenceAnswers:
        recordings = Recordings()
        for path in audio:
            recordings.register_file(path)
        pcm, rate = read_wav(reply_wav)
        text = reply_text
        if text is None:
            transcript = reply_wav.with_suffix(".txt")
            text = transcript.read_text().strip() if transcript.exists() else "Okay."
            text = text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")
        return cls(recordings, text, resample(pcm.tobytes(), rate, SPEECH_RATE))

    async def transcribe(self, pcm: np.ndarray, rate: int) -> str:
        if rate != 16000:
            pcm = np.frombuffer(resample(pcm.tobytes(), rate, 16000), dtype=np.int16)
        match = self.recordings.match(pcm)
        if match.name:
            self.matched += 1
        else:
            self.unmatched += 1
            log.warning("a transcription matched no registered recording (best score %.2f, %.1f s of audio)",
                        match.score, len(pcm) / 16000)
        return match.text

    def reply(self, messages: Sequence[Message]) -> str:
        return self.reply_text

    async def speech(self, text: str) -> bytes:
        return self.reply_audio


class OpenAiProtocolServer:
    def __init__(self, answers: Answers | None = None) -> None:
        self.behaviour = Behaviour()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.disconnects = 0  # streams whose client went away before the end
        self.finished_streams = 0
        self.changed = asyncio.Event()  # set whenever a request or a stream ends (tests wait on it)
        self.url = ""
        self.answers = answers or EmbeddedAnswers()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
        app.router.add_post("/v1/audio/speech", self.speech)
        app.router.add_get("/healthz", self.health)
        return app

    async def health(self, request: web.Request) -> web.Response:
        answers = self.answers
        body: dict[str, Any] = {"requests": len(self.requests)}
        if isinstance(answers, ReferenceAnswers):
            body |= {"recordings": len(answers.recordings), "matched": answers.matched,
                     "unmatched": answers.unmatched}
        return web.json_response(body)

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

    async def _stream(self, request: web.Request, response: web.StreamResponse, parts: list[bytes],
                      first_delay_s: float = 0.0, piece_delay_s: float = 0.0) -> None:
        await response.prepare(request)
        try:
            if first_delay_s:
                await asyncio.sleep(first_delay_s)
            for n, part in zip(self._pieces(), parts, strict=False):
                if piece_delay_s:
                    await asyncio.sleep(piece_delay_s)
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
            text = self.behaviour.reply_text or self.answers.reply(messages)
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
        await self._stream(request, response, parts, self.behaviour.first_token_delay_s, self.behaviour.token_delay_s)
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
        if self.behaviour.transcription_delay_s:
            await asyncio.sleep(self.behaviour.transcription_delay_s)
        text = await self.answers.transcribe(pcm, rate)
        self.changed.set()
        return web.json_response({"text": text})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, body))
        if body.get("response_format") != "pcm":
            return web.json_response({"error": {"message": "only pcm here"}}, status=400)
        pcm = await self.answers.speech(body.get("input", ""))
        step = 4801  # odd on purpose: samples split across network chunks
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await self._stream(request, response, [pcm[i:i + step] for i in range(0, len(pcm), step)],
                           self.behaviour.first_audio_delay_s)
        return response


@asynccontextmanager
async def serving(server: OpenAiProtocolServer, host: str = "127.0.0.1", port: int = 0) -> Any:
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://{host}:{port}/v1"
    try:
        yield server
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    from bench.simulate import SPEECH

    parser = argparse.ArgumentParser(prog="python -m bench.reference_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--audio", nargs="+", type=Path, required=True,
                        help="the recordings the callers speak (16 kHz WAV, transcript beside it as .txt)")
    parser.add_argument("--reply-audio", type=Path, default=SPEECH / "misc" / "goforward.wav",
                        help="the reply every speech request gets (its .txt is the reply text)")
    parser.add_argument("--reply-text", default=None, help="the reply every chat gets (default: the reply's .txt)")
    parser.add_argument("--asr-delay-ms", type=float, default=50.0, help="before a transcription is answered")
    parser.add_argument("--llm-first-token-ms", type=float, default=100.0, help="before a chat's first token")
    parser.add_argument("--llm-token-ms", type=float, default=5.0, help="between two chat tokens")
    parser.add_argument("--tts-first-audio-ms", type=float, default=50.0, help="before a speech's first audio")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    answers = ReferenceAnswers.from_files(args.audio, args.reply_audio, args.reply_text)
    server = OpenAiProtocolServer(answers)
    server.behaviour = Behaviour(transcription_delay_s=args.asr_delay_ms / 1000,
                                 first_token_delay_s=args.llm_first_token_ms / 1000,
                                 token_delay_s=args.llm_token_ms / 1000,
                                 first_audio_delay_s=args.tts_first_audio_ms / 1000)

    async def serve() -> None:
        async with serving(server, args.host, args.port):
            log.info("reference engines at %s: %d recordings, reply %r", server.url, len(answers.recordings),
                     answers.reply_text)
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
