"""Signaling on a real edge (real broker): each bad input gets its status, a JSON error, and no session."""

from __future__ import annotations

import aiohttp
import pytest
from aiortc import RTCPeerConnection

import tests.conftest as root
from ingest.client import EdgeClient
from ingest.server import running_edge
from schemas.edge import SessionEnded, SessionStarted
from tests.ingest.conftest import TopicReader, edge_settings

pytestmark = pytest.mark.integration


async def offer_without_audio() -> str:
    pc = RTCPeerConnection()
    pc.createDataChannel("x")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_bad_inputs_limits_and_auth(topics: root.TestTopics) -> None:
    await topics.create_all(("edge-test",))
    settings = edge_settings(topics, max_sessions=1, max_body_bytes=20_000, auth_token="s3cret")
    url = f"http://127.0.0.1:{settings.ingest_port}"
    auth = {"Authorization": "Bearer s3cret"}
    cases = [
        (b"{not json", 400),
        (b'{"sdp": 5, "type": "offer"}', 400),
        (b'{"sdp": "v=0", "type": "answer"}', 400),
        (b'{"sdp": "hello", "type": "offer"}', 400),
        (b'{"sdp": "v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\nnonsense", "type": "offer"}', 400),
        (b'{"sdp": "' + b"v=0" + b"x" * 30_000 + b'", "type": "offer"}', 413),
    ]
    async with running_edge(settings) as node, aiohttp.ClientSession() as http:
        for body, status in cases:
            async with http.post(f"{url}/v1/sessions", data=body, headers=auth) as resp:
                assert resp.status == status, (body[:60], await resp.text())
                assert "error" in await resp.json()
        async with http.post(f"{url}/v1/sessions", json={"sdp": await offer_without_audio(), "type": "offer"},
                             headers=auth) as resp:
            assert resp.status == 400 and "audio" in (await resp.json())["error"]
        async with http.post(f"{url}/v1/sessions", json={"sdp": "v=0", "type": "offer"}) as resp:
            assert resp.status == 401
        assert node.sessions == {}

        client = EdgeClient(url, token="s3cret")
        session_id = await client.connect()
        assert list(node.sessions) == [session_id]
        other = EdgeClient(url, token="s3cret")
        with pytest.raises(RuntimeError, match="503"):
            await other.connect()
        await other.close(delete=False)
        async with http.post(f"{url}/v1/sessions", json={"sdp": "v=0", "type": "offer"}, headers=auth) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"]
        async with http.get(f"{url}/healthz") as resp:
            assert (await resp.json())["sessions"] == 1
        async with http.get(f"{url}/metrics") as resp:
            text = await resp.text()
            assert "voicebus_ingest_sessions 1" in text and "voicebus_ingest_publish_latency_ms_bucket" in text
        async with http.delete(f"{url}/v1/sessions/{'0' * 32}", headers=auth) as resp:
            assert resp.status == 404
        await client.close()
        assert node.sessions == {}

    async with TopicReader(topics, "voice.sessions", session_id) as sessions:
        events = await sessions.until(lambda items: len(items) >= 2)
    assert isinstance(events[0], SessionStarted)
    assert isinstance(events[1], SessionEnded) and events[1].reason == "deleted"
