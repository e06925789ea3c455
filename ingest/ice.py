"""Which local addresses ICE gathers host candidates on.

aioice gathers on every interface except loopback. A host with only loopback (a CI sandbox), or one where
the edge must use a particular interface, sets ``VOICEBUS_ICE_HOST_ADDRESSES``; aioice has no option for it,
so its module-level address lookup is replaced, process-wide, by the configured list.

And what the page is told: the ICE servers, a TURN server's with short-lived credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import aioice.ice


def use_host_addresses(addresses: list[str]) -> None:
    """Gather ICE host candidates on exactly ``addresses`` (empty: aioice's own choice)."""
    if not addresses:
        return
    fixed = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def turn_credentials(secret: str, user: str, now: float, ttl_s: int) -> tuple[str, str]:
    """(username, password) by the TURN REST API scheme (coturn's use-auth-secret): the username is
    "<expiry unix s>:<user>", the password base64(HMAC-SHA1(secret, username)). The TURN server checks both
    with the same secret; no per-user state, and they stop working at the expiry."""
    username = f"{int(now) + ttl_s}:{user}" if user else str(int(now) + ttl_s)
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_config(servers: list[Any], turn_secret: str, user: str, now: float, ttl_s: int) -> list[dict[str, Any]]:
    """The ICE servers as the page's RTCPeerConnection takes them: with ``turn_secret``, every server with a
    turn:/turns: URL gets fresh credentials for ``user`` (its configured ones are not handed out)."""
    out: list[dict[str, Any]] = []
    for server in servers:
        entry = server.model_dump(exclude_none=True)
        if turn_secret and any(u.lower().startswith(("turn:", "turns:")) for u in server.urls):
            entry["username"], entry["credential"] = turn_credentials(turn_secret, user, now, ttl_s)
        out.append(entry)
    return out
