"""What the peer servers of ``bench.peers_load`` share. Stand-alone (aiohttp, aiortc 1.16, numpy): the Pipecat
server runs it with Pipecat's own virtualenv, so it imports nothing from voicebus.

- Signaling as voicebus's edge speaks it (``POST /v1/sessions`` with an SDP offer -> ``{session_id, sdp}``,
  ``DELETE /v1/sessions/{id}``), so the same ``ingest.client.EdgeClient`` load runs against every peer.
- The capture clock: the client's RTCP sender reports pair an RTP timestamp with the wall time its packet was
  sent (the client's microphone hands each frame over as it is captured), so a frame's capture time is known
  from its RTP timestamp once the first report arrived. Client and server share this machine's clock. aiortc
  hands out decoded frames with ``pts`` = RTP timestamp minus the first one it decoded; that origin is read from
  the receiver (private, aiortc 1.16, as ``ingest.rtp_tap`` reads its own: bench code only).
- ``GET /stats``: per frame that came out of the server's pipeline, capture -> out (ms), since the last call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiortc.rtp import RtcpSrPacket

NTP_EPOCH = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)
RTP_RATE = 48000


class CaptureClock:
    """RTP timestamp -> the client's capture wall time, from its latest RTCP sender report."""

    def __init__(self) -> None:
        self._wall: float | None = None
        self._rtp = 0
        self._mapper: Any = None

    def hook(self, receiver: Any) -> None:
        """Hear ``receiver``'s sender reports (aiortc has no public hook; ``ingest.rtp_tap`` does the same)."""
        original = receiver._handle_rtcp_packet
        self._mapper = receiver._RTCRtpReceiver__timestamp_mapper

        async def handle(packet: Any) -> None:
            await original(packet)
            if isinstance(packet, RtcpSrPacket):
                info = packet.sender_info
                self._wall = (info.ntp_timestamp >> 32) - NTP_EPOCH + (info.ntp_timestamp & 0xFFFFFFFF) / 2**32
                self._rtp = info.rtp_timestamp

        receiver._handle_rtcp_packet = handle

    def captured(self, pts: int) -> float | None:
        """Capture wall time of the decoded frame with this ``pts``."""
        origin = self._mapper._origin if self._mapper is not None else None
        if self._wall is None or origin is None:
            return None
        delta = (origin + pts - self._rtp + 2**31) % 2**32 - 2**31  # wraps at 32 bits
        return self._wall + delta / RTP_RATE


class Stats:
    def __init__(self) -> None:
        self.latency_ms: list[float] = []
        self.frames = 0  # frames out of the pipeline, with or without a capture time yet
        self.speech_starts = 0  # the server's VAD heard speech begin (shows the VAD ran)

    def out(self, captured: float | None) -> None:
        self.frames += 1
        if captured is not None:
            self.latency_ms.append((time.time() - captured) * 1000)


Offer = Callable[[str, str], Awaitable[tuple[str, Callable[[], Awaitable[None]]]]]  # (sdp, id) -> (answer, close)


def app(offer: Offer, stats: Stats) -> web.Application:
    sessions: dict[str, Callable[[], Awaitable[None]]] = {}

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        session_id = uuid.uuid4().hex
        answer, close = await offer(body["sdp"], session_id)
        sessions[session_id] = close
        return web.json_response({"session_id": session_id, "sdp": answer, "type": "answer"})

    async def delete(request: web.Request) -> web.Response:
        close = sessions.pop(request.match_info["session_id"], None)
        if close is not None:
            await close()
        return web.json_response({"closed": close is not None})

    async def report(request: web.Request) -> web.Response:
        body = {"latency_ms": stats.latency_ms, "frames": stats.frames, "sessions": len(sessions),
                "speech_starts": stats.speech_starts}
        stats.latency_ms, stats.frames, stats.speech_starts = [], 0, 0
        return web.json_response(body)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"sessions": len(sessions)})

    application = web.Application()
    application.router.add_post("/v1/sessions", create)
    application.router.add_delete("/v1/sessions/{session_id}", delete)
    application.router.add_get("/stats", report)
    application.router.add_get("/healthz", health)
    return application


def serve(application: web.Application, port: int) -> None:
    web.run_app(application, host="127.0.0.1", port=port, access_log=None, print=None)
