"""A simulated caller: a real aiortc peer that speaks recordings into an edge and listens to the agent.

It sends 16 kHz recordings as 48 kHz Opus paced on an absolute clock, and watches the received audio for the
agent's replies (onset and end by energy), so a conversation can be scripted: speak, wait for the reply, pause,
speak again, or barge in while the agent talks.
"""

from __future__ import annotations

import asyncio
import fractions
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

RATE = 48_000
FRAME = 960  # 20 ms at 48 kHz
REPLY_RMS = 300.0  # int16 RMS above which received audio counts as the agent speaking
REPLY_GAP_S = 0.6  # this much quiet after agent audio ends a reply


def read_wav_16k(path: str | Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: want 16 kHz mono PCM16")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def upsample_48k(pcm16k: np.ndarray) -> np.ndarray:
    x = np.arange(len(pcm16k) * 3) / 3.0
    return np.interp(x, np.arange(len(pcm16k)), pcm16k.astype(np.float32)).astype(np.int16)


class SpeechTrack(MediaStreamTrack):
    """Outbound microphone: silence, or the utterance queued by ``say()``, in 20 ms frames on an absolute clock."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pending: deque[tuple[np.ndarray, asyncio.Future[tuple[float, float]]]] = deque()
        self._current: np.ndarray | None = None
        self._pos = 0
        self._started_at = 0.0
        self._done: asyncio.Future[tuple[float, float]] | None = None
        self._t0: float | None = None
        self._n = 0

    def say(self, pcm16k: np.ndarray) -> asyncio.Future[tuple[float, float]]:
        """Queue an utterance; the future gives (first sample sent, last sample sent) in wall time."""
        fut: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._pending.append((upsample_48k(pcm16k), fut))
        return fut

    def stop_speaking(self) -> None:
        self._current = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.time()
        else:
            self._n += 1
            await asyncio.sleep(max(0.0, self._t0 + self._n * 0.02 - time.time()))
        out = np.zeros(FRAME, dtype=np.int16)
        if self._current is None and self._pending:
            self._current, self._done = self._pending.popleft()
            self._pos, self._started_at = 0, time.time()
        if self._current is not None:
            chunk = self._current[self._pos:self._pos + FRAME]
            out[:len(chunk)] = chunk
            self._pos += FRAME
            if self._pos >= len(self._current):
                if self._done and not self._done.done():
                    self._done.set_result((self._started_at, time.time()))
                self._current = None
        frame = av.AudioFrame.from_ndarray(out.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._n * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


@dataclass
class HeardReply:
    onset: float  # wall time of the first loud received frame
    end: float | None = None


@dataclass
class Listener:
    """Consumes the agent's track and segments it into replies by energy."""

    replies: list[HeardReply] = field(default_factory=list)
    frames: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _last_loud: float = 0.0

    async def consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.time()
                self.frames += 1
                pcm = frame.to_ndarray().astype(np.float32)
                loud = float(np.sqrt(np.mean(pcm * pcm))) > REPLY_RMS
                current = self.replies[-1] if self.replies and self.replies[-1].end is None else None
                if loud:
                    self._last_loud = now
                    if current is None:
                        self.replies.append(HeardReply(now))
                        self.changed.set()
                elif current is not None and now - self._last_loud > REPLY_GAP_S:
                    current.end = self._last_loud
                    self.changed.set()
        except MediaStreamError:
            return

    async def wait(self, predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
        return True


class Caller:
    """One WebRTC session against an edge's signaling API."""

    def __init__(self, base_url: str, token: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.pc = RTCPeerConnection()
        self.mic = SpeechTrack()
        self.listener = Listener()
        self.session_id = ""
        self._consumer: asyncio.Task[None] | None = None

    async def connect(self) -> str:
        self.pc.addTrack(self.mic)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._consumer = asyncio.ensure_future(self.listener.consume(track))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession(headers=self.headers) as http:
            async with http.post(f"{self.base_url}/v1/sessions",
                                 json={"sdp": self.pc.localDescription.sdp, "type": "offer"}) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"edge refused the session: {resp.status} {body}")
        self.session_id = body["session_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        return self.session_id

    async def close(self) -> None:
        if self.session_id:
            try:
                async with aiohttp.ClientSession(headers=self.headers) as http:
                    await http.delete(f"{self.base_url}/v1/sessions/{self.session_id}")
            except aiohttp.ClientError:
                pass
        await self.pc.close()
        if self._consumer:
            self._consumer.cancel()
