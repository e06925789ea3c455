"""The sink's query endpoint: while the sink holds the chDB directory, `voicebus ops` asks it by name. It also
serves the sink's Prometheus ``/metrics``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from runtime.metrics import Registry, metrics_response
from streams.telemetry.queries import QueryError
from streams.telemetry.writer import ClickHouse

log = logging.getLogger(__name__)


def make_app(clickhouse: ClickHouse, metrics: Registry | None = None,
             down: Callable[[], Sequence[str]] | None = None) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "dsn": clickhouse.dsn})

    async def healthz(request: web.Request) -> web.Response:
        # /health says where the sink writes (ops finds it by that); /healthz whether its loop runs.
        broken = list(down()) if down is not None else []
        return web.json_response({"ok": not broken, "down": broken}, status=503 if broken else 200)

    async def query(request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
            result = await clickhouse.query(str(body["name"]), dict(body.get("params") or {}))
        except (QueryError, KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except Exception as exc:  # a ClickHouse error: tell the caller what it was
            log.warning("query failed: %s", exc)
            return web.json_response({"error": str(exc)}, status=500)
        return web.json_response(result.to_json())

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/query", query)
    if metrics is not None:
        registry = metrics

        async def scrape(request: web.Request) -> web.Response:
            return await metrics_response(registry)

        app.router.add_get("/metrics", scrape)
    return app


async def serve(clickhouse: ClickHouse, host: str, port: int, metrics: Registry | None = None,
                down: Callable[[], Sequence[str]] | None = None) -> web.AppRunner:
    runner = web.AppRunner(make_app(clickhouse, metrics, down), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("query endpoint on http://%s:%d", host, port)
    return runner
