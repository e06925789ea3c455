"""Signed sessions on a real edge (real broker, real WebRTC peers): a valid token connects; a missing, forged or
expired one is 401; over its session limit or over the offers a minute of an address is 429 with Retry-After; a
page of another origin is 403; the operator endpoint mints tokens. And the signaling faults of the probe: offers
without Opus are 400, offers that never connect free their slot, slow clients are cut off."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest
from aiortc import RTCPeerConnection

import tests.conftest as root
from ingest.client import EdgeClient
from ingest.ice import turn_credentials
from ingest.server import running_edge
from ingest.tokens import mint, verify
from tests.ingest.conftest import edge_settings

pytestmark = pytest.mark.integration

SECRET, OPERATOR = "session-secret", "operator-secret"


async def offer_sdp() -> tuple[RTCPeerConnection, str]:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    return pc, pc.localDescription.sdp


def only_codec(sdp: str, payload_type: int, rtpmap: str) -> str:
    """The offer with its audio section offering only this codec."""
    lines = []
    for line in sdp.splitlines():
        if line.startswith("m=audio "):
            line = " ".join(line.split(" ")[:3] + [str(payload_type)])
        elif re.match(r"a=(rtpmap|fmtp|rtcp-fb):\d+ ", line):
            continue
        lines.append(line)
        if line.startswith("m=audio "):
            lines.append(f"a=rtpmap:{payload_type} {rtpmap}")
    return "\r\n".join(lines) + "\r\n"


async def until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_signed_sessions_rates_origins_and_operator_tokens(topics: root.TestTopics) -> None:
    await topics.create_all(("edge-test",))
    settings = edge_settings(topics, session_secret=SECRET, operator_secret=OPERATOR, offers_per_minute=12,
                             connect_timeout_s=2.0)
    url = f"http://127.0.0.1:{settings.ingest_port}"
    clients: list[EdgeClient] = []
    async with running_edge(settings) as node, aiohttp.ClientSession() as http:
        now = time.time()
        node.access.clock = lambda: now  # the minute of offers does not move under a slow machine

        async def post_offer(token: str | None, **headers: str) -> aiohttp.ClientResponse:
            pc, sdp = await offer_sdp()
            await pc.close()
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            async with http.post(f"{url}/v1/sessions", json={"sdp": sdp, "type": "offer"}, headers=headers) as resp:
                await resp.read()
                return resp

        # the operator's endpoint (its requests count against the address's 12 a minute: 1-4)
        async with http.post(f"{url}/v1/tokens", json={"ttl_s": 600, "max_sessions": 1, "user": "ann"}) as resp:
            assert resp.status == 401
        async with http.post(f"{url}/v1/tokens", json={"ttl_s": 600, "max_sessions": 1, "user": "ann"},
                             headers={"Authorization": f"Bearer {SECRET}"}) as resp:
            assert resp.status == 401  # the session secret is not the operator's
        async with http.post(f"{url}/v1/tokens", json={"ttl_s": "soon"},
                             headers={"Authorization": f"Bearer {OPERATOR}"}) as resp:
            assert resp.status == 400
        async with http.post(f"{url}/v1/tokens", json={"ttl_s": 600, "max_sessions": 1, "user": "ann"},
                             headers={"Authorization": f"Bearer {OPERATOR}"}) as resp:
            assert resp.status == 200
            issued = await resp.json()
        token = issued["token"]
        assert verify(SECRET, token, now).max_sessions == 1 and issued["user"] == "ann"

        # refused: 401 each (5-8)
        for bad in (None, "garbage", mint("other secret", 600, now=now), mint(SECRET, 60, now=now - 120)):
            resp = await post_offer(bad)
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer", bad
        async with http.get(f"{url}/v1/config") as resp:
            assert resp.status == 401
        resp = await post_offer(token, Origin="http://evil.example")  # not counted: refused before the bucket
        assert resp.status == 403

        # a valid token connects (9); its one session is held: a second offer is 429 (10)
        clients.append(EdgeClient(url, token=token))
        first = await clients[-1].connect()
        assert list(node.sessions) == [first]
        resp = await post_offer(token, Origin=url)
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        # ended: the slot is free again (11)
        await clients.pop().close()
        await until(lambda: not node.sessions)
        clients.append(EdgeClient(url, token=token))
        second = await clients[-1].connect()
        assert second != first and list(node.sessions) == [second]
        await clients.pop().close()
        await until(lambda: not node.sessions)

        # an answered offer that never connects is closed after connect_timeout_s, and frees the token (12)
        pc, sdp = await offer_sdp()
        async with http.post(f"{url}/v1/sessions", json={"sdp": sdp, "type": "offer"},
                             headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200
        assert len(node.sessions) == 1
        await until(lambda: not node.sessions, timeout=settings.connect_timeout_s + 5)
        await pc.close()
        assert node.access.access.held == {}

        # the address's 12 are spent: 429 with Retry-After, whatever the token
        resp = await post_offer(token)
        assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
        now += 60  # a minute later the bucket is full again
        resp = await post_offer(None)
        assert resp.status == 401
        async with http.get(f"{url}/metrics") as resp:
            text = await resp.text()
        # refused: 4 bad tokens, the config without one, the last offer; the origin; the token's slot, the address
        for line in ("voicebus_ingest_access_unauthorized_total 6", "voicebus_ingest_access_forbidden_total 1",
                     "voicebus_ingest_access_rate_limited_total 2"):
            assert line in text
    assert node.sessions == {}


async def test_offers_without_opus_and_slow_clients(topics: root.TestTopics) -> None:
    await topics.create_all(("edge-test",))
    settings = edge_settings(topics, auth_token="static", request_timeout_s=1.0, max_sessions=2)
    url = f"http://127.0.0.1:{settings.ingest_port}"
    auth = {"Authorization": "Bearer static"}
    pc, sdp = await offer_sdp()
    await pc.close()
    async with running_edge(settings) as node, aiohttp.ClientSession() as http:
        for payload_type, rtpmap in ((8, "PCMA/8000"), (0, "PCMU/8000"), (18, "G729/8000"), (9, "G722/8000")):
            offer = only_codec(sdp, payload_type, rtpmap)
            async with http.post(f"{url}/v1/sessions", json={"sdp": offer, "type": "offer"}, headers=auth) as resp:
                assert resp.status == 400, (rtpmap, await resp.text())
                assert "Opus" in (await resp.json())["error"]
        assert node.sessions == {} and node._pending == 0

        # headers never finished: the connection is closed after request_timeout_s
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.ingest_port)
        writer.write(b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        async with asyncio.timeout(settings.request_timeout_s + 5):
            assert await reader.read() == b""
        writer.close()

        # a body that never comes: 408 after request_timeout_s
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.ingest_port)
        writer.write(b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer static\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"sdp\": ")
        await writer.drain()
        async with asyncio.timeout(settings.request_timeout_s + 5):
            status = await reader.readline()
        assert status.startswith(b"HTTP/1.1 408"), status
        writer.close()

        # the page's config, for whoever holds the static token; no TURN configured: none handed out
        async with http.get(f"{url}/v1/config", headers=auth) as resp:
            assert resp.status == 200 and await resp.json() == {"iceServers": []}
    assert node.sessions == {}


async def test_turn_credentials_handed_to_the_page(topics: root.TestTopics) -> None:
    await topics.create_all(("edge-test",))
    turn = {"urls": ["turn:turn.example.org:3478"], "username": "static", "credential": "never-handed-out"}
    settings = edge_settings(topics, session_secret=SECRET, turn_secret="turn-secret", turn_ttl_s=300,
                             ice_servers=[{"urls": ["stun:stun.example.org:3478"]}, turn])
    url = f"http://127.0.0.1:{settings.ingest_port}"
    token = mint(SECRET, 600, user="ann")
    async with running_edge(settings), aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v1/config", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200
            stun, given = (await resp.json())["iceServers"]
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    expiry, user = given["username"].split(":")
    assert user == "ann" and 0 < int(expiry) - time.time() <= 300
    # the TURN server's check: the password is HMAC-SHA1(secret, username), and it expires
    assert given["credential"] == turn_credentials("turn-secret", "ann", int(expiry) - 300, 300)[1]
    assert "never-handed-out" not in str(given)
