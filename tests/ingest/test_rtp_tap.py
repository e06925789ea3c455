"""Fails when aiortc changes the internals ingest.rtp_tap relies on (it is the only module touching them)."""

from __future__ import annotations

import inspect

import aiortc
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcdtlstransport import RTCDtlsTransport

from ingest import rtp_tap


def test_receiver_still_feeds_packets_through_a_private_jitter_buffer() -> None:
    source = inspect.getsource(RTCRtpReceiver)
    assert "self.__jitter_buffer = JitterBuffer(capacity=16, prefetch=4)" in source
    assert "self.__jitter_buffer.add(packet)" in source
    assert "packet._data = depayload(codec, packet.payload)" in source  # what the tap hands on
    assert set(inspect.signature(JitterBuffer.add).parameters) == {"self", "packet"}


def test_transport_dispatches_rtcp_through_the_receiver_attribute() -> None:
    source = inspect.getsource(RTCDtlsTransport)
    assert "await recipient._handle_rtcp_packet(packet)" in source
    assert "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in source


def test_tested_version() -> None:
    assert aiortc.__version__.startswith(rtp_tap.TESTED_AIORTC), (
        f"aiortc {aiortc.__version__}: re-check ingest/rtp_tap.py against it, then update TESTED_AIORTC")
