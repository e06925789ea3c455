"""The edge with 1 and with N workers side by side: K aiortc sessions through the signaling front, then a worker
killed and timed back.

    .venv/bin/python -m bench.edge_workers --workers 1 2 --sessions 10 20 --seconds 15 --kills 3

Needs a broker (VOICEBUS_KAFKA_BOOTSTRAP, default 127.0.0.1:9092). For each worker count the edge runs as
``voicebus ingest --workers N`` (the front and its workers, not pinned); the clients run here, each speaking real
speech and hearing a reply stream sent to its own worker's reply topic. Per row: sessions per worker, CPU of the
front and of all workers (% of one core, and per session), reply inter-arrival at the clients (|gap - 20 ms|),
capture -> frame accepted by Kafka (record CreateTime vs the client's capture time), frames concealed and
dropped. Then, with N workers, a worker is SIGKILLed ``--kills`` times: time until the front reports it ready
again, and the worker's own start-to-ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.edge_load import cpu_seconds, reply_jitter_ms, send_reply
from ingest.client import Clip, EdgeClient, load_speech
from schemas.audio import decode_frame

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"


def total(text: str, name: str) -> float:
    """A counter summed over every worker's labelled series."""
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def health(base: str) -> dict:
    try:
        return json.loads(urllib.request.urlopen(f"{base}/healthz").read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
    except OSError:
        return {}


async def until(predicate, timeout: float, step: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``predicate()`` holds (polled: this is a measurement, bounded by ``timeout``)."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError
        await asyncio.sleep(step)
    return time.monotonic() - start


async def run_k(k: int, seconds: float, base: str, bootstrap: str, prefix: str, pids: list[int],
                clips: list[Clip], reply: np.ndarray) -> dict[str, object]:
    clients = [EdgeClient(base, decode=False) for _ in range(k)]
    for c in clients:
        await c.connect()
    spread = Counter(c.node_id for c in clients)
    consumer = AIOKafkaConsumer(f"{prefix}voice.audio", bootstrap_servers=bootstrap, auto_offset_reset="latest",
                                fetch_max_wait_ms=5)
    await consumer.start()
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    before = urllib.request.urlopen(f"{base}/metrics").read().decode()
    cpu0, wall0 = [cpu_seconds(p) for p in pids], time.time()
    by_session = {c.session_id: c for c in clients}
    for i, c in enumerate(clients):
        for n in range(int(seconds // 10) + 1):
            c.mic.say(clips[(i + n) % len(clips)])
        await send_reply(producer, f"{prefix}voice.replies.{c.node_id}", c.session_id, reply)
    published = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        batches = await consumer.getmany(timeout_ms=100)
        for records in batches.values():
            for r in records:
                frame = decode_frame(r.value)
                client = by_session.get(frame.session_id)
                if client is None or frame.seq >= len(client.mic.capture_times):
                    continue
                published.append((r.timestamp / 1000 - client.mic.capture_times[frame.seq]) * 1000)
    wall = time.time() - wall0
    cpu = [cpu_seconds(p) - c0 for p, c0 in zip(pids, cpu0, strict=True)]
    after = urllib.request.urlopen(f"{base}/metrics").read().decode()
    gaps = reply_jitter_ms(clients, seconds)
    await producer.stop()
    await consumer.stop()
    for c in clients:
        await c.close()

    def delta(name: str) -> int:
        return int(total(after, name) - total(before, name))

    return {
        "workers": len(pids) - 1,
        "K": k,
        "sessions per worker": "/".join(str(spread[n]) for n in sorted(spread)),
        "front CPU %": f"{100 * cpu[0] / wall:.1f}",
        "workers CPU % (each)": "/".join(f"{100 * c / wall:.0f}" for c in cpu[1:]),
        "edge CPU %/session": f"{100 * sum(cpu) / wall / k:.2f}",
        "reply gap jitter p50/p99 ms": f"{np.percentile(gaps, 50):.1f}/{np.percentile(gaps, 99):.1f}" if gaps else "-",
        "capture->Kafka p50/p99 ms": f"{np.percentile(published, 50):.0f}/{np.percentile(published, 99):.0f}"
        if published else "-",
        "concealed": delta("voicebus_ingest_frames_concealed_total"),
        "dropped": delta("voicebus_ingest_frames_dropped_total"),
        "frames in": delta("voicebus_ingest_frames_in_total"),
    }


async def kills(base: str, n: int) -> list[tuple[float, float]]:
    """(SIGKILL -> the front reports the worker ready again, the new worker's own start -> ready), n times."""
    out = []
    for _ in range(n):
        worker = health(base)["workers"][0]
        killed = time.monotonic()
        os.kill(worker["pid"], signal.SIGKILL)

        def back() -> bool:
            w = next((x for x in health(base).get("workers", []) if x["node_id"] == worker["node_id"]), None)
            return bool(w and w["ready"] and w["pid"] != worker["pid"])

        await until(back, 120)
        again = next(x for x in health(base)["workers"] if x["node_id"] == worker["node_id"])
        out.append((time.monotonic() - killed, again["ready_after_s"]))
    return out


async def main_async(args: argparse.Namespace) -> None:
    bootstrap = os.environ.get("VOICEBUS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    clips = [Clip.of(load_speech(p)) for p in sorted((SPEECH / "librivox").glob("*.wav"))]
    clips.append(Clip.of(load_speech(SPEECH / "misc" / "jfk.wav")))
    reply = np.tile(load_speech(SPEECH / "misc" / "jfk.wav"), int(args.seconds // 11) + 2)
    rows, restarts = [], []
    for workers in args.workers:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        base = f"http://127.0.0.1:{args.port}"
        env = {**os.environ, "VOICEBUS_TOPIC_PREFIX": prefix, "VOICEBUS_NODE_ID": "bench-edge",
               "VOICEBUS_INGEST_PORT": str(args.port), "VOICEBUS_MAX_SESSIONS": "200",
               "VOICEBUS_WORKER_CPU_LIMIT": "100", "VOICEBUS_ICE_HOST_ADDRESSES": "127.0.0.1",
               "VOICEBUS_LOG_LEVEL": "WARNING", "VOICEBUS_OFFERS_PER_MINUTE": "0"}  # all callers: one address
        front = subprocess.Popen([sys.executable, "-m", "voicebus.cli", "ingest", "--workers", str(workers)], env=env)
        try:
            await until(lambda: health(base).get("status") == "ok", 180, 0.2)
            pids = [front.pid] + [w["pid"] for w in health(base)["workers"]]
            for k in args.sessions:
                rows.append(await run_k(k, args.seconds, base, bootstrap, prefix, pids, clips, reply))
            if workers == max(args.workers) and args.kills:
                restarts = await kills(base, args.kills)
        finally:
            front.send_signal(signal.SIGTERM)
            front.wait(timeout=60)
    keys = list(rows[0])
    print(f"\nload average (1/5/15 min): {os.getloadavg()}")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[key]) for key in keys) + " |")
    if restarts:
        killed = [r[0] for r in restarts]
        print(f"\nworker SIGKILL -> ready again: {[round(r, 2) for r in killed]} s (median {np.median(killed):.2f}); "
              f"its own start -> ready: {[round(r[1], 2) for r in restarts]} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--port", type=int, default=18181)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
