"""HTTP plumbing of the OpenAI-compatible adapters: one session per engine, retries, Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from inference.engines.base import EngineError

log = logging.getLogger(__name__)

# Worth another try: timeouts, conflicts, rate limits, and servers that are overloaded or restarting.
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # e.g. http://127.0.0.1:8000/v1 (the OpenAI SDK's base_url convention)
    model: str
    api_key: str = ""
    timeout_s: float = 30.0  # connect, and each read (for a stream: the longest gap between chunks)
    retries: int = 2  # further attempts after a retryable failure, before any output was used
    backoff_s: float = 0.2  # first wait between attempts, doubled each time (a Retry-After header wins)


class HttpClient:
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._session: aiohttp.ClientSession | None = None

    def _url(self, path: str) -> str:
        return self.endpoint.base_url.rstrip("/") + path

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.endpoint.api_key}"} if self.endpoint.api_key else {}

    @asynccontextmanager
    async def post(self, path: str, **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """A successful (2xx) response to POST ``path``, after retries; EngineError otherwise.

        ``kwargs`` go to aiohttp (``json=`` or ``data=``); a ``data`` factory (a callable) is called per attempt,
        since a multipart body cannot be sent twice.
        """
        e = self.endpoint
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, connect=e.timeout_s, sock_read=e.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        for attempt in range(e.retries + 1):
            last = attempt == e.retries
            args = {k: (v() if k == "data" and callable(v) else v) for k, v in kwargs.items()}
            try:
                response = await self._session.post(self._url(path), headers=self._headers(), **args)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if last:
                    raise EngineError(f"POST {path}: {exc or type(exc).__name__}", retryable=True) from exc
                await self._wait(attempt, None, f"{type(exc).__name__} {exc}", path)
                continue
            if response.status < 300:
                try:
                    yield response
                finally:
                    response.release()
                return
            body = (await response.text())[:500]
            response.release()
            retryable = response.status in RETRYABLE_STATUS
            if not retryable or last:
                raise EngineError(f"POST {path} answered {response.status}: {body}", retryable=retryable)
            await self._wait(attempt, response.headers.get("Retry-After"), f"status {response.status}", path)

    async def _wait(self, attempt: int, retry_after: str | None, why: str, path: str) -> None:
        delay = self.endpoint.backoff_s * 2**attempt
        if retry_after is not None:
            try:
                delay = min(float(retry_after), 10.0)
            except ValueError:
                pass  # an HTTP date: keep our own backoff
        log.warning("POST %s failed (%s); retrying in %.2f s", path, why, delay)
        await asyncio.sleep(delay)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def sse_data(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The ``data`` of each Server-Sent Event in the response, until the stream ends or sends ``[DONE]``."""
    lines: list[str] = []
    try:
        async for raw in response.content:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
            elif not line and lines:  # a blank line ends the event
                data, lines = "\n".join(lines), []
                if data == "[DONE]":
                    return
                yield data
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise EngineError(f"stream broke off: {exc or type(exc).__name__}", retryable=True) from exc
    if lines and (data := "\n".join(lines)) != "[DONE]":
        yield data


def json_event(data: str) -> dict[str, Any]:
    try:
        event = json.loads(data)
    except json.JSONDecodeError as exc:
        raise EngineError(f"server sent an event that is not JSON: {data[:200]!r}") from exc
    if not isinstance(event, dict):
        raise EngineError(f"server sent an event that is not an object: {data[:200]!r}")
    if "error" in event:
        raise EngineError(f"server reported an error mid-stream: {event['error']}")
    return event
