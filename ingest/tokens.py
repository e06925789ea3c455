"""Signed session tokens: ``v1.<payload>.<signature>``, base64url (no padding) of the compact JSON claims
``{"tid": id, "exp": unix s, "max": sessions, "sub": user}`` and of HMAC-SHA256(secret, "v1.<payload>").

Standard library only: the CLI (`voicebus token issue`) mints here without loading the edge.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

VERSION = "v1"
MAX_TOKEN_CHARS = 1024  # a token is ~150 characters; anything far longer is refused before any work
MAX_TTL_S = 366 * 24 * 3600


class TokenError(ValueError):
    """The token is malformed, forged or expired (the message says which, for the 401)."""


@dataclass(frozen=True)
class Claims:
    token_id: str
    expires_at: int  # Unix seconds
    max_sessions: int
    user: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _sign(secret: str, signed: str) -> bytes:
    return hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()


def mint(secret: str, ttl_s: float, max_sessions: int = 1, user: str = "", now: float | None = None,
         token_id: str | None = None) -> str:
    """A signed session token valid for ``ttl_s`` from ``now`` (wall clock if not given)."""
    if not secret:
        raise ValueError("no session secret: set VOICEBUS_SESSION_SECRET")
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl must be between 1 s and {MAX_TTL_S} s, got {ttl_s}")
    if max_sessions < 1:
        raise ValueError(f"max sessions must be at least 1, got {max_sessions}")
    claims = {"tid": token_id or secrets.token_hex(8), "exp": int((time.time() if now is None else now) + ttl_s),
              "max": int(max_sessions), "sub": user[:128]}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signed = f"{VERSION}.{payload}"
    return f"{signed}.{_b64(_sign(secret, signed))}"


def verify(secret: str, token: str, now: float, check_expiry: bool = True) -> Claims:
    """The token's claims if ``secret`` signed it (and it has not expired), else TokenError."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenError("malformed token")
    version, payload, signature = token.split(".")
    if version != VERSION:
        raise TokenError(f"token version {version[:8]!r} is not {VERSION}")
    try:
        given = _unb64(signature)
    except (binascii.Error, ValueError):
        raise TokenError("malformed token signature") from None
    if not hmac.compare_digest(given, _sign(secret, f"{version}.{payload}")):
        raise TokenError("bad token signature")
    try:  # signed by us: the payload is ours, still read it defensively
        raw = json.loads(_unb64(payload))
        claims = Claims(str(raw["tid"]), int(raw["exp"]), int(raw["max"]), str(raw.get("sub", "")))
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise TokenError("malformed token payload") from None
    if check_expiry and now >= claims.expires_at:
        raise TokenError("token expired")
    return claims


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``2h``, ``1d``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 10m, 2h, 1d)")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
