"""The whole platform as `voicebus up` runs it: every service a supervised child process, on the test broker."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from ingest.ice import use_host_addresses
from tests.conftest import RunningKafka, TestTopics, free_port
from voicebus.supervisor import Child, UpSettings, supervise

NODE = "edge-e2e"


@dataclass
class Platform:
    url: str
    env: dict[str, str]
    children: list[Child]

    def pid(self, service: str) -> int:
        proc = next(c for c in self.children if c.name == service).proc
        assert proc is not None and proc.returncode is None, f"{service} is not running"
        return proc.pid


async def wait_healthy(url: str, timeout: float) -> None:
    async with asyncio.timeout(timeout), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)  # polling a condition, bounded by the timeout


@pytest.fixture
def platform_env() -> dict[str, str]:
    """Extra environment for every service of the platform (a test module may override this fixture)."""
    return {}


@pytest.fixture
async def platform(kafka: RunningKafka, topics: TestTopics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   platform_env: dict[str, str]) -> AsyncIterator[Platform]:
    port = free_port()
    env = {
        "VOICEBUS_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "VOICEBUS_TOPIC_PREFIX": topics.prefix,
        "VOICEBUS_DATA_DIR": str(tmp_path),
        "VOICEBUS_NODE_ID": NODE,
        # One edge worker behind the front: these tests are about the conversation, and on a 2-core host a second
        # worker's start (models, aiortc) delays the other services' (tests/ingest/test_workers.py has two).
        "VOICEBUS_INGEST_WORKERS": "1",
        "VOICEBUS_INGEST_PORT": str(port),
        "VOICEBUS_ICE_HOST_ADDRESSES": "127.0.0.1",
        "VOICEBUS_TELEMETRY_QUERY_PORT": str(free_port()),
        "VOICEBUS_TELEMETRY_BATCH_SECONDS": "0.2",
        **platform_env,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    use_host_addresses(["127.0.0.1"])  # this process's WebRTC clients: loopback only, like the edge
    await topics.create_all((NODE,))
    children: list[Child] = []
    stop = asyncio.Event()
    supervisor = asyncio.create_task(supervise(UpSettings(up_start_kafka=False), stop, children))
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", 60)
        yield Platform(f"http://127.0.0.1:{port}", env, children)
    finally:
        stop.set()
        await supervisor
        leftover = [c.name for c in children if c.proc and c.proc.returncode is None]
        assert not leftover, f"still running after stop: {leftover}"
        for child in children:
            assert child.proc is not None
            with pytest.raises(ProcessLookupError):
                os.kill(child.proc.pid, 0)
