"""The peers benchmark's arithmetic (pure): the capture clock from RTCP sender reports, and the summary table."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from types import SimpleNamespace

import pytest
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

from bench.peers_load import PEERS, table


@pytest.fixture(scope="module")
def peer_common():
    spec = importlib.util.spec_from_file_location("peer_common", PEERS / "peer_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["peer_common"] = module
    spec.loader.exec_module(module)
    return module


def ntp(unix_s: float) -> int:
    seconds = int(unix_s) + 2208988800
    return (seconds << 32) | int((unix_s % 1) * 2**32)


@pytest.mark.parametrize(("origin", "sr_rtp", "pts", "expected_offset_s"), [
    (1000, 1000 + 48000, 48000, 0.0),  # the frame the report was sent with
    (1000, 1000 + 48000, 0, -1.0),  # a second before it
    (1000, 1000, 96000, 2.0),  # two seconds after
    (2**32 - 480, 2**32 - 480, 960, 0.02),  # the RTP timestamp wraps between the report and the frame
    (2**32 - 480, 480, 0, -0.02),  # ... or between the frame and the report
])
def test_capture_time_from_the_latest_sender_report(peer_common, origin, sr_rtp, pts, expected_offset_s):
    mapper = SimpleNamespace(_origin=origin)

    async def original(packet):
        return None

    receiver = SimpleNamespace(_handle_rtcp_packet=original, _RTCRtpReceiver__timestamp_mapper=mapper)
    clock = peer_common.CaptureClock()
    clock.hook(receiver)
    assert clock.captured(pts) is None  # no report yet
    sent_at = 1_800_000_000.25
    report = RtcpSrPacket(ssrc=1, sender_info=RtcpSenderInfo(ntp_timestamp=ntp(sent_at), rtp_timestamp=sr_rtp,
                                                             packet_count=0, octet_count=0))
    asyncio.run(receiver._handle_rtcp_packet(report))
    assert clock.captured(pts) == pytest.approx(sent_at + expected_offset_s, abs=1e-6)


def row(server: str, k: int, held: bool, jitter: float) -> dict:
    return {"server": server, "K": k, "failed sessions": 0, "jitter p99 ms": jitter, "reply packets lost": 0,
            "input frames lost": 0 if held else 50, "capture->pipeline p99 ms": 90.0, "cpu % per session": 3.0}


def test_sessions_per_core_and_the_ratios_to_the_floor_and_pipecat():
    rows = [row("floor", 10, True, 2.0), row("floor", 20, True, 4.0), row("floor", 30, False, 9.0),
            row("pipecat", 10, True, 3.0), row("pipecat", 20, False, 8.0),
            row("voicebus", 10, True, 4.0), row("voicebus", 20, False, 7.0)]
    text = table(rows, ["floor", "pipecat", "voicebus", "voicebus-workers"], {"voicebus-workers": 2},
                 {"voicebus-workers": "no --workers option"}, 5.0)
    summary = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in text.splitlines()[2:6]}
    assert summary["floor"][1:4] == ["20", "1.00", "2.00"]
    assert summary["voicebus"][1:4] == ["10", "0.50", "1.00"]
    assert "not available: no --workers option" in summary["voicebus-workers"][1]


def test_a_looser_jitter_bound_counts_more_levels_as_held():
    rows = [row("floor", 10, True, 2.0), row("floor", 20, True, 8.0), row("pipecat", 10, True, 12.0)]
    strict = table(rows, ["floor", "pipecat"], {}, {}, 5.0).splitlines()
    loose = table(rows, ["floor", "pipecat"], {}, {}, 20.0).splitlines()
    assert [line.split(" | ")[1] for line in strict[2:4]] == ["10", "0"]
    assert [line.split(" | ")[1] for line in loose[2:4]] == ["20", "10"]
