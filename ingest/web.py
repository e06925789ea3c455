"""What the edge's two HTTP faces share: the signaling front and an edge node answer alike (errors, page, config)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from ingest.settings import IngestSettings

STATIC = Path(__file__).parent / "static"


def error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


async def page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html")


def config(settings: IngestSettings) -> web.Response:
    """What the page needs before its offer: the ICE servers."""
    return web.json_response({"iceServers": [s.model_dump(exclude_none=True) for s in settings.ice_servers]})


def body_too_large(request: web.Request, limit: int) -> web.Response | None:
    """The 413 for a body announced over ``limit`` bytes (aiohttp refuses a longer one while it is read)."""
    if (request.content_length or 0) > limit:
        return error(413, f"body over {limit} bytes")
    return None


def bearer_auth(token: str) -> Any:
    """A middleware: with a token set, every /v1/ request must carry 'Authorization: Bearer <token>' (401)."""

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        if token and request.path.startswith("/v1/") and request.headers.get("Authorization") != f"Bearer {token}":
            return error(401, "missing or wrong bearer token", **{"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return auth
