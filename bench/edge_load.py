"""Load on one edge process: K concurrent aiortc sessions, each speaking real speech and hearing a reply stream.

    .venv/bin/python -m bench.edge_load --sessions 1 10 25 50 --seconds 15
    .venv/bin/python -m bench.edge_load --sessions 10 20 25 --trees ../wt-base .   # two checkouts, back to back

Needs a broker (VOICEBUS_KAFKA_BOOTSTRAP, default 127.0.0.1:9092). The edge runs as its own process
(``voicebus ingest``), pinned to CPU 0 when there are two or more CPUs; the clients run here, on the others.
Per K it prints: edge CPU per session, capture -> packet arrival at the edge (edge histogram, RTCP-synced),
capture -> producer accepted the frame (record CreateTime) and capture -> frame consumed from Kafka (exact
client capture times), reply inter-arrival at the clients (|gap - 20 ms|) and the edge's send lateness
against its 20 ms grid, frames dropped and concealed, and the machine's load average over the last minute (the
edge shares the machine with the clients and whatever else runs: compare rows of one run).

``--trees`` runs the edge from other checkouts (its code on PYTHONPATH first), each K against each tree in turn
with a fresh edge, so a change is compared with its base under the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ingest.client import Clip, EdgeClient, load_speech
from schemas.audio import decode_frame
from schemas.conversation import ReplyAudioChunk, ReplyEnded
from schemas.topics import REPLIES

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
NODE = "bench-edge"


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def hist_quantile(text: str, name: str, q: float) -> str:
    rows = re.findall(rf'^{re.escape(name)}_bucket{{le="([^"]+)"}} (\d+)$', text, re.MULTILINE)
    total = int(rows[-1][1]) if rows else 0
    if not total:
        return "-"
    for bound, count in rows:
        if int(count) >= q * total:
            return f"<={bound}"
    return "-"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send_reply(producer: AIOKafkaProducer, topic: str, session_id: str, reply: np.ndarray) -> None:
    """A reply stream for one session, as the responder sends it: 200 ms chunks, then its end."""
    chunks = [reply[j:j + 3200] for j in range(0, len(reply), 3200)]
    for j, pcm in enumerate(chunks):
        event = ReplyAudioChunk(session_id=session_id, seq=j, media_ns=0, wall_ns=time.time_ns(), turn_id="bench",
                                index=j, pcm=pcm.tobytes(), speech_start_media_ns=0, speech_end_media_ns=0)
        await producer.send(topic, REPLIES.codec.encode(event), key=session_id.encode())
    end = ReplyEnded(session_id=session_id, seq=len(chunks), media_ns=0, wall_ns=1, turn_id="bench",
                     chunks=len(chunks))
    await producer.send(topic, REPLIES.codec.encode(end), key=session_id.encode())


def reply_jitter_ms(clients: list[EdgeClient], seconds: float) -> list[float]:
    """How far apart each client's last 80 % of reply packets arrived, off the 20 ms they were sent at."""
    gaps: list[float] = []
    for c in clients:
        arrivals = np.array(c.hearing.arrivals[-int(seconds * 50 * 0.8):])
        gaps += list(np.abs(np.diff(arrivals) * 1000 - 20))
    return gaps


