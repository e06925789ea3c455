"""Who may open a session at the edge: signed session tokens, offers per address, sessions per token, origins.

Modes, by settings: ``session_secret`` set -> an offer needs a signed token (``voicebus token issue``, or
``POST /v1/tokens`` with the operator secret); ``auth_token`` set -> the static bearer token (the simple mode; with
both set, either is accepted, the static one without a session limit); neither -> open. Offers per client address
per minute and the page's Origin are checked in every mode.

Tokens themselves (format, minting, verifying) are ingest.tokens.

The decisions are plain code over plain values (``Bucket``, ``origin_allowed``, ``Access.check``); the
aiohttp middleware from ``access_middleware`` is the shell.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from aiohttp import web

from ingest.tokens import Claims, TokenError, mint, verify

log = logging.getLogger(__name__)

# offer: POST /v1/sessions; session: a request about a session that exists (DELETE, and its worker's GET .../ended):
# a genuine token is enough, expired or not, so that a session can outlive its token's expiry and still be ended
Kind = Literal["offer", "config", "session", "other"]


# -- offers per client address --


@dataclass
class Bucket:
    """A token bucket: ``per_minute`` offers a minute on average, at most ``per_minute`` at once."""

    per_minute: int
    tokens: float = -1.0  # -1: full on first use
    at: float = 0.0

    def take(self, now: float) -> float:
        """0 if an offer may go now (and it is counted), else the seconds until one may."""
        rate = self.per_minute / 60.0
        if self.tokens < 0:
            self.tokens = float(self.per_minute)
        else:
            self.tokens = min(float(self.per_minute), self.tokens + max(0.0, now - self.at) * rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate

    def full(self, now: float) -> bool:
        return self.tokens < 0 or self.tokens + (now - self.at) * self.per_minute / 60.0 >= self.per_minute


# -- origins --


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Whether a request from a page at ``origin`` may use this edge (reached as ``host``). No Origin header: not a
    browser's cross-site request (browsers send it on every cross-origin fetch and every POST), allowed. Empty
    ``allowed``: same origin only (the Origin's host:port is the Host header's; the scheme may differ behind a TLS
    proxy). Otherwise the origin must be listed exactly, or the list holds ``*``."""
    if origin is None:
        return True
    origin = origin.strip().lower().rstrip("/")
    if allowed:
        return "*" in allowed or origin in {a.strip().lower().rstrip("/") for a in allowed}
    if origin == "null" or not host:  # sandboxed frames, file:// pages
        return False
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    netloc = parts.hostname + (f":{port}" if port and port != {"http": 80, "https": 443}[parts.scheme] else "")
    host = host.strip().lower()
    return netloc in {host, host.removesuffix(":80"), host.removesuffix(":443")}


# -- the decision --


@dataclass(frozen=True)
class Decision:
    status: int  # 200: let it through
    reason: str = ""
    retry_after: int | None = None
    claims: Claims | None = None  # the signed token's, when one was used

    @property
    def allowed(self) -> bool:
        return self.status == 200


ALLOW = Decision(200)


@dataclass(frozen=True)
class Policy:
    """The settings access decisions read (IngestSettings has them all)."""

    session_secret: str = ""
    auth_token: str = ""
    allowed_origins: tuple[str, ...] = ()
    offers_per_minute: int = 60

    @classmethod
    def of(cls, settings: Any) -> Policy:
        return cls(settings.session_secret, settings.auth_token, tuple(settings.allowed_origins),
                   settings.offers_per_minute)


