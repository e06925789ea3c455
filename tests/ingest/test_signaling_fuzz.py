"""Fuzzed signaling on a real edge (real broker, aiortc parsing for real): mutated SDP offers, JSON bodies,
tokens and operator requests get a 2xx or a 4xx, never a 5xx; afterwards no session, no pending offer and no task
is left behind (an accepted offer that never connects is closed by the connect deadline).

Hypothesis drives the examples synchronously; the edge and its HTTP client run in an event loop of their own
thread (an async test cannot be given examples)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.conftest as root
from ingest.server import EdgeNode, running_edge
from ingest.tokens import mint
from tests.ingest.conftest import edge_settings

# The edge's thread uses the random module (aiortc, aioice) while Hypothesis draws: not the strategies' doing.
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:Do not use the `random` module")]

SECRET, OPERATOR = "fuzz-session-secret", "fuzz-operator"
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)


class FuzzEdge:
    def __init__(self, node: EdgeNode, url: str, http: aiohttp.ClientSession, offer: str,
                 run: Callable[[Coroutine[Any, Any, Any]], Any]) -> None:
        self.node, self.url, self.http, self.offer, self.run = node, url, http, offer, run
        self.token = mint(SECRET, 3600, max_sessions=100_000)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        async with self.http.post(f"{self.url}{path}", data=body, headers=headers) as resp:
            await resp.read()
            return resp.status


@pytest.fixture
def fuzz_edge(topics: root.TestTopics) -> Iterator[FuzzEdge]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-edge", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    async def offer() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("events")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    async def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    run(topics.create_all(("edge-test",)))
    s = edge_settings(topics, max_sessions=1000, offers_per_minute=0, connect_timeout_s=1.0, max_body_bytes=20_000,
                      session_secret=SECRET, operator_secret=OPERATOR)
    edge = running_edge(s)
    node = run(edge.__aenter__())
    http = run(session())
    try:
        yield FuzzEdge(node, f"http://127.0.0.1:{s.ingest_port}", http, run(offer()), run)
    finally:
        run(http.close())
        run(edge.__aexit__(None, None, None))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- what is sent --

ODD = st.sampled_from([None, "", 0, -1, 2**64, 10**30, 1e308, True, [], {}, [1, 2], {"sdp": "v=0"}, "offer",
                       "answer", "v=0", "\x00", "é" * 50]) | st.text(max_size=30) | st.integers()
CODECS = ["opus/48000/2", "PCMA/8000", "PCMU/8000", "G729/8000", "telephone-event/8000", "OPUS/48000", "opus/0",
          "opus", "", "x/y/z/w"]


@st.composite
def mutated_sdp(draw: st.DrawFn, sdp: str) -> str:
    lines = sdp.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["drop", "dup", "swap", "replace", "number", "codec", "media", "truncate",
                                    "chars", "newline"]))
        i = draw(st.integers(0, len(lines) - 1))
        if how == "drop" and len(lines) > 1:
            del lines[i]
        elif how == "dup":
            lines.insert(i, lines[i])
        elif how == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif how == "replace":
            lines[i] = draw(st.sampled_from(["a=", "m=", "c=IN IP4", "a=rtpmap:", "a=candidate:", "a=fingerprint:",
                                             "a=setup:", "a=ice-ufrag:", "a=mid:", "a=group:BUNDLE", "o=", "t="]))
            lines[i] += draw(st.text(max_size=30))
        elif how == "number":
            numbers = list(re.finditer(r"\d+", lines[i]))
            if numbers:
                m = draw(st.sampled_from(numbers))
                value = draw(st.sampled_from(["-1", "0", "65536", str(2**32), str(2**64), "9" * 40, "x"]))
                lines[i] = lines[i][:m.start()] + value + lines[i][m.end():]
        elif how == "codec":
            rtpmaps = [k for k, line in enumerate(lines) if line.startswith("a=rtpmap:")]
            if rtpmaps:
                k = draw(st.sampled_from(rtpmaps))
                pt = lines[k].split()[0]
                lines[k] = f"{pt} {draw(st.sampled_from(CODECS))}"
        elif how == "media":
            media = [k for k, line in enumerate(lines) if line.startswith("m=")]
            if media:
                k = draw(st.sampled_from(media))
                parts = lines[k].split(" ")
                parts[draw(st.integers(0, len(parts) - 1))] = draw(st.sampled_from(
                    ["m=video", "m=audio", "m=application", "0", "UDP/TLS/RTP/SAVPF", "RTP/AVP", "TCP", "", "webrtc"]))
                lines[k] = " ".join(parts)
        elif how == "truncate":
            lines = lines[:max(1, i)]
            lines[-1] = lines[-1][:draw(st.integers(0, len(lines[-1])))]
        elif how == "chars":
            line = lines[i]
            k = draw(st.integers(0, len(line)))
            lines[i] = line[:k] + draw(st.text(min_size=1, max_size=5)) + line[k + 1:]
        elif how == "newline":
            lines[i] = lines[i] + draw(st.sampled_from(["\r", "\n", "\r\n\r\n", "\x00"]))
    end = draw(st.sampled_from(["\r\n", "\n"]))
    out = end.join(lines) + end
    return out if out.startswith("v=0") or draw(st.booleans()) else "v=0" + end + out


@st.composite
def offer_requests(draw: st.DrawFn, sdp: str, token: str) -> tuple[bytes, dict[str, str]]:
    how = draw(st.sampled_from(["sdp"] * 6 + ["fields", "bytes", "json"]))
    if how == "sdp":
        body = json.dumps({"sdp": draw(mutated_sdp(sdp)), "type": "offer"}).encode()
    elif how == "fields":
        fields = {"sdp": draw(st.sampled_from([sdp]) | ODD), "type": draw(st.sampled_from(["offer"]) | ODD)}
        fields.update(draw(st.dictionaries(st.text(max_size=8), ODD, max_size=3)))
        body = json.dumps(fields).encode()
    elif how == "bytes":
        body = draw(st.binary(max_size=200))
    else:
        body = json.dumps(draw(st.recursive(ODD, lambda c: st.lists(c, max_size=3) | st.dictionaries(
            st.text(max_size=5), c, max_size=3), max_leaves=10))).encode()
    auth = draw(st.sampled_from([token] * 12 + [token[:-3] + "AAA", "", token + "x", "v1..", "Basic x"]))
    headers = {"Authorization": f"Bearer {auth}", "Content-Type": draw(st.sampled_from(
        ["application/json", "text/plain", "application/sdp", ""]))}
    return body, headers


def _settle(edge: FuzzEdge, baseline: int) -> None:
    """Every session the fuzz left gets closed, and the edge's tasks come back to what they were."""
    node = edge.node

    async def settled() -> int:
        async with asyncio.timeout(30):
            while node.sessions or node._pending:
                await asyncio.sleep(0.1)
            while len(asyncio.all_tasks()) > baseline:
                await asyncio.sleep(0.1)
        return len(asyncio.all_tasks())

    assert edge.run(settled(), timeout=40) <= baseline


