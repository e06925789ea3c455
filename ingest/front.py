"""The signaling front: one URL for the page and every client, edge workers behind it (``voicebus ingest``).

The front serves the page and takes the offers; each offer goes to the least-loaded edge worker
(ingest.dispatch), which answers it and then carries the session's media itself (its own UDP ports). The front
keeps no media and no per-frame work: it forwards offers and deletes, tells clients when their session ended
(``GET /v1/sessions/{id}/ended``), and when a worker dies it publishes ``SessionEnded`` (reason ``edge_lost``)
for each session the worker held, answers those clients' waits, and lets ingest.workers restart the worker.
Workers take requests only from the front (a bearer token it makes per run).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from ingest.access import access_middleware
from ingest.dispatch import Refusal, choose
from ingest.settings import IngestSettings
from ingest.web import body_too_large, config, error, page, serving
from ingest.workers import Worker, WorkerPool
from runtime.kafka import make_producer
from runtime.metrics import Counter, Registry
from runtime.service import run_until_signal
from schemas.base import now_ns
from schemas.edge import SessionEnded
from schemas.topics import TYPE_HEADER, topic_of

log = logging.getLogger(__name__)

# A lost session's SessionEnded continues the worker's seqs past anything it can have stamped since its last
# report (half a second earlier; a session stamps at most about 60 events a second).
SEQ_MARGIN = 1_000_000
ENDS_KEPT = 4096  # ended sessions whose reason a late GET .../ended still gets
FORWARDED = ("Content-Type", "User-Agent")


class FrontMetrics(Registry):
    def __init__(self) -> None:
        super().__init__()
        self.dispatched = Counter("voicebus_ingest_front_sessions_dispatched_total", "Offers sent to a worker.")
        self.refused = Counter("voicebus_ingest_front_sessions_refused_total",
                               "Offers refused by the front: every worker full or none ready (503).")
        self.lost = Counter("voicebus_ingest_front_sessions_lost_total",
                            "Sessions ended because their worker died (SessionEnded edge_lost).")
        self.worker_deaths = Counter("voicebus_ingest_front_worker_deaths_total", "Edge workers that died.")


class Front:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.metrics = FrontMetrics()
        self._token = secrets.token_urlsafe(24)
        self.pool = WorkerPool(settings, self._token, self._session_ended, self._worker_lost)
        self.producer = make_producer(settings)
        self.accepting = False
        self._ends: OrderedDict[str, str] = OrderedDict()  # session id -> reason, recently ended
        self._waiters: dict[str, asyncio.Future[str]] = {}  # session id -> its end, for GET .../ended
        self._sends: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        m = self.metrics
        m.gauge("voicebus_ingest_front_workers_ready", "Edge workers ready for sessions.",
                lambda: sum(w.ready for w in self.pool.workers))
        m.gauge("voicebus_ingest_front_sessions", "Sessions held by the workers, as the front counts them.",
                lambda: sum(len(w.sessions) for w in self.pool.workers))
        # tokens, origins, offers per address: the front guards signaling; its workers trust only the front
        self.access = access_middleware(settings, metrics=m)

    async def start(self) -> None:
        from runtime.provisioning import create_topics

        await create_topics(self.settings, self.settings.worker_node_ids())  # each worker's return topic
        await self.producer.start()
        self._http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self._token}"},
                                           timeout=aiohttp.ClientTimeout(total=30))
        try:
            await self.pool.start()
        except BaseException:
            await self.pool.stop(self.settings.drain_timeout_s)
            await self._http.close()
            await self.producer.stop()
            raise
        self.accepting = True

    async def stop(self) -> None:
        """Refuse new offers; the workers drain their sessions (each publishes its SessionEnded)."""
        self.accepting = False
        await self.pool.stop(self.settings.drain_timeout_s + 5)
        for session_id in list(self._waiters):  # a worker killed while draining reported no end
            self._remember_end(session_id, "shutdown")
        await asyncio.gather(*self._sends, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
        await self.producer.stop()

    # -- HTTP: the one place routes and middlewares are put together --

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.access], client_max_size=self.settings.max_body_bytes)
        app.router.add_get("/", page)
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/config", self._config)
        app.router.add_post("/v1/sessions", self._create)
        app.router.add_delete("/v1/sessions/{session_id}", self._delete)
        app.router.add_get("/v1/sessions/{session_id}/ended", self._ended)
        return app

    async def _config(self, request: web.Request) -> web.Response:
        return config(self.settings, self.access.user(request))

    async def _create(self, request: web.Request) -> web.Response:
        if not self.accepting:
            return error(503, "the edge is draining", **{"Retry-After": "5"})
        chosen = choose([w.load() for w in self.pool.workers], self.settings.max_sessions,
                        self.settings.worker_cpu_limit)
        if isinstance(chosen, Refusal):
            self.metrics.refused.inc()
            return error(503, chosen.reason, **{"Retry-After": str(chosen.retry_after_s)})
        too_large = body_too_large(request, self.settings.max_body_bytes)
        if too_large is not None:
            return too_large
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"body over {self.settings.max_body_bytes} bytes")
        worker = self.pool.by_node(chosen)
        proc = worker.proc
        headers = {k: request.headers[k] for k in FORWARDED if k in request.headers}
        headers["X-Forwarded-For"] = request.remote or ""
        worker.pending += 1
        self.metrics.dispatched.inc()
        try:
            assert self._http is not None
            async with self._http.post(f"{worker.url}/v1/sessions", data=body, headers=headers) as resp:
                answer = await resp.read()
                status, retry = resp.status, resp.headers.get("Retry-After")
                content_type = resp.content_type
                session_id = (await resp.json()).get("session_id") if status == 200 else None
        except (aiohttp.ClientError, TimeoutError) as exc:  # it died under the offer
            log.warning("edge worker %s did not answer an offer: %r", worker.node_id, exc,
                        extra={"node_id": worker.node_id})
            return error(503, "the edge worker chosen for this offer is gone", **{"Retry-After": "1"})
        finally:
            worker.pending -= 1
        if session_id is not None:
            self.access.session_started(request, session_id)  # its token's slot, until the session ends
            if worker.proc is not proc or proc is None or proc.returncode is not None:  # it died since it answered
                self._lose(worker.node_id, {session_id: 0})
            elif not worker.held(session_id):
                log.info("session ended before its answer reached the front", extra={"session_id": session_id})
                self.access.session_ended(session_id)
        extra = {"Retry-After": retry} if retry else {}
        return web.Response(body=answer, status=status, content_type=content_type, headers=extra)

    async def _delete(self, request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        worker = self.pool.holding(session_id)
        if worker is None:
            return error(404, "no such session on this edge")
        assert self._http is not None
        try:
            async with self._http.delete(f"{worker.url}/v1/sessions/{session_id}") as resp:
                return web.Response(body=await resp.read(), status=resp.status, content_type=resp.content_type)
        except (aiohttp.ClientError, TimeoutError):
            return error(404, "no such session on this edge")  # its worker died: the session is over

    async def _ended(self, request: web.Request) -> web.Response:
        """Answers once the session has ended, with the reason (edge_lost: its worker died)."""
        session_id = request.match_info["session_id"]
        reason = self._ends.get(session_id)
        if reason is None:
            if self.pool.holding(session_id) is None:
                return error(404, "no such session on this edge")
            waiter = self._waiters.get(session_id)
            if waiter is None:
                waiter = self._waiters[session_id] = asyncio.get_running_loop().create_future()
            reason = await asyncio.shield(waiter)
        return web.json_response({"session_id": session_id, "reason": reason})

    async def _health(self, request: web.Request) -> web.Response:
        workers = self.pool.workers
        loads = {w.node_id: w.load() for w in workers}  # ready: started, its Kafka tasks up, reporting
        ready = sum(load.ready for load in loads.values())
        ok = self.accepting and ready > 0
        status = "draining" if not self.accepting else "down" if not ready else \
            "ok" if ready == len(workers) else "degraded"
        return web.json_response({
            "status": status, "node_id": self.settings.node_id, "sessions": sum(len(w.sessions) for w in workers),
            "workers": [{"node_id": w.node_id, "pid": w.proc.pid if w.proc else None, "ready": loads[w.node_id].ready,
                         "sessions": len(w.sessions), "cpu": w.cpu, "restarts": w.restarts,
                         "ready_after_s": w.ready_after_s} for w in workers],
        }, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        """The front's own metrics, then every ready worker's, each sample labelled with its node."""
        assert self._http is not None
        texts: dict[str, str] = {}
        for worker in [w for w in self.pool.workers if w.ready]:
            try:
                async with self._http.get(f"{worker.url}/metrics") as resp:
                    texts[worker.node_id] = await resp.text()
            except (aiohttp.ClientError, TimeoutError):
                continue  # it died between the check and the scrape: its series are missing this once
        return web.Response(text=self.metrics.render() + merge_metrics(texts), content_type="text/plain",
                            charset="utf-8")

    # -- what the workers report --

    def _remember_end(self, session_id: str, reason: str) -> None:
        self.access.session_ended(session_id)
        self._ends[session_id] = reason
        while len(self._ends) > ENDS_KEPT:
            self._ends.popitem(last=False)
        waiter = self._waiters.pop(session_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(reason)

    def _session_ended(self, worker: Worker, session_id: str, reason: str) -> None:
        self._remember_end(session_id, reason)

    def _worker_lost(self, worker: Worker, sessions: dict[str, int]) -> None:
        self.metrics.worker_deaths.inc()
        self._lose(worker.node_id, sessions)

    def _lose(self, node_id: str, sessions: dict[str, int]) -> None:
        self.metrics.lost.inc(len(sessions))
        for session_id in sessions:
            self._remember_end(session_id, "edge_lost")
        task = asyncio.create_task(self._publish_lost(node_id, sessions))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _publish_lost(self, node_id: str, sessions: dict[str, int]) -> None:
        """SessionEnded for each session of a worker that died, so the turn processor, the ASR and the telemetry
        close them (the worker could not). Sent together: the broker acknowledges them in one round trip."""
        spec = topic_of(SessionEnded)
        topic = self.settings.topic(spec.name)
        sent: list[tuple[str, asyncio.Future[Any]]] = []
        for session_id, seq in sessions.items():
            event = SessionEnded(session_id=session_id, seq=seq + SEQ_MARGIN, media_ns=0, wall_ns=now_ns(),
                                 node_id=node_id, reason="edge_lost")
            try:
                future = await self.producer.send(topic, spec.codec.encode(event), key=session_id.encode(),
                                                  headers=[(TYPE_HEADER, event.type.encode())])
            except Exception as exc:  # noqa: BLE001 -- reported below with the others
                future = asyncio.get_running_loop().create_future()
                future.set_exception(exc)
            sent.append((session_id, future))
        results = await asyncio.gather(*(f for _, f in sent), return_exceptions=True)
        for (session_id, _), result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                log.error("the end of a session lost with worker %s could not be published: %r", node_id, result,
                          extra={"session_id": session_id, "node_id": node_id})
            else:
                log.info("session ended (edge_lost): its worker %s died", node_id,
                         extra={"session_id": session_id, "node_id": node_id})


def merge_metrics(texts: dict[str, str]) -> str:
    """Prometheus text of several workers as one exposition: each sample gets a ``node`` label, and each metric
    family is written once (its HELP and TYPE, then every worker's samples), as the format requires."""
    families: OrderedDict[str, list[str]] = OrderedDict()
    headers: dict[str, list[str]] = {}
    for node_id, text in texts.items():
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    families.setdefault(family, [])
                    kept = headers.setdefault(family, [])
                    if len(kept) < 2 and line not in kept:
                        kept.append(line)
                continue
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            labels = labels.rstrip("}")
            sample = f'{name}{{node="{node_id}"{"," if labels else ""}{labels}}} {value}'
            families.setdefault(family or name, []).append(sample)
    out = [line for family, samples in families.items() for line in (*headers.get(family, []), *samples)]
    return "\n".join(out) + ("\n" if out else "")


@asynccontextmanager
async def running_front(settings: IngestSettings) -> AsyncIterator[Front]:
    """The front and its workers serving on settings.ingest_host:settings.ingest_port until the block exits."""
    front = Front(settings)
    await front.start()
    async with serving(front.app(), settings, front.stop):
        yield front


async def serve(settings: IngestSettings, stop: asyncio.Event) -> None:
    async with running_front(settings) as front:
        log.info("edge front %s listening on http://%s:%d with %d workers", settings.node_id, settings.ingest_host,
                 settings.ingest_port, len(front.pool.workers), extra={"node_id": settings.node_id})
        await stop.wait()
        log.info("draining", extra={"node_id": settings.node_id})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicebus ingest", description="run the WebRTC edge: a signaling front "
                                     "and an edge worker per core behind it (every option also reads "
                                     "VOICEBUS_<NAME>; flags win)")
    parser.add_argument("--node-id")
    parser.add_argument("--host", dest="ingest_host")
    parser.add_argument("--port", dest="ingest_port", type=int)
    parser.add_argument("--max-sessions", type=int, help="sessions per worker")
    parser.add_argument("--workers", dest="ingest_workers", type=int, help="edge worker processes (0: one per core)")
    parser.add_argument("--single", action="store_true",
                        help="one edge node in this process, no front and no workers (node id and reply topic "
                             "as given)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None and k != "single"}
    settings = IngestSettings(**overrides)
    if args.single:
        from ingest.server import serve as serve_single  # aiortc and the models load only where media is

        run: Callable[[asyncio.Event], Awaitable[None]] = lambda stop: serve_single(settings, stop)  # noqa: E731
    else:
        run = lambda stop: serve(settings, stop)  # noqa: E731
    try:
        return run_until_signal(settings, run)
    except OSError as exc:
        log.error("cannot start the edge: %s", exc)
        return 1
