"""Old schema versions, read: each event module registers the upcasters of its events beside them, and codecs
bring every payload to the current version before validating it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]


class DecodeError(ValueError):
    """A message that cannot be read as the topic's value type."""


# (event type, from version) -> function giving the payload at version + 1.
UPCASTERS: dict[tuple[str, int], Callable[[Payload], Payload]] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Callable[[Payload], Payload]], Callable[[Payload], Payload]]:
    def register(fn: Callable[[Payload], Payload]) -> Callable[[Payload], Payload]:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


def upcast(payload: Payload, current: int) -> Payload:
    event_type, version = payload.get("type"), payload.get("schema_version", 1)
    if not isinstance(version, int) or version < 1:
        raise DecodeError(f"schema_version must be a positive integer, got {version!r}")
    if version > current:
        raise DecodeError(f"{event_type} schema_version {version} is newer than this build reads ({current})")
    while version < current:
        step = UPCASTERS.get((str(event_type), version))
        if step is None:
            raise DecodeError(f"no upcaster for {event_type} from schema_version {version}")
        payload = {**step(payload), "schema_version": version + 1}
        version += 1
    return payload