def _tasks(edge: FuzzEdge) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks())

    return int(edge.run(count()))


def test_mutated_offers_never_fail_the_edge(fuzz_edge: FuzzEdge) -> None:
    edge = fuzz_edge
    baseline = _tasks(edge)
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(offer_requests(edge.offer, edge.token))
    def post(request: tuple[bytes, dict[str, str]]) -> None:
        body, headers = request
        status = edge.run(edge.post("/v1/sessions", body, headers))
        statuses[status] += 1
        assert status < 500, (status, body[:2000])

    post()
    _settle(edge, baseline)
    assert statuses[200] and statuses[400] and statuses[401], statuses  # the fuzz reached every side


def test_mutated_token_requests_never_fail_the_edge(fuzz_edge: FuzzEdge) -> None:
    edge = fuzz_edge
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(st.one_of(
        st.fixed_dictionaries({}, optional={"ttl_s": ODD, "max_sessions": ODD, "user": ODD}).map(json.dumps),
        st.binary(max_size=100), st.recursive(ODD, lambda c: st.lists(c, max_size=3), max_leaves=8).map(json.dumps)),
        st.sampled_from([OPERATOR, OPERATOR, SECRET, "", OPERATOR + " "]))
    def post(body: str | bytes, secret: str) -> None:
        data = body.encode() if isinstance(body, str) else body
        status = edge.run(edge.post("/v1/tokens", data, {"Authorization": f"Bearer {secret}"}))
        statuses[status] += 1
        assert status < 500, (status, data[:500])

    post()
    assert statuses[200] and statuses[400] and statuses[401], statuses