@dataclass
class Access:
    """Access state of one edge: offers per address, sessions held per token. ``check`` decides one request;
    an allowed offer with a signed token holds one of its sessions until ``release``."""

    policy: Policy
    max_addresses: int = 10_000  # buckets kept; beyond it the least recently used go (they refill anyway)
    buckets: OrderedDict[str, Bucket] = field(default_factory=OrderedDict)
    held: dict[str, int] = field(default_factory=dict)  # token id -> sessions held (and offers being answered)

    def check(self, kind: Kind, authorization: str | None, origin: str | None, host: str | None, remote: str,
              now: float) -> Decision:
        p = self.policy
        if not origin_allowed(origin, host, list(p.allowed_origins)):
            return Decision(403, f"origin {origin!r} is not allowed")
        if kind == "offer" and not (throttled := self.throttle(remote, now)).allowed:
            return throttled
        decision = self._authenticate(authorization, now, check_expiry=kind != "session")
        if not decision.allowed or decision.claims is None or kind != "offer":
            return decision
        claims = decision.claims
        if self.held.get(claims.token_id, 0) >= claims.max_sessions:
            # when one of them ends is not known: ask again in a few seconds
            return Decision(429, f"this token's {claims.max_sessions} session(s) are in use", retry_after=5,
                            claims=claims)
        self.held[claims.token_id] = self.held.get(claims.token_id, 0) + 1
        return decision

    def throttle(self, remote: str, now: float) -> Decision:
        """One more attempt from ``remote`` (an offer, a token request): allowed, or 429 and when to retry."""
        per_minute = self.policy.offers_per_minute
        if per_minute <= 0:
            return ALLOW
        wait = self._bucket(remote).take(now)
        if wait > 0:
            return Decision(429, f"over {per_minute} requests a minute from {remote}",
                            retry_after=max(1, math.ceil(wait)))
        return ALLOW

    def release(self, token_id: str) -> None:
        n = self.held.get(token_id, 0) - 1
        if n > 0:
            self.held[token_id] = n
        else:
            self.held.pop(token_id, None)

    def _authenticate(self, authorization: str | None, now: float, check_expiry: bool) -> Decision:
        p = self.policy
        if not p.session_secret and not p.auth_token:
            return ALLOW
        scheme, _, given = (authorization or "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return Decision(401, "missing bearer token")
        if p.auth_token and hmac.compare_digest(given.encode(), p.auth_token.encode()):
            return ALLOW
        if not p.session_secret:
            return Decision(401, "wrong bearer token")
        try:
            return Decision(200, claims=verify(p.session_secret, given, now, check_expiry))
        except TokenError as exc:
            return Decision(401, str(exc))

    def _bucket(self, remote: str) -> Bucket:
        bucket = self.buckets.pop(remote, None) or Bucket(self.policy.offers_per_minute)
        self.buckets[remote] = bucket
        while len(self.buckets) > self.max_addresses:
            self.buckets.popitem(last=False)
        return bucket


# -- the aiohttp shell --

# On an allowed offer's request: the claims of the token whose session slot it holds, until a session has it.
GRANT = web.RequestKey("voicebus_access_grant", Claims)


def _kind(method: str, path: str) -> Kind:
    if path == "/v1/sessions" and method == "POST":
        return "offer"
    if path == "/v1/config":
        return "config"
    if path.startswith("/v1/sessions/"):
        return "session"
    return "other"


class AccessMiddleware:
    """aiohttp middleware (new style). Guards ``/v1/``; answers the operator's ``POST /v1/tokens`` itself. The
    server tells it which session an allowed offer became (``session_started``) and when that session ends
    (``session_ended``): the token's slot is held until then. An offer that made no session frees its slot."""

    __middleware_version__ = 1

    def __init__(self, settings: Any, clock: Callable[[], float] = time.time, metrics: Any = None) -> None:
        self.settings, self.clock = settings, clock
        self.refused = {401: 0, 403: 0, 429: 0}  # requests refused, by status (on the edge's /metrics)
        if metrics is not None:
            for status, name, what in ((401, "unauthorized", "no valid token"),
                                       (403, "forbidden", "origin not allowed"),
                                       (429, "rate_limited", "over the offers a minute of an address, or over a "
                                        "token's sessions")):
                metrics.counter(f"voicebus_ingest_access_{name}_total", f"Signaling requests refused: {what}.",
                                lambda status=status: self.refused[status])
        self.access = Access(Policy.of(settings))
        self._sessions: dict[str, str] = {}  # session id -> token id holding it

    async def __call__(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        if not request.path.startswith("/v1/"):
            return await handler(request)
        if request.path == "/v1/tokens":  # the operator's: throttled too, a wrong secret is guessed no faster
            decision = self.access.throttle(request.remote or "", self.clock())
            return await self._issue(request) if decision.allowed else self._refuse(request, decision)
        kind = _kind(request.method, request.path)
        decision = self.access.check(kind, request.headers.get("Authorization"), request.headers.get("Origin"),
                                     request.headers.get("Host"), request.remote or "", self.clock())
        if not decision.allowed:
            return self._refuse(request, decision)
        if decision.claims is not None:
            request[GRANT] = decision.claims
        try:
            if request.method in ("POST", "PUT") and request.can_read_body:
                refused = await self._read_body(request)
                if refused is not None:
                    return refused
            return await handler(request)
        finally:
            if kind == "offer" and decision.claims is not None and GRANT in request:
                self.access.release(decision.claims.token_id)  # no session came of it

    def _refuse(self, request: Any, decision: Decision) -> Any:
        headers = {"WWW-Authenticate": "Bearer"} if decision.status == 401 else {}
        if decision.retry_after is not None:
            headers["Retry-After"] = str(decision.retry_after)
        self.refused[decision.status] = self.refused.get(decision.status, 0) + 1
        # a flood of refusals must not flood the log: counted on /metrics instead
        log.debug("refused %s %s from %s: %s", request.method, request.path, request.remote, decision.reason)
        return web.json_response({"error": decision.reason}, status=decision.status, headers=headers)

    async def _read_body(self, request: Any) -> Any:
        """Read the body here, within the request timeout (aiohttp keeps it for the handler's read())."""
        limit = self.settings.max_body_bytes
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                await request.read()
        except TimeoutError:
            return web.json_response({"error": f"body not received within {self.settings.request_timeout_s} s"},
                                     status=408, headers={"Connection": "close"})
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": f"body over {limit} bytes"}, status=413)
        return None

    def session_started(self, request: Any, session_id: str) -> None:
        """The allowed offer ``request`` became session ``session_id``: its token's slot stays held until
        ``session_ended(session_id)``."""
        claims = request.pop(GRANT, None)
        if claims is not None:
            self._sessions[session_id] = claims.token_id

    def session_ended(self, session_id: str) -> None:
        token_id = self._sessions.pop(session_id, None)
        if token_id is not None:
            self.access.release(token_id)

    def user(self, request: Any) -> str:
        """Who the request is for (a signed token's user, else its id; '' without one): TURN usernames."""
        decision = self.access._authenticate(request.headers.get("Authorization"), self.clock(), True)
        claims = decision.claims
        return (claims.user or claims.token_id) if claims else ""

    async def _issue(self, request: Any) -> Any:
        """``POST /v1/tokens`` {"ttl_s", "max_sessions", "user"} with ``Authorization: Bearer <operator secret>``."""
        secret = self.settings.operator_secret
        if not secret or not self.settings.session_secret:
            return web.json_response({"error": "token issuing is off (set VOICEBUS_OPERATOR_SECRET and "
                                      "VOICEBUS_SESSION_SECRET)"}, status=404)
        if request.method != "POST":
            return web.json_response({"error": "POST to issue a token"}, status=405, headers={"Allow": "POST"})
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), secret.encode()):
            return web.json_response({"error": "missing or wrong operator secret"}, status=401,
                                     headers={"WWW-Authenticate": "Bearer"})
        refused = await self._read_body(request)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            ttl, max_sessions, user = body.get("ttl_s", 600), body.get("max_sessions", 1), body.get("user", "")
            if (not isinstance(ttl, int | float) or isinstance(ttl, bool) or not isinstance(max_sessions, int)
                    or isinstance(max_sessions, bool) or not isinstance(user, str)):
                raise ValueError('expected {"ttl_s": number, "max_sessions": int, "user": str}')
            token = mint(self.settings.session_secret, float(ttl), max_sessions, user, now=self.clock())
        except (ValueError, RecursionError, UnicodeDecodeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        claims = verify(self.settings.session_secret, token, self.clock())
        log.info("token %s issued: %d session(s), expires at %d", claims.token_id, claims.max_sessions,
                 claims.expires_at)
        return web.json_response({"token": token, "token_id": claims.token_id, "expires_at": claims.expires_at,
                                  "max_sessions": claims.max_sessions, "user": claims.user})


def access_middleware(settings: Any, clock: Callable[[], float] = time.time, metrics: Any = None) -> AccessMiddleware:
    """The signaling app's access middleware (see AccessMiddleware for the server's two hooks); with a
    runtime.metrics Registry, its refusals are counted there."""
    return AccessMiddleware(settings, clock, metrics)
