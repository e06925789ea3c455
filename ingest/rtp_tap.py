"""The one module that reaches into aiortc's private internals (aiortc 1.16).

aiortc has no public hook for receive buffering: an audio RTCRtpReceiver feeds every packet into a private
JitterBuffer(capacity=16, prefetch=4) that holds 80 ms, then decodes in a thread. ``tap_receiver`` puts a tap
in that buffer's place: each packet goes straight to our callback (and our own buffer, ``ingest.jitter``),
nothing reaches aiortc's decoder, so its track stays empty. RTCP sender reports are passed on too, for the
capture clock. ``tests/ingest/test_rtp_tap.py`` fails when aiortc changes what is relied on here.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpSrPacket

PacketCallback = Callable[[int, int, bytes, int], None]  # (seq, rtp timestamp, payload, arrival ns)
ReportCallback = Callable[[int, int], None]  # (ntp timestamp, rtp timestamp)

_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
TESTED_AIORTC = "1.16"


class TapError(RuntimeError):
    """aiortc no longer has the internals this module relies on."""


class _Tap:
    """Stands in for aiortc's JitterBuffer: takes every packet, releases nothing to aiortc's decoder."""

    capacity = 16

    def __init__(self, on_packet: PacketCallback) -> None:
        self._on_packet = on_packet

    def add(self, packet: Any) -> tuple[bool, None]:
        # packet._data is the depayloaded codec frame (for Opus, the payload itself).
        self._on_packet(packet.sequence_number, packet.timestamp, packet._data, time.time_ns())
        return False, None

    def remove(self, count: int) -> None:  # part of the JitterBuffer interface; nothing is held here
        return None

    def smart_remove(self, count: int) -> bool:
        return False


def tap_receiver(receiver: RTCRtpReceiver, on_packet: PacketCallback, on_sender_report: ReportCallback) -> None:
    """Route ``receiver``'s RTP packets to ``on_packet`` and its RTCP sender reports to ``on_sender_report``.

    Call it before media flows (on the peer connection's "track" event).
    """
    if receiver.track is None or receiver.track.kind != "audio":
        raise TapError("only audio receivers are tapped")
    if not hasattr(receiver, _BUFFER_ATTR) or not hasattr(getattr(receiver, _BUFFER_ATTR), "add"):
        raise TapError(f"aiortc's RTCRtpReceiver has no {_BUFFER_ATTR} (tested with aiortc {TESTED_AIORTC})")
    original: Callable[[Any], Awaitable[None]] = receiver._handle_rtcp_packet
    if not callable(original):
        raise TapError("aiortc's RTCRtpReceiver has no _handle_rtcp_packet")
    setattr(receiver, _BUFFER_ATTR, _Tap(on_packet))

    async def handle_rtcp(packet: Any) -> None:
        await original(packet)
        if isinstance(packet, RtcpSrPacket):
            on_sender_report(packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp)

    receiver._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


async def drain(track: MediaStreamTrack) -> None:
    """Read a remote track until it ends. A tapped track gets no frames, but reading it is how its end is seen,
    and a remote track left unread grows its queue forever."""
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        return
