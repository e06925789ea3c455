"""A WebRTC client of the edge for tests and benchmarks: speaks 16 kHz recordings, hears the agent.

The microphone track is paced on an absolute 20 ms clock and records when each frame was captured (handed to
aiortc), the ground truth for capture -> Kafka latency. Clips can be pre-encoded once and shared by many
clients (cheap load); with echo on, the agent audio heard is fed back into the microphone, delayed and
attenuated, and encoded live.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from ingest.audio import RTP_TICKS_PER_FRAME, OpusDecoder
from ingest.playout import OpusPacketizer, silence_packet
from ingest.rtp_tap import drain, tap_receiver
from runtime.pcm import Resampler, read_wav
from schemas.audio import FRAME_SAMPLES, RATE

TIME_BASE = fractions.Fraction(1, 48_000)
LOUD_RMS = 300.0


def load_speech(path: str | Path) -> np.ndarray:
    """A recording to speak: 16 kHz mono PCM16 samples (ValueError for another rate)."""
    samples, rate = read_wav(path)
    if rate != RATE:
        raise ValueError(f"{path}: want 16 kHz mono PCM16, got {rate} Hz")
    return samples


def frames_of(pcm: np.ndarray) -> list[np.ndarray]:
    n = -(-len(pcm) // FRAME_SAMPLES)
    padded = np.zeros(n * FRAME_SAMPLES, dtype=np.int16)
    padded[:len(pcm)] = pcm
    return [padded[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES] for i in range(n)]


@dataclass
class Clip:
    frames: list[np.ndarray]
    packets: list[bytes] | None = None  # pre-encoded Opus, one per frame

    @classmethod
    def of(cls, pcm: np.ndarray, pre_encode: bool = True, bitrate: int = 32000) -> Clip:
        frames = frames_of(pcm)
        packets = None
        if pre_encode:
            encoder = OpusPacketizer(bitrate)
            packets = [encoder.encode(f) or b"" for f in frames]
        return cls(frames, packets)


class MicTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, bitrate: int = 32000) -> None:
        super().__init__()
        self._clips: deque[tuple[Clip, asyncio.Future[tuple[int, float]]]] = deque()
        self._clip: Clip | None = None
        self._pos = 0
        self._encoder = OpusPacketizer(bitrate)
        self._silence = silence_packet(bitrate)
        self._echo: deque[np.ndarray] | None = None
        self._echo_gain = 0.0
        self.t0: float | None = None
        self.n = 0  # frames sent so far
        self.capture_times: list[float] = []  # wall time each frame was handed to aiortc, by frame number
        self._waiters: list[tuple[int, asyncio.Future[float]]] = []

    def say(self, clip: Clip) -> asyncio.Future[tuple[int, float]]:
        """Queue a clip; the future gives (frame number of its first frame, wall time it was captured)."""
        future: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()
        self._clips.append((clip, future))
        return future

    def captured(self, frame: int) -> asyncio.Future[float]:
        """Resolves with the wall time frame number ``frame`` was captured (at once if it was)."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if frame < len(self.capture_times):
            future.set_result(self.capture_times[frame])
        else:
            self._waiters.append((frame, future))
        return future

    @property
    def speaking(self) -> bool:
        return self._clip is not None or bool(self._clips)

    def echo(self, delay_ms: int, gain: float) -> None:
        """Loop what the client hears back into the microphone: delay_ms later, times gain."""
        self._echo = deque(np.zeros(FRAME_SAMPLES, dtype=np.int16) for _ in range(delay_ms // 20))
        self._echo_gain = gain

    def heard(self, pcm16k: np.ndarray) -> None:
        if self._echo is not None:
            self._echo.append(pcm16k)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.time()
        if self.t0 is None:
            self.t0 = now
        else:
            await asyncio.sleep(max(0.0, self.t0 + self.n * 0.02 - now))
        self.capture_times.append(time.time())
        if self._waiters:
            due = [w for w in self._waiters if w[0] <= self.n]
            self._waiters = [w for w in self._waiters if w[0] > self.n]
            for _, waiter in due:
                if not waiter.done():
                    waiter.set_result(self.capture_times[-1])
        pcm, payload = None, None
        if self._clip is None and self._clips:
            self._clip, future = self._clips.popleft()
            self._pos = 0
            future.set_result((self.n, self.capture_times[-1]))
        if self._clip is not None:
            pcm = self._clip.frames[self._pos]
            payload = self._clip.packets[self._pos] if self._clip.packets else None
            self._pos += 1
            if self._pos >= len(self._clip.frames):
                self._clip = None
        if self._echo is not None and len(self._echo) > 0:
            echo = (self._echo.popleft().astype(np.float32) * self._echo_gain)
            mixed = echo if pcm is None else echo + pcm
            pcm, payload = np.clip(mixed, -32768, 32767).astype(np.int16), None
        if payload is None and pcm is not None:
            payload = self._encoder.encode(pcm)
        packet = av.Packet(payload or self._silence)
        packet.pts = self.n * RTP_TICKS_PER_FRAME
        packet.time_base = TIME_BASE
        self.n += 1
        return packet


@dataclass
class Hearing:
    """What the client received: per 20 ms frame, arrival wall time and loudness."""

    arrivals: list[float] = field(default_factory=list)
    loud: list[bool] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, t: float, loud: bool) -> None:
        self.arrivals.append(t)
        self.loud.append(loud)
        self.changed.set()

    async def wait_for(self, predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def first_loud(self, after: int = 0) -> int | None:
        return next((i for i in range(after, len(self.loud)) if self.loud[i]), None)

    def last_loud(self) -> int | None:
        return next((i for i in range(len(self.loud) - 1, -1, -1) if self.loud[i]), None)


@dataclass(frozen=True)
class Told:
    """A message the edge sent on the data channel, and the wall time it arrived."""

    at: float
    message: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.message.get("type", ""))


class EdgeClient:
    """One session: ``decode=True`` decodes what it hears (tests); False only watches packet sizes (load).

    Like the browser page, it opens the ``events`` data channel; ``told`` keeps what the edge says on it (speech
    heard, replies started, paused by a barge-in, resumed and ended, with the turn and speech span they answer;
    ``ingest.peer.EdgeSession._tell_page`` lists them), with arrival times; ``told_of`` picks a turn's messages.
    Audio heard and messages both wake ``hearing.wait_for``.

    Like the page, it waits on ``GET /v1/sessions/{id}/ended``: when the edge ends the session (its edge
    worker died, for one) ``end_reason`` is set, the connection is closed and ``ended`` is set.
    """

    def __init__(self, base_url: str, token: str = "", decode: bool = True) -> None:
        self.base_url, self.token, self.decode = base_url.rstrip("/"), token, decode
        self.pc = RTCPeerConnection()
        self.mic = MicTrack()
        self.hearing = Hearing()
        self.session_id = ""
        self.node_id = ""  # the edge node (worker) holding the session
        self.end_reason = ""
        self.ended = asyncio.Event()
        self.told: list[Told] = []
        self._channel: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._resampler = Resampler(48_000, RATE)
        self._decoder = OpusDecoder()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def connect(self) -> str:
        self.pc.addTrack(self.mic)
        connected, channel_open = asyncio.Event(), asyncio.Event()
        self._channel = channel = self.pc.createDataChannel("events")  # the edge talks on the client's channel
        channel.on("open", channel_open.set)
        channel.on("message", self._on_message)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            # Packets are taken as they arrive (no 80 ms aiortc buffer between the edge and what we measure).
            receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
            tap_receiver(receiver, self._on_packet, lambda ntp, ts: None)
            self._tasks.append(asyncio.ensure_future(drain(track)))

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected":
                connected.set()

        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession(headers=self.headers) as http:
            async with http.post(f"{self.base_url}/v1/sessions",
                                 json={"sdp": self.pc.localDescription.sdp, "type": "offer"}) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"edge refused the session: {resp.status} {body}")
        self.session_id, self.node_id = body["session_id"], body.get("node_id", "")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
        async with asyncio.timeout(15):
            await connected.wait()
            await channel_open.wait()
        self._tasks.append(asyncio.ensure_future(self._watch_end()))
        return self.session_id

    async def _watch_end(self) -> None:
        url = f"{self.base_url}/v1/sessions/{self.session_id}/ended"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        try:
            async with aiohttp.ClientSession(headers=self.headers, timeout=timeout) as http, http.get(url) as resp:
                if resp.status != 200:
                    return
                self.end_reason = (await resp.json()).get("reason", "")
        except aiohttp.ClientError:
            return
        await self.pc.close()
        self.ended.set()
        self.hearing.changed.set()

    def told_of(self, turn_id: str, *types: str) -> list[Told]:
        """What the edge said about one turn's reply (of these message types, if given), in order."""
        return [t for t in self.told if t.message.get("turn_id") == turn_id and (not types or t.type in types)]

    def _on_message(self, data: str | bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if isinstance(message, dict):
            self.told.append(Told(time.time(), message))
            self.hearing.changed.set()

    def _on_packet(self, seq: int, ts: int, payload: bytes, arrival_ns: int) -> None:
        if not self.decode:
            self.hearing.add(arrival_ns / 1e9, len(payload) > 20)  # Opus silence is a few bytes
            return
        pcm16 = self._resampler(self._decoder.decode(payload))
        self.mic.heard(pcm16)
        rms = float(np.sqrt(np.mean(pcm16.astype(np.float32) ** 2))) if len(pcm16) else 0.0
        self.hearing.add(arrival_ns / 1e9, rms > LOUD_RMS)

    async def close(self, delete: bool = True) -> None:
        if delete and self.session_id:
            try:
                async with aiohttp.ClientSession(headers=self.headers) as http:
                    await http.delete(f"{self.base_url}/v1/sessions/{self.session_id}")
            except aiohttp.ClientError:
                pass
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
