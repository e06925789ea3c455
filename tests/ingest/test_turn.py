"""TURN credentials against a real TURN server: the ones a real edge hands the page (GET /v1/config) allocate a
relay on coturn configured with the same shared secret (use-auth-secret); a wrong secret or expired credentials are
refused by it. Needs coturn's `turnserver` (Debian package coturn); skipped without it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator

import aiohttp
import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint

import tests.conftest as root
from ingest.ice import turn_credentials
from ingest.server import running_edge
from ingest.tokens import mint
from tests.conftest import free_port
from tests.ingest.conftest import edge_settings

pytestmark = pytest.mark.integration

TURN_SECRET = "turn-shared-secret"


@pytest.fixture
def coturn(tmp_path) -> Iterator[int]:
    if shutil.which("turnserver") is None:
        pytest.skip("coturn's turnserver is not installed (apt-get install coturn)")
    port = free_port()
    process = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}", "--relay-ip=127.0.0.1",
         "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}", "--realm=voicebus.test", "--no-tls",
         "--no-dtls", "--no-cli", "--allow-loopback-peers", f"--log-file={tmp_path / 'turn.log'}", "--simple-log",
         f"--pidfile={tmp_path / 'turn.pid'}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def allocate(port: int, username: str, password: str) -> tuple[str, int]:
    """A relayed address allocated with these credentials (TransactionFailed if the server refuses them)."""
    transport, _ = await create_turn_endpoint(asyncio.DatagramProtocol, ("127.0.0.1", port), username, password)
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


async def test_credentials_from_the_edge_allocate_on_coturn(topics: root.TestTopics, coturn: int) -> None:
    await topics.create_all(("edge-test",))
    settings = edge_settings(topics, session_secret="s", turn_secret=TURN_SECRET, turn_ttl_s=600,
                             ice_servers=[{"urls": [f"turn:127.0.0.1:{coturn}?transport=udp"]}])
    url = f"http://127.0.0.1:{settings.ingest_port}"
    async with running_edge(settings), aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v1/config", headers={"Authorization": f"Bearer {mint('s', 60, user='ann')}"}) \
                as resp:
            (server,) = (await resp.json())["iceServers"]

    # the server may still be starting: its first answer is the one that counts
    async with asyncio.timeout(15):
        while True:
            try:
                relayed = await allocate(coturn, server["username"], server["credential"])
                break
            except (TransactionFailed, ConnectionError, OSError) as exc:
                if isinstance(exc, TransactionFailed) and "401" in str(exc):
                    raise
                await asyncio.sleep(0.2)
    assert relayed[0] == "127.0.0.1"
    assert server["username"].endswith(":ann")

    wrong = turn_credentials("not the secret", "ann", time.time(), 600)
    expired = turn_credentials(TURN_SECRET, "ann", time.time() - 1200, 600)
    for username, password in (wrong, expired):
        with pytest.raises(TransactionFailed, match="401"):
            await allocate(coturn, username, password)
