"""The whole platform the way `voicebus up` runs it, for the chaos run and the soak: a local broker this process
owns (so a fault can stop and start it, and its process is reaped here), and `voicebus up` as a child process
running every service under its supervisor, on ports of their own. Services are found by pid from /proc."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from runtime.broker import LocalKafka
from runtime.settings import KafkaBrokerSettings
from schemas.topics import replies_topic

NODE = "edge-1"
EDGE_WORKERS = 2  # the edge as `voicebus up` runs it: a signaling front and its worker nodes
# the topics the responder answers each edge worker on
REPLY_TOPICS = tuple(replies_topic(f"{NODE}-w{i}") for i in range(1, EDGE_WORKERS + 1))
SERVICES = ("ingest", "streams", "asr", "responder", "telemetry")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def service_pids(up_pid: int) -> dict[str, int]:
    """The services `voicebus up` (pid ``up_pid``) runs now, by name (`python -m voicebus.cli NAME`)."""
    found: dict[str, int] = {}
    for pid in children_of(up_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"voicebus.cli" in argv:
            name = argv[argv.index(b"voicebus.cli") + 1].decode()
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z":
                found[name] = pid
    return found


def usage(pid: int) -> tuple[float, int] | None:
    """(resident MB, open file descriptors) of a process, from /proc; None if it is gone."""
    try:
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        return None
    return rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, fds


@dataclass
class Platform:
    url: str
    env: dict[str, str]
    broker: LocalKafka
    up: asyncio.subprocess.Process
    log_path: Path

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def services(self) -> dict[str, int]:
        return service_pids(self.up.pid)

    async def restarted(self, name: str, old_pid: int, timeout: float) -> float:
        """Seconds until `up` runs service ``name`` again under a pid other than ``old_pid``."""
        t0 = time.monotonic()
        async with asyncio.timeout(timeout):
            while (pid := self.services().get(name)) is None or pid == old_pid:
                if self.up.returncode is not None:
                    raise RuntimeError(f"voicebus up exited with {self.up.returncode}; see {self.log_path}")
                await asyncio.sleep(0.1)  # polling /proc for the supervisor's restart, bounded
        return time.monotonic() - t0

    async def stop_broker(self) -> None:
        await asyncio.to_thread(self.broker.stop)

    async def start_broker(self) -> None:
        await asyncio.to_thread(self.broker.start)


async def wait_healthy(url: str, timeout: float) -> None:
    async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)  # polling a condition, bounded by the timeout


async def wait_ready(env: dict[str, str], timeout: float) -> None:
    """Every service serves its endpoint: each does once its engines are warm and its consumer started."""
    urls = [f"http://127.0.0.1:{env['VOICEBUS_INGEST_PORT']}/healthz",
            f"http://127.0.0.1:{env['VOICEBUS_TELEMETRY_QUERY_PORT']}/health",
            *(f"http://127.0.0.1:{env[f'VOICEBUS_{name}_METRICS_PORT']}/metrics"
              for name in ("TURN", "ASR", "RESPONDER"))]
    await asyncio.gather(*(wait_healthy(url, timeout) for url in urls))


@asynccontextmanager
async def platform(work: Path, extra_env: dict[str, str] | None = None) -> AsyncIterator[Platform]:
    """Broker + `voicebus up` (services only) in ``work``; this process's environment points at them meanwhile
    (so `voicebus ops`-style reads, e.g. bench.simulate.server_turns, find the telemetry sink)."""
    work.mkdir(parents=True, exist_ok=True)
    broker = LocalKafka(KafkaBrokerSettings(kafka_port=free_port(), kafka_controller_port=free_port(),
                                            data_dir=work), state_dir=work / "kafka")
    await asyncio.to_thread(broker.start)
    port = free_port()
    env = {"VOICEBUS_KAFKA_BOOTSTRAP": broker.bootstrap, "VOICEBUS_DATA_DIR": str(work),
           "VOICEBUS_UP_START_KAFKA": "false", "VOICEBUS_NODE_ID": NODE, "VOICEBUS_INGEST_PORT": str(port),
           "VOICEBUS_INGEST_WORKERS": str(EDGE_WORKERS),
           "VOICEBUS_ICE_HOST_ADDRESSES": "127.0.0.1", "VOICEBUS_TELEMETRY_QUERY_PORT": str(free_port()),
           "VOICEBUS_TURN_METRICS_PORT": str(free_port()), "VOICEBUS_ASR_METRICS_PORT": str(free_port()),
           "VOICEBUS_RESPONDER_METRICS_PORT": str(free_port()), "VOICEBUS_TOPIC_PREFIX": "",
           **(extra_env or {})}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    log_path = work / "up.log"
    log_file = open(log_path, "ab")
    up = await asyncio.create_subprocess_exec(sys.executable, "-m", "voicebus.cli", "up", env=dict(os.environ),
                                              stdout=asyncio.subprocess.DEVNULL, stderr=log_file,
                                              stdin=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(env, 120)
        async with asyncio.timeout(60):  # every service started
            while len(service_pids(up.pid)) < len(SERVICES):
                await asyncio.sleep(0.2)
        yield Platform(url, env, broker, up, log_path)
    finally:
        if up.returncode is None:
            up.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(up.wait(), 60)
            except TimeoutError:
                up.kill()
                await up.wait()
        log_file.close()
        await asyncio.to_thread(broker.stop)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
