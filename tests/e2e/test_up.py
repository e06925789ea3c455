"""`voicebus up`, the README's run command: everything comes up on its own broker, and Ctrl-C leaves nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import wait_healthy

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    direct = [int(p) for p in children.read_text().split()] if children.exists() else []
    return direct + [d for c in direct for d in _descendants(c)]


async def test_up_starts_everything_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "VOICEBUS_DATA_DIR": str(tmp_path), "VOICEBUS_KAFKA_PORT": str(free_port()),
           "VOICEBUS_KAFKA_CONTROLLER_PORT": str(free_port()), "VOICEBUS_INGEST_PORT": str(port),
           "VOICEBUS_TELEMETRY_QUERY_PORT": str(free_port()), "VOICEBUS_ICE_HOST_ADDRESSES": "127.0.0.1"}
    env.pop("VOICEBUS_KAFKA_BOOTSTRAP", None)
    up = await asyncio.create_subprocess_exec(sys.executable, "-m", "voicebus.cli", "up", env=env,
                                              stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert up.stdout is not None
        async with asyncio.timeout(90):
            line = (await up.stdout.readline()).decode()
        assert f"http://127.0.0.1:{port}/" in line
        await wait_healthy(f"http://127.0.0.1:{port}", 60)
        everything = _descendants(up.pid)
        assert len(everything) >= 5, everything  # five services (the broker runs in its own session)
        broker_pid = int((tmp_path / f"kafka-{env['VOICEBUS_KAFKA_PORT']}" / "broker.pid").read_text())
        assert _alive(broker_pid)
        up.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            assert await up.wait() == 0
    finally:
        if up.returncode is None:
            up.kill()
            await up.wait()
    assert not [pid for pid in everything if _alive(pid)]
    assert not _alive(broker_pid)
