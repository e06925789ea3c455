"""The edge's per-frame path alone, for K sessions in one process: CPU per session-frame, without WebRTC or Kafka.

Each session is what ``ingest.peer`` builds: an ``Inbound`` (receive buffer, Opus decode, 16 kHz framing) over a
``NearEnd`` (AEC3 and noise suppression, the Silero VAD on the cleaned microphone and, while a reply plays, on the
raw one; the speech/echo gate), sharing one VAD engine. Every 20 ms tick each session gets one Opus packet of real
speech and sends one frame of reply (played to AEC3 as the far end); the ticks run as fast as the CPU allows, one
event-loop turn each, so the cost is the path's and not the transport's. Reported per K: CPU µs per session per
20 ms frame (process time, which other processes on the machine do not inflate much), the share of one core that
makes at 50 frames per second, and so the sessions that fit in one core by this path alone.

    .venv/bin/python -m bench.edge_frames --sessions 10 20 25

It drives only the API every version of the edge has (``Inbound(near_end, sink)``, ``on_packet``,
``NearEnd(vad, params, echo, ns)``, ``far``, ``playing``), so it can measure another checkout: copy it out of
``bench/`` (run from there, ``bench/platform.py`` would shadow the standard library's) and put that checkout first:
``cp bench/edge_frames.py /tmp/ && PYTHONPATH=../wt-base .venv/bin/python /tmp/edge_frames.py --speech ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

import av
import numpy as np

from ingest.client import load_speech
from ingest.engines import build_audio_processing
from ingest.engines.vad import SileroVad
from ingest.inbound import Inbound
from ingest.near_end import NearEnd
from ingest.speech import VadParams
from runtime.pcm import Resampler

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
FRAME = 320


def opus_packets(pcm16k: np.ndarray) -> list[bytes]:
    pcm = Resampler(16_000, 48_000)(pcm16k)
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format, encoder.bit_rate = 48_000, "mono", "s16", 32_000
    packets = []
    for i in range(0, len(pcm) - 960 + 1, 960):
        frame = av.AudioFrame.from_ndarray(pcm[i:i + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48_000, i
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


async def run(k: int, ticks: int, packets: list[bytes], reply: np.ndarray) -> float:
    vad = SileroVad()
    sessions = []
    frames = [0]

    def sink(*_: object) -> None:
        frames[0] += 1

    for i in range(k):
        echo, ns = build_audio_processing(True, True)
        near_end = NearEnd(vad, VadParams(), echo, ns)
        near_end.playing(True)  # a reply plays on every session: both VAD streams run, as in bench.edge_load
        sessions.append((Inbound(near_end, sink), near_end, i * 37))
    t0, wall0 = time.process_time(), time.time_ns()
    for tick in range(ticks):
        now = wall0 + tick * 20_000_000
        for inbound, near_end, offset in sessions:
            n = (tick + offset) % len(packets)
            start = n * FRAME % (len(reply) - FRAME)
            near_end.far(reply[start:start + FRAME])
            inbound.on_packet(tick & 0xFFFF, tick * 960, packets[n], now)
        await asyncio.sleep(0)  # one loop turn per tick
    cpu = time.process_time() - t0
    for inbound, _, _ in sessions:
        inbound.close()
    return cpu / (ticks * k) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 20, 25])
    parser.add_argument("--ticks", type=int, default=500, help="20 ms ticks per run (500: 10 s of audio)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--speech", type=Path, default=SPEECH)
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    packets = opus_packets(load_speech(args.speech / "misc" / "jfk.wav"))
    reply = load_speech(next(iter(sorted((args.speech / "librivox").glob("*.wav")))))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.runs} runs of {args.ticks} ticks per K, median")
    print("| K | CPU µs per session-frame | % of a core per session | sessions per core (this path alone) |")
    print("|---|---|---|---|")
    for k in args.sessions:
        us = statistics.median(asyncio.run(run(k, args.ticks, packets, reply)) for _ in range(args.runs))
        print(f"| {k} | {us:.0f} | {us / 200:.2f} | {20_000 / us:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
