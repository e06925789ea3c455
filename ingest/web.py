"""What the edge's two HTTP faces share: the signaling front and an edge node answer alike (errors, page, config)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from ingest.ice import ice_config
from ingest.settings import IngestSettings

STATIC = Path(__file__).parent / "static"


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html")


def config(settings: IngestSettings, user: str) -> web.Response:
    """What the page needs before its offer: the ICE servers (with TURN credentials of its own when the TURN
    server shares a secret with the edge)."""
    return web.json_response({"iceServers": ice_config(settings.ice_servers, settings.turn_secret, user, time.time(),
                                                       settings.turn_ttl_s)})


def body_too_large(request: web.Request, limit: int) -> web.Response | None:
    """The 413 for a body announced over ``limit`` bytes (aiohttp refuses a longer one while it is read)."""
    if (request.content_length or 0) > limit:
        return error(413, f"body over {limit} bytes")
    return None


@asynccontextmanager
async def serving(app: web.Application, settings: IngestSettings,
                  drain: Callable[[], Awaitable[None]]) -> AsyncIterator[int]:
    """``app`` on settings.ingest_host:settings.ingest_port until the block exits; yields the port it got. On exit
    ``drain`` runs before the HTTP server goes, so requests waiting on a session's end get their answer."""
    # keepalive_timeout also bounds how long a new connection may take to send its request's headers
    runner = web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=settings.request_timeout_s)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.ingest_host, settings.ingest_port).start()
        yield runner.addresses[0][1]
    finally:
        await drain()
        await runner.cleanup()
