"""Which local addresses ICE gathers host candidates on.

aioice gathers on every interface except loopback. A host with only loopback (a CI sandbox), or one where
the edge must use a particular interface, sets ``VOICEBUS_ICE_HOST_ADDRESSES``; aioice has no option for it,
so its module-level address lookup is replaced, process-wide, by the configured list.
"""

from __future__ import annotations

import aioice.ice


def use_host_addresses(addresses: list[str]) -> None:
    """Gather ICE host candidates on exactly ``addresses`` (empty: aioice's own choice)."""
    if not addresses:
        return
    fixed = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
