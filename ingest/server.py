"""The edge node: HTTP signaling (aiohttp), metrics, the browser page, and ``voicebus ingest``."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from ingest.access import access_middleware
from ingest.engines.vad import SileroVad
from ingest.ice import use_host_addresses
from ingest.metrics import Metrics
from ingest.peer import BadOffer, EdgeSession
from ingest.publisher import Publisher
from ingest.replies import ReplyConsumer
from ingest.settings import IngestSettings
from ingest.web import body_too_large, config, error, page, serving
from runtime.kafka import make_producer
from runtime.tasks import Supervisor
from schemas.base import new_session_id

log = logging.getLogger(__name__)


class EdgeNode:
    """One edge node: its sessions, its publisher and reply consumer, its signaling app. Alone it is the whole
    edge (``voicebus ingest --single``); as an edge worker (ingest.worker) it sits behind the signaling front,
    which sets ``behind_front`` (the client's address then comes in X-Forwarded-For) and ``on_session_ended``."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.behind_front = False
        self.on_session_ended: Callable[[EdgeSession], None] | None = None
        self.port = 0  # the port its HTTP server got (running_edge sets it)
        self.metrics = Metrics()
        self.tasks = Supervisor(self.metrics, "voicebus_ingest")  # the reply consumer and the publisher
        self.vad = SileroVad()
        self.sessions: dict[str, EdgeSession] = {}
        self._pending = 0  # offers being answered: they count against the session limit
        self.accepting = False
        self._deadlines: set[asyncio.Task[None]] = set()
        self.producer = make_producer(settings)
        self.publisher = Publisher(self.producer, self.metrics, settings.topic_prefix, settings.audio_queue_frames,
                                   settings.event_queue_size)
        self.replies = ReplyConsumer(settings, settings.replies_topic, self.producer, self._route_reply)
        m = self.metrics
        self.access = access_middleware(settings, metrics=m)  # tokens, origins, offers per address; told of ends
        m.gauge("voicebus_ingest_sessions", "Sessions held now.", lambda: len(self.sessions))
        m.gauge("voicebus_ingest_audio_queue_depth", "Frames waiting for Kafka.", lambda: self.publisher.audio_depth)
        m.gauge("voicebus_ingest_event_queue_depth", "Events waiting for Kafka.", lambda: self.publisher.event_depth)
        m.gauge("voicebus_ingest_playout_queue_frames", "Reply frames queued for playout, all sessions.",
                lambda: sum(s.playout.queued_frames() for s in self.sessions.values()))
        m.gauge("voicebus_ingest_receive_wait_ms", "Receive buffer's wait for a missing packet, max over sessions.",
                lambda: max((s.inbound.buffer.wait_ms for s in self.sessions.values()), default=0.0))

    async def start(self) -> None:
        from runtime.provisioning import create_topics

        use_host_addresses(self.settings.ice_host_addresses)
        await create_topics(self.settings, (self.settings.node_id,))  # this node's return topic, if missing
        await self.publisher.start(self.tasks)
        try:
            await self.replies.start(self.tasks)
        except BaseException:
            await self.publisher.stop(0)
            raise
        self.accepting = True

    async def stop(self) -> None:
        """Drain: refuse new offers, end every session, flush what is queued for Kafka."""
        self.accepting = False
        for task in list(self._deadlines):
            task.cancel()
        await asyncio.gather(*(s.close("shutdown") for s in list(self.sessions.values())))
        await self.replies.stop()
        await self.publisher.stop(self.settings.drain_timeout_s)

    def _route_reply(self, session_id: str, event: Any) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            log.debug("reply for a session this node does not hold", extra={"session_id": session_id})
            return
        session.on_reply(event)

    # -- HTTP --

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.access], client_max_size=self.settings.max_body_bytes)
        app.router.add_get("/", self._page)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/config", self._config)
        app.router.add_post("/v1/sessions", self._create)
        app.router.add_delete("/v1/sessions/{session_id}", self._delete)
        app.router.add_get("/v1/sessions/{session_id}/ended", self._ended)
        return app

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return await page(request)

    async def _health(self, request: web.Request) -> web.Response:
        down = self.tasks.down  # a dead reply consumer or publisher: no reply plays, nothing is published
        ok = self.accepting and not down
        status = "ok" if ok else "down" if down else "draining"
        return web.json_response({"status": status, "node_id": self.settings.node_id, "down": down,
                                  "sessions": len(self.sessions)}, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")

    async def _config(self, request: web.Request) -> web.Response:
        return config(self.settings, self.access.user(request))

    async def _create(self, request: web.Request) -> web.Response:
        offer = await self._check_offer(request)
        if isinstance(offer, web.Response):  # refused: the error to answer with
            self.metrics.sessions_rejected.inc()
            return offer
        remote = request.remote or ""
        if self.behind_front:  # the front checked who may call; the caller's address is its
            remote = request.headers.get("X-Forwarded-For", remote)
        session = EdgeSession(new_session_id(), self.settings, self.vad, self.publisher, self.metrics,
                              self._forget, remote=remote,
                              user_agent=request.headers.get("User-Agent", ""))
        self._pending += 1
        try:
            answer = await session.accept(offer)
        except BadOffer as exc:
            await session.abandon()
            self.metrics.sessions_rejected.inc()
            return error(400, str(exc))
        except Exception:
            await session.abandon()
            log.exception("answering an offer failed")
            return error(500, "the edge could not answer this offer")
        finally:
            self._pending -= 1
        self.sessions[session.id] = session
        self.access.session_started(request, session.id)
        self._connect_deadline(session)
        return web.json_response({"session_id": session.id, "sdp": answer, "type": "answer",
                                  "node_id": self.settings.node_id})

    async def _check_offer(self, request: web.Request) -> str | web.Response:
        """The offer's SDP, or the error response that refuses it."""
        if not self.accepting:
            return error(503, "this node is draining", **{"Retry-After": "5"})
        if len(self.sessions) + self._pending >= self.settings.max_sessions:
            return error(503, f"this node holds its limit of {self.settings.max_sessions} sessions",
                         **{"Retry-After": "2"})
        too_large = body_too_large(request, self.settings.max_body_bytes)
        if too_large is not None:
            return too_large
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"body over {self.settings.max_body_bytes} bytes")
        try:
            offer = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return error(400, f"body is not JSON: {exc}")
        if not isinstance(offer, dict) or not isinstance(offer.get("sdp"), str) or offer.get("type") != "offer":
            return error(400, 'expected {"sdp": "<offer SDP>", "type": "offer"}')
        if not offer["sdp"].startswith("v=0"):
            return error(400, "malformed SDP: it must start with v=0")
        sdp = offer["sdp"]
        if re.search(r"^m=audio ", sdp, re.M) and not re.search(r"^a=rtpmap:\d+ opus/", sdp, re.M | re.I):
            return error(400, "the offer has no Opus audio (the edge decodes only Opus)")
        return str(offer["sdp"])

    async def _delete(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["session_id"])
        if session is None:
            return error(404, "no such session on this node")
        await session.close("deleted")
        return web.json_response({"session_id": session.id, "status": "ended"})

    async def _ended(self, request: web.Request) -> web.Response:
        """Answers once the session has ended, with the reason: a client waits on it to learn of an end it
        cannot see on the connection (the front answers it too, for a worker that died)."""
        session = self.sessions.get(request.match_info["session_id"])
        if session is None:
            return error(404, "no such session on this node")
        await session.closed.wait()
        return web.json_response({"session_id": session.id, "reason": session.end_reason})

    def _forget(self, session: EdgeSession) -> None:
        self.sessions.pop(session.id, None)
        if self.on_session_ended is not None:
            self.on_session_ended(session)
        self.access.session_ended(session.id)

    def _connect_deadline(self, session: EdgeSession) -> None:
        # An answered offer whose peer never connects would hold its slot (and its token's) until ICE gives up,
        # half a minute and more: it gets connect_timeout_s.
        async def watch() -> None:
            await asyncio.sleep(self.settings.connect_timeout_s)
            if session.pc.connectionState in ("new", "connecting"):
                log.info("session not connected after %.1f s: closed", self.settings.connect_timeout_s,
                         extra={"session_id": session.id})
                await session.close("ice_failed")

        task = asyncio.ensure_future(watch())
        self._deadlines.add(task)
        task.add_done_callback(self._deadlines.discard)


@asynccontextmanager
async def running_edge(settings: IngestSettings) -> AsyncIterator[EdgeNode]:
    """An edge node serving HTTP on settings.ingest_host:settings.ingest_port until the block exits (then drained)."""
    node = EdgeNode(settings)
    await node.start()
    async with serving(node.app(), settings, node.stop) as port:
        node.port = port
        yield node


async def serve(settings: IngestSettings, stop: asyncio.Event) -> None:
    async with running_edge(settings):
        log.info("edge %s listening on http://%s:%d", settings.node_id, settings.ingest_host, settings.ingest_port,
                 extra={"node_id": settings.node_id})
        await stop.wait()
        log.info("draining", extra={"node_id": settings.node_id})
