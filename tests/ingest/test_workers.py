"""The signaling front and its edge workers, with real aiortc clients and the real broker: sessions spread over
the workers and each hears replies sent to its own worker's topic; a worker killed mid-call ends its sessions
cleanly (the client is told and closed, SessionEnded edge_lost on Kafka), is restarted, and new sessions connect
meanwhile and after."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

import tests.conftest as root
from ingest.client import EdgeClient
from ingest.front import Front, merge_metrics, running_front
from schemas.edge import SessionEnded, SessionStarted
from tests.browser import CHROMIUM, MISSING, DevTools, chromium_command, page_value
from tests.ingest.conftest import SPEECH, TopicReader, edge_settings, load_speech, send_replies
from tests.ingest.test_e2e import reply_events

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

FRONT = "edge-wk"
W1, W2 = f"{FRONT}-w1", f"{FRONT}-w2"
ERROR = "document.body.dataset.state === 'error' && document.getElementById('error').textContent"


@pytest.fixture
async def front(topics: root.TestTopics) -> AsyncIterator[tuple[Front, str]]:
    settings = edge_settings(topics, node_id=FRONT, ingest_workers=2)
    async with running_front(settings) as running:
        yield running, f"http://127.0.0.1:{settings.ingest_port}"


async def hears_a_reply(topics: root.TestTopics, client: EdgeClient, turn_id: str) -> None:
    reply = load_speech(SPEECH / "misc" / "jfk.wav")[16000:16000 * 2]
    await send_replies(topics, client.node_id, reply_events(client.session_id, turn_id, reply))
    await client.hearing.wait_for(lambda: client.hearing.first_loud() is not None, timeout=15)


async def test_sessions_spread_over_the_workers_and_replies_reach_each(front: tuple[Front, str],
                                                                       topics: root.TestTopics) -> None:
    node, url = front
    clients = [EdgeClient(url) for _ in range(4)]
    try:
        for client in clients:
            await client.connect()
        spread = Counter(c.node_id for c in clients)
        print(f"\n[workers] sessions per worker: {dict(spread)}")
        assert spread == {W1: 2, W2: 2}
        for client in (clients[0], clients[1]):  # one on each worker, each reply on its own worker's topic
            await hears_a_reply(topics, client, f"turn-{client.node_id}")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/healthz") as resp:
                health = await resp.json()
                assert resp.status == 200 and health["status"] == "ok" and health["sessions"] == 4
                assert {w["node_id"]: w["sessions"] for w in health["workers"]} == {W1: 2, W2: 2}
            async with http.get(f"{url}/metrics") as resp:
                text = await resp.text()
        for worker in (W1, W2):
            assert f'voicebus_ingest_sessions{{node="{worker}"}} 2' in text
        assert "voicebus_ingest_front_sessions_dispatched_total 4" in text
        assert text.count("# TYPE voicebus_ingest_sessions gauge") == 1
    finally:
        for client in clients:
            await client.close()
    for client in clients:
        async with TopicReader(topics, "voice.sessions", client.session_id) as sessions:
            events = await sessions.until(lambda items: len(items) >= 2)
        assert isinstance(events[0], SessionStarted) and events[0].node_id == client.node_id
        assert isinstance(events[1], SessionEnded) and events[1].reason == "deleted"


async def test_a_killed_worker_ends_its_sessions_and_is_restarted(front: tuple[Front, str],
                                                                  topics: root.TestTopics) -> None:
    node, url = front
    first, second = EdgeClient(url), EdgeClient(url)
    later: list[EdgeClient] = []
    try:
        await first.connect()
        await second.connect()
        assert {first.node_id, second.node_id} == {W1, W2}
        doomed = node.pool.by_node(first.node_id)
        assert doomed.proc is not None
        old_pid = doomed.proc.pid
        killed = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)

        await node.pool.wait_for(lambda: not doomed.ready, timeout_s=10)
        meanwhile = EdgeClient(url)  # while the dead one restarts, new sessions go to the other
        later.append(meanwhile)
        await meanwhile.connect()
        assert meanwhile.node_id == second.node_id

        async with asyncio.timeout(15):
            await first.ended.wait()
        assert first.end_reason == "edge_lost" and first.pc.connectionState == "closed"
        async with TopicReader(topics, "voice.sessions", first.session_id) as sessions:
            events = await sessions.until(lambda items: any(isinstance(e, SessionEnded) for e in items))
        ended = next(e for e in events if isinstance(e, SessionEnded))
        assert ended.reason == "edge_lost" and ended.node_id == first.node_id
        assert ended.seq > max(e.seq for e in events if e is not ended)

        await node.pool.wait_for(lambda: doomed.ready and doomed.proc is not None and doomed.proc.pid != old_pid,
                                 timeout_s=60)
        restart_s = time.monotonic() - killed
        print(f"\n[workers] killed worker ready again {restart_s:.2f} s after SIGKILL "
              f"(its own start to ready {doomed.ready_after_s:.2f} s)")
        assert doomed.restarts == 1 and not second.ended.is_set()
        after = EdgeClient(url)  # the restarted worker has the fewest sessions: it takes the next one
        later.append(after)
        await after.connect()
        assert after.node_id == first.node_id
        await hears_a_reply(topics, after, "after-restart")
        await hears_a_reply(topics, second, "survivor")
    finally:
        for client in (first, second, *later):
            await client.close()


async def test_the_front_refuses_when_every_worker_is_full_and_workers_only_take_the_front(
        topics: root.TestTopics) -> None:
    settings = edge_settings(topics, node_id=FRONT, ingest_workers=2, max_sessions=1, auth_token="s3cret")
    url = f"http://127.0.0.1:{settings.ingest_port}"
    clients = [EdgeClient(url, token="s3cret") for _ in range(2)]
    async with running_front(settings) as node, aiohttp.ClientSession() as http:
        try:
            async with http.post(f"{url}/v1/sessions", json={"sdp": "v=0", "type": "offer"}) as resp:
                assert resp.status == 401
            for client in clients:
                await client.connect()
            assert {c.node_id for c in clients} == {W1, W2}
            async with http.post(f"{url}/v1/sessions", json={"sdp": "v=0", "type": "offer"},
                                 headers={"Authorization": "Bearer s3cret"}) as resp:
                assert resp.status == 503 and resp.headers["Retry-After"] == "2"
                assert "full" in (await resp.json())["error"]
            for worker in node.pool.workers:  # a worker's port answers the front alone, not the client's token
                async with http.post(f"{worker.url}/v1/sessions", json={"sdp": "v=0", "type": "offer"},
                                     headers={"Authorization": "Bearer s3cret"}) as resp:
                    assert resp.status == 401
            await clients[0].close()
            await node.pool.wait_for(lambda: sum(len(w.sessions) for w in node.pool.workers) == 1, timeout_s=10)
            again = EdgeClient(url, token="s3cret")
            clients.append(again)
            await again.connect()
            assert again.node_id == clients[0].node_id
        finally:
            for client in clients:
                await client.close()


@pytest.mark.skipif(CHROMIUM is None, reason=MISSING)
async def test_the_page_says_its_call_ended_when_the_worker_dies(topics: root.TestTopics, tmp_path: Path) -> None:
    settings = edge_settings(topics, node_id=FRONT, ingest_workers=1)
    url = f"http://127.0.0.1:{settings.ingest_port}"
    async with running_front(settings) as node:
        worker = node.pool.workers[0]
        args = chromium_command(f"{url}/?autostart=1&raw=1", tmp_path / "profile", SPEECH / "misc" / "jfk.wav")
        browser = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            devtools = DevTools(tmp_path / "profile")
            async with aiohttp.ClientSession() as http:
                await page_value(devtools, http, "document.body.dataset.state === 'listening'", 30)
                assert len(worker.sessions) == 1 and worker.proc is not None
                os.kill(worker.proc.pid, signal.SIGKILL)
                shown = str(await page_value(devtools, http, ERROR, 15))
        finally:
            browser.terminate()
            browser.wait(timeout=10)
    assert "the edge node holding it stopped" in shown


def test_worker_metrics_merge_into_one_exposition() -> None:
    worker = ("# HELP up_total Things.\n# TYPE up_total counter\nup_total 3\n"
              "# HELP lat_ms Latency.\n# TYPE lat_ms histogram\nlat_ms_bucket{le=\"1\"} 2\nlat_ms_sum 1.5\n"
              "lat_ms_count 2\n")
    merged = merge_metrics({"a": worker, "b": worker.replace(" 3", " 4")}).splitlines()
    assert merged == [
        "# HELP up_total Things.", "# TYPE up_total counter", 'up_total{node="a"} 3', 'up_total{node="b"} 4',
        "# HELP lat_ms Latency.", "# TYPE lat_ms histogram",
        'lat_ms_bucket{node="a",le="1"} 2', 'lat_ms_sum{node="a"} 1.5', 'lat_ms_count{node="a"} 2',
        'lat_ms_bucket{node="b",le="1"} 2', 'lat_ms_sum{node="b"} 1.5', 'lat_ms_count{node="b"} 2',
    ]
    assert merge_metrics({}) == ""


async def test_the_front_holds_a_signed_tokens_sessions_until_they_end_on_their_worker(
        topics: root.TestTopics) -> None:
    from ingest.tokens import mint

    settings = edge_settings(topics, node_id=FRONT, ingest_workers=2, session_secret="k" * 32)
    url = f"http://127.0.0.1:{settings.ingest_port}"
    token = mint(settings.session_secret, 600, 1, "ann")
    first, second = EdgeClient(url, token=token), EdgeClient(url, token=token)
    async with running_front(settings) as node, aiohttp.ClientSession() as http:
        try:
            async with http.post(f"{url}/v1/sessions", json={"sdp": "v=0", "type": "offer"}) as resp:
                assert resp.status == 401
            await first.connect()
            async with http.post(f"{url}/v1/sessions", json={"sdp": "v=0", "type": "offer"},
                                 headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 429 and "Retry-After" in resp.headers  # its one session is held
            await first.close()  # ends on its worker; the worker's report frees the token's slot at the front
            await node.pool.wait_for(lambda: sum(len(w.sessions) for w in node.pool.workers) == 0, timeout_s=10)
            await second.connect()
            assert second.node_id in (W1, W2)
        finally:
            await first.close()
            await second.close()