async def run_k(k: int, seconds: float, bootstrap: str, port: int, edge_pid: int, clips: list[Clip],
                reply: np.ndarray, prefix: str) -> dict[str, object]:
    base = f"http://127.0.0.1:{port}"
    clients = [EdgeClient(base, decode=False) for _ in range(k)]
    for c in clients:  # one by one: a burst of k ICE/DTLS handshakes is not what is measured
        await c.connect()
    consumer = AIOKafkaConsumer(f"{prefix}voice.audio", bootstrap_servers=bootstrap, auto_offset_reset="latest",
                                fetch_max_wait_ms=5)
    await consumer.start()
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    before = urllib.request.urlopen(f"{base}/metrics").read().decode()
    cpu0, wall0 = cpu_seconds(edge_pid), time.time()
    by_session = {c.session_id: c for c in clients}
    for i, c in enumerate(clients):  # speech in, and a reply stream out, on every session
        for n in range(int(seconds // 10) + 1):
            c.mic.say(clips[(i + n) % len(clips)])
        await send_reply(producer, f"{prefix}voice.replies.{NODE}", c.session_id, reply)
    published, consumed = [], []
    deadline = time.time() + seconds
    while time.time() < deadline:
        batches = await consumer.getmany(timeout_ms=100)
        now = time.time()
        for records in batches.values():
            for r in records:
                frame = decode_frame(r.value)
                client = by_session.get(frame.session_id)
                if client is None or frame.seq >= len(client.mic.capture_times):
                    continue
                captured = client.mic.capture_times[frame.seq]
                published.append((r.timestamp / 1000 - captured) * 1000)
                consumed.append((now - captured) * 1000)
    cpu = cpu_seconds(edge_pid) - cpu0
    wall = time.time() - wall0
    after = urllib.request.urlopen(f"{base}/metrics").read().decode()
    gaps = reply_jitter_ms(clients, seconds)
    await producer.stop()
    await consumer.stop()
    for c in clients:
        await c.close()

    def delta(name: str) -> int:
        return int(metric(after, name) - metric(before, name))

    return {
        "K": k,
        "edge CPU %/session": f"{100 * cpu / wall / k:.2f}",
        "edge CPU % total": f"{100 * cpu / wall:.0f}",
        "capture->arrival p50/p99 ms": f"{hist_quantile(after, 'voicebus_ingest_arrival_delay_ms', .5)}/"
                                       f"{hist_quantile(after, 'voicebus_ingest_arrival_delay_ms', .99)}",
        "capture->produced p50/p99 ms": f"{np.percentile(published, 50):.0f}/{np.percentile(published, 99):.0f}"
        if published else "-",
        "capture->consumed p50/p99 ms": f"{np.percentile(consumed, 50):.0f}/{np.percentile(consumed, 99):.0f}"
        if consumed else "-",
        "reply gap jitter p50/p99 ms": f"{np.percentile(gaps, 50):.1f}/{np.percentile(gaps, 99):.1f}" if gaps else "-",
        "edge send lateness p50/p99 ms": f"{hist_quantile(after, 'voicebus_ingest_playout_lateness_ms', .5)}/"
                                         f"{hist_quantile(after, 'voicebus_ingest_playout_lateness_ms', .99)}",
        "dropped": delta("voicebus_ingest_frames_dropped_total"),
        "concealed": delta("voicebus_ingest_frames_concealed_total"),
        "frames in": delta("voicebus_ingest_frames_in_total"),
        "load avg 1 min": f"{os.getloadavg()[0]:.1f}",
    }


async def start_edge(tree: Path, port: int, prefix: str, no_pin: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "VOICEBUS_TOPIC_PREFIX": prefix, "VOICEBUS_NODE_ID": NODE, "VOICEBUS_INGEST_PORT": str(port),
           "VOICEBUS_MAX_SESSIONS": "200", "VOICEBUS_ICE_HOST_ADDRESSES": "127.0.0.1", "VOICEBUS_LOG_LEVEL": "WARNING",
           "VOICEBUS_OFFERS_PER_MINUTE": "0",  # every caller comes from this one address
           "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    pin = ["taskset", "-c", "0"] if (os.cpu_count() or 1) >= 2 and not no_pin else []
    single = ["--single"] if (tree / "ingest" / "front.py").exists() else []  # one edge process, not its workers
    edge = subprocess.Popen([*pin, sys.executable, "-m", "voicebus.cli", "ingest", *single], env=env, cwd=tree)
    for _ in range(300):  # the edge is up when /healthz answers (bounded: 30 s)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
            break
        except OSError:
            await asyncio.sleep(0.1)
    return edge


async def main_async(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("VOICEBUS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    if (os.cpu_count() or 1) >= 2 and not args.no_pin:
        os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))
    clips = [Clip.of(load_speech(p)) for p in sorted((SPEECH / "librivox").glob("*.wav"))]
    clips.append(Clip.of(load_speech(SPEECH / "misc" / "jfk.wav")))
    reply = np.tile(load_speech(SPEECH / "misc" / "jfk.wav"), int(args.seconds // 11) + 2)
    trees = [Path(t).resolve() for t in args.trees]
    rows = []
    for k in args.sessions:
        for tree in trees:
            edge = await start_edge(tree, args.port, prefix, args.no_pin)
            try:
                row = await run_k(k, args.seconds, bootstrap, args.port, edge.pid, clips, reply, prefix)
            finally:
                edge.terminate()
                edge.wait(timeout=30)
            rows.append({"tree": tree.name, **row} if len(trees) > 1 else row)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[key]) for key in keys) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 10, 25, 50, 100])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--port", type=int, default=18180)
    parser.add_argument("--no-pin", action="store_true", help="do not pin the edge to CPU 0")
    parser.add_argument("--trees", nargs="+", default=[str(Path(__file__).resolve().parents[1])],
                        help="checkouts to run the edge from, each K against each in turn (default: this one)")
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
