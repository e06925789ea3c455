"""Peers side by side: the same client load against a plain aiortc floor, Pipecat, and voicebus, in one run.

    .venv/bin/python -m bench.peers_load --sessions 5 10 20 30 40 --seconds 10

Every server gets the same clients (``ingest.client.EdgeClient``, as ``bench.edge_load``): each session speaks
real speech (the LibriVox clips and jfk, pre-encoded Opus, paced on an absolute 20 ms clock) and hears a reply
stream. The servers, each its own process pinned to CPU 0 (the clients run on the other CPUs):

- ``floor``: ``bench/peers/floor_server.py``, plain aiortc two-way audio with no processing at all;
- ``pipecat``: ``bench/peers/pipecat_server.py``, Pipecat 1.14's ``SmallWebRTCTransport`` with its Silero VAD
  (``VADProcessor``), run with its own virtualenv (``bench/peers/setup.sh`` makes it; voicebus never imports it);
- ``voicebus``: one edge (``voicebus ingest``: AEC, NS, Silero VAD, frames and VAD events to Kafka), its reply
  published on its return topic as the responder would;
- ``voicebus-workers``: ``voicebus ingest --workers N`` (N = CPUs) unpinned, for when the edge runs a worker per
  core; its sessions per core are its sessions / N. Shown as "not available" where the edge has no such option.

Per server and level K: reply jitter p99 (client packet arrivals against their RTP timestamps: |arrival gap -
timestamp gap|, so 10 and 20 ms packets compare alike), reply packets lost (RTP sequence gaps), input frames
lost (sent by the clients minus came out of the server's pipeline, beyond one per session at the window's
edges), capture -> pipeline p99 (the frame's capture time from the client's RTCP sender reports: for voicebus,
capture -> frame consumed from Kafka, the same as ``bench.edge_load``), server CPU per session. A server holds K
when jitter p99 <= 5 ms (``--jitter-ms``), nothing was lost and capture -> pipeline p99 <= 500 ms
(``--max-latency-ms``: beyond it the server fell behind). The table gives, per server, the largest K it held
(sessions per core) and the ratios to the floor and to Pipecat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.edge_load import metric, send_reply
from ingest.client import Clip, EdgeClient, load_speech

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
PEERS = Path(__file__).resolve().parent / "peers"
NODE = "bench-peers"
SERVERS = ("floor", "pipecat", "voicebus", "voicebus-workers")


class LoadClient(EdgeClient):
    """An EdgeClient that also keeps each reply packet's RTP sequence number and timestamp."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url, decode=False)
        self.packets: list[tuple[int, int, float]] = []  # (seq, rtp timestamp, arrival s)

    def _on_packet(self, seq: int, ts: int, payload: bytes, arrival_ns: int) -> None:
        self.packets.append((seq, ts, arrival_ns / 1e9))
        super()._on_packet(seq, ts, payload, arrival_ns)


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and all its descendants (an edge with workers is several processes)."""
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    cores: int = 1  # CPUs it may use (sessions per core = sessions / cores)
    pin: bool = True
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, workdir: Path) -> None:
        self.log = workdir / f"{self.name}.log"
        pin = ["taskset", "-c", "0"] if self.pin and (os.cpu_count() or 1) >= 2 else []
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([*pin, *self.argv], env={**os.environ, **self.env}, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.cwd())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{self.log.read_text()[-600:]}")
            try:
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within 60 s; see {self.log}")

    def cwd(self) -> str | None:
        return str(PEERS) if self.name in ("floor", "pipecat") else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def on_kafka(self) -> bool:
        return self.name.startswith("voicebus")


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def run_level(server: Server, k: int, seconds: float, clips: list[Clip], reply: np.ndarray,
                    kafka: str, prefix: str, jitter_ms: float, max_latency_ms: float) -> dict[str, Any]:
    clients = [LoadClient(server.url) for _ in range(k)]
    failed = 0
    for c in clients:  # one by one: a burst of k ICE/DTLS handshakes is not what is measured
        try:
            await c.connect()
        except Exception:  # noqa: BLE001 - a refused or failed session is a result, counted
            failed += 1
    live = [c for c in clients if c.session_id]
    for i, c in enumerate(live):
        for n in range(int((seconds + 4) // 6) + 2):
            c.mic.say(clips[(i + n) % len(clips)])
    kafka_watch = await KafkaWatch.start(kafka, prefix, live, reply) if server.on_kafka else None
    await asyncio.sleep(2.0)  # every session speaking and hearing; the first sender reports arrived
    before = _get(f"{server.url}/metrics") if server.on_kafka else ""
    if not server.on_kafka:
        _get(f"{server.url}/stats")  # reset
    sent0 = {id(c): c.mic.n for c in live}
    heard0 = {id(c): len(c.packets) for c in live}
    cpu0, wall0 = tree_cpu_seconds(server.proc.pid), time.monotonic()  # type: ignore[union-attr]
    clients_cpu0 = time.process_time()  # the clients share one process: if it saturates, every number suffers
    if kafka_watch is not None:
        latency = await kafka_watch.collect(seconds)
    else:
        await asyncio.sleep(seconds)
        latency = []
    cpu, wall = tree_cpu_seconds(server.proc.pid) - cpu0, time.monotonic() - wall0  # type: ignore[union-attr]
    clients_cpu = time.process_time() - clients_cpu0
    sent = sum(c.mic.n - sent0[id(c)] for c in live)
    speech_starts: int | str = "-"
    if server.on_kafka:
        after = _get(f"{server.url}/metrics")
        frames_out = int(metric(after, "voicebus_ingest_frames_in_total")
                         - metric(before, "voicebus_ingest_frames_in_total"))
        dropped = int(metric(after, "voicebus_ingest_frames_dropped_total")
                      - metric(before, "voicebus_ingest_frames_dropped_total"))
    else:
        stats = json.loads(_get(f"{server.url}/stats"))
        latency, frames_out, dropped = stats["latency_ms"], stats["frames"], 0
        speech_starts = stats["speech_starts"]
    jitter, lost, steps = [], 0, []
    for c in live:
        window = c.packets[heard0[id(c)]:]
        if len(window) < 2:
            lost += int(seconds * 50)
            continue
        seq = np.array([p[0] for p in window], dtype=np.int64)
        ts = np.array([p[1] for p in window], dtype=np.int64)
        at = np.array([p[2] for p in window])
        lost += int(np.sum(np.clip((np.diff(seq) % 65536) - 1, 0, None)))
        jitter += list(np.abs(np.diff(at) * 1000 - (np.diff(ts) % 2**32) / 48.0))
        steps += list((np.diff(ts) % 2**32) / 48.0)
    if kafka_watch is not None:
        await kafka_watch.stop()
    for c in clients:
        await c.close()
    input_lost = max(0, sent - frames_out - len(live)) + dropped
    jitter_p99 = pct(jitter, 99)
    row = {"server": server.name, "K": k, "failed sessions": failed,
           "cpu % per session": round(100 * cpu / wall / max(1, len(live)), 2),
           "cpu % total": round(100 * cpu / wall), "clients cpu %": round(100 * clients_cpu / wall),
           "jitter p50 ms": pct(jitter, 50), "jitter p99 ms": jitter_p99, "VAD speech starts": speech_starts,
           "reply packet ms": pct(steps, 50), "reply packets lost": lost, "input frames lost": input_lost,
           "capture->pipeline p50 ms": pct(latency, 50), "capture->pipeline p99 ms": pct(latency, 99)}
    row["held"] = holds(row, jitter_ms, max_latency_ms)
    return row


def holds(row: dict[str, Any], jitter_ms: float, max_latency_ms: float) -> bool:
    """The server kept up with this level: reply jitter within bounds, nothing lost, not fallen behind."""
    jitter, late = row["jitter p99 ms"], row["capture->pipeline p99 ms"]
    return (not row["failed sessions"] and jitter is not None and jitter <= jitter_ms and late is not None
            and late <= max_latency_ms and row["reply packets lost"] == 0 and row["input frames lost"] == 0)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


class KafkaWatch:
    """voicebus's side of a level: the reply published on the edge's return topic (as the responder would), and
    capture -> frame consumed from voice.audio (as ``bench.edge_load``)."""

    def __init__(self, consumer: Any, producer: Any, clients: dict[str, LoadClient]) -> None:
        self.consumer, self.producer, self.clients = consumer, producer, clients

    @classmethod
    async def start(cls, kafka: str, prefix: str, clients: list[LoadClient], reply: np.ndarray) -> KafkaWatch:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


        consumer = AIOKafkaConsumer(f"{prefix}voice.audio", bootstrap_servers=kafka, auto_offset_reset="latest",
                                    fetch_max_wait_ms=5)
        await consumer.start()
        await consumer.seek_to_end()
        producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=0)
        await producer.start()
        topic = f"{prefix}voice.replies.{NODE}"
        for c in clients:
            await send_reply(producer, topic, c.session_id, reply)
        return cls(consumer, producer, {c.session_id: c for c in clients})

    async def collect(self, seconds: float) -> list[float]:
        from schemas.audio import decode_frame

        await self.consumer.getmany(timeout_ms=10)
        await self.consumer.seek_to_end()  # frames from before the window are not measured
        out: list[float] = []
        deadline = time.time() + seconds
        while time.time() < deadline:
            batches = await self.consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                for r in records:
                    frame = decode_frame(r.value)
                    client = self.clients.get(frame.session_id)
                    if client is not None and frame.seq < len(client.mic.capture_times):
                        out.append((now - client.mic.capture_times[frame.seq]) * 1000)
        return out

    async def stop(self) -> None:
        await self.producer.stop()
        await self.consumer.stop()


def servers(names: list[str], kafka: str, prefix: str, reply_wav: Path, pipecat_python: str) -> list[Server]:
    from bench.reference_stack import free_port

    edge_env = {"VOICEBUS_TOPIC_PREFIX": prefix, "VOICEBUS_NODE_ID": NODE, "VOICEBUS_KAFKA_BOOTSTRAP": kafka,
                "VOICEBUS_MAX_SESSIONS": "400", "VOICEBUS_ICE_HOST_ADDRESSES": '["127.0.0.1"]',
                "VOICEBUS_LOG_LEVEL": "WARNING", "VOICEBUS_OFFERS_PER_MINUTE": "0",  # every caller is one address
                "VOICEBUS_WORKER_CPU_LIMIT": "100"}  # a busy worker still takes the level's sessions
    out = []
    for name in names:
        port = free_port()
        if name == "floor":
            out.append(Server(name, [sys.executable, "floor_server.py", "--port", str(port), "--reply", str(reply_wav)],
                              {}, port))
        elif name == "pipecat":
            out.append(Server(name, [pipecat_python, "pipecat_server.py", "--port", str(port), "--reply",
                                     str(reply_wav)], {"LOGURU_LEVEL": "WARNING"}, port))
        elif name == "voicebus":
            out.append(Server(name, [sys.executable, "-m", "voicebus.cli", "ingest", "--single"],
                              {**edge_env, "VOICEBUS_INGEST_PORT": str(port)}, port))
        elif name == "voicebus-workers":
            cores = os.cpu_count() or 1
            # The hook for the edge with a worker per core (issue 15): all CPUs, sessions per core = K / cores.
            out.append(Server(name, [sys.executable, "-m", "voicebus.cli", "ingest", "--workers", str(cores)],
                              {**edge_env, "VOICEBUS_INGEST_PORT": str(port)}, port, cores=cores, pin=False))
    return out


def table(rows: list[dict[str, Any]], names: list[str], cores: dict[str, int], unavailable: dict[str, str],
          jitter_ms: float, max_latency_ms: float = 500.0) -> str:
    """One summary row per server, then every level measured."""
    rows = [{**r, "held": holds(r, jitter_ms, max_latency_ms)} for r in rows]
    held = {n: max((r["K"] for r in rows if r["server"] == n and r["held"]), default=0) / cores.get(n, 1)
            for n in names}
    ran = [{r["K"] for r in rows if r["server"] == n} for n in names if n not in unavailable]
    common = min(set.intersection(*ran), default=None) if ran else None  # CPU compared at the lightest load all ran
    lines = [f"| server | sessions per core held (reply jitter p99 <= {jitter_ms:g} ms, nothing lost) | x floor "
             f"| x Pipecat | at that load: jitter p99 ms | capture->pipeline p99 ms | CPU % per session "
             f"| CPU % per session at K={common} | capture->pipeline p99 ms at K={common} |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        if n in unavailable:
            lines.append(f"| {n} | not available: {unavailable[n]} | | | | | | | |")
            continue
        mine = [r for r in rows if r["server"] == n]
        at = max((r for r in mine if r["held"]), key=lambda r: r["K"], default=None)
        same = next((r for r in mine if r["K"] == common), None)
        ratio = {p: (f"{held[n] / held[p]:.2f}" if held.get(p) else "-") for p in ("floor", "pipecat")}
        cells = [n, f"{held[n]:g}", ratio["floor"], ratio["pipecat"], at and at["jitter p99 ms"],
                 at and at["capture->pipeline p99 ms"], at and at["cpu % per session"],
                 same and same["cpu % per session"], same and same["capture->pipeline p99 ms"]]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    keys = list(rows[0]) if rows else []
    lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="voicebus-peers-"))
    prefix = f"peers{uuid.uuid4().hex[:6]}."
    broker = None
    kafka = args.kafka
    if any(n.startswith("voicebus") for n in args.servers) and not kafka:
        from bench.reference_stack import free_port
        from runtime.broker import LocalKafka
        from runtime.settings import KafkaBrokerSettings

        broker = LocalKafka(KafkaBrokerSettings(kafka_port=free_port(), kafka_controller_port=free_port()),
                            state_dir=workdir / "kafka")
        kafka = (await asyncio.to_thread(broker.start)).bootstrap
    pipecat_python = args.pipecat_python
    if "pipecat" in args.servers and not pipecat_python:
        pipecat_python = subprocess.run(["bash", str(PEERS / "setup.sh")], check=True, capture_output=True,
                                        text=True).stdout.strip().splitlines()[-1]
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))  # the clients keep off the servers' CPU
    clips = [Clip.of(load_speech(p)) for p in sorted((SPEECH / "librivox").glob("*.wav"))]
    clips.append(Clip.of(load_speech(SPEECH / "misc" / "jfk.wav")))
    reply_wav = SPEECH / "misc" / "jfk.wav"
    reply = np.tile(load_speech(reply_wav), int((args.seconds + 10) // 11) + 2)
    rows: list[dict[str, Any]] = []
    unavailable: dict[str, str] = {}
    todo = servers(args.servers, kafka or "", prefix, reply_wav, pipecat_python or "")
    try:
        if kafka:
            from runtime.provisioning import create_topics
            from runtime.settings import CommonSettings

            await create_topics(CommonSettings(kafka_bootstrap=kafka, topic_prefix=prefix), (NODE,))
        for server in todo:
            print(f"{server.name}: starting ...", file=sys.stderr, flush=True)
            try:
                server.start(workdir)
            except RuntimeError as exc:
                unavailable[server.name] = str(exc).splitlines()[0][:120]
                print(f"{server.name}: {exc}", file=sys.stderr, flush=True)
                server.stop()
                continue
            try:
                for k in args.sessions:
                    row = await run_level(server, k, args.seconds, clips, reply, kafka or "", prefix, args.jitter_ms,
                                          args.max_latency_ms)
                    rows.append(row)
                    print(f"{server.name} K={k}: {row}  (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
                    if not row["held"] and not args.keep_going:
                        break
            finally:
                server.stop()
    finally:
        if broker is not None:
            await asyncio.to_thread(broker.stop)
    load = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "unavailable": unavailable, "load": load}, indent=2))
    return (table(rows, args.servers, {s.name: s.cores for s in todo}, unavailable, args.jitter_ms,
                  args.max_latency_ms)
            + f"\n\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; logs in {workdir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--sessions", type=int, nargs="+", default=[5, 10, 20, 30, 40])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per level")
    parser.add_argument("--jitter-ms", type=float, default=5.0, help="reply jitter p99 a held level stays under")
    parser.add_argument("--max-latency-ms", type=float, default=500.0,
                        help="capture -> pipeline p99 a held level stays under (beyond it the server fell behind)")
    parser.add_argument("--json", type=Path, default=None, help="write every level's numbers here")
    parser.add_argument("--keep-going", action="store_true", help="run every level even after one is not held")
    parser.add_argument("--kafka", default="", help="use this broker for voicebus (default: start one)")
    parser.add_argument("--pipecat-python", default="", help="Pipecat venv's python (default: bench/peers/setup.sh)")
    args = parser.parse_args(argv)
    print(asyncio.run(main_async(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
