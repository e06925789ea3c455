"""The base of every event: identity, ordering and the two clocks."""

from __future__ import annotations

import time
import uuid
from typing import ClassVar, TypedDict

from pydantic import BaseModel, ConfigDict

from schemas.bounds import MediaNs, Seq, SessionId, TurnId, WallNs


def new_session_id() -> str:
    return uuid.uuid4().hex


def now_ns() -> int:
    return time.time_ns()


class Event(BaseModel):
    """A frozen event. Subclasses set ``type`` (a Literal, the discriminator) and ``VERSION``.

    ``seq`` counts per session and per producing service; ``media_ns`` is the session's media clock (0 at its
    first audio frame, advanced by audio, never by a processor's wall clock); ``wall_ns`` is when it was made.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    VERSION: ClassVar[int] = 1

    type: str
    schema_version: int = 1
    session_id: SessionId
    seq: Seq
    media_ns: MediaNs
    wall_ns: WallNs

    def model_post_init(self, __context: object) -> None:
        # Events are made at the current version; older ones pass through an upcaster first (schemas.codec).
        if self.schema_version != self.VERSION:
            raise ValueError(
                f"{self.type} schema_version {self.schema_version} is not the current {self.VERSION}"
            )


class Envelope(TypedDict):
    """The fields every event carries besides its own: ``Model(**envelope, field=...)`` at the call site."""

    session_id: str
    seq: int
    media_ns: int
    wall_ns: int


class Stamper:
    """One producer's envelopes for one session. ``seq`` is counted here and nowhere else: per session and per
    producer, from ``first_seq``."""

    def __init__(self, session_id: str, first_seq: int = 0) -> None:
        self.session_id, self.seq = session_id, first_seq

    def __call__(self, media_ns: int, wall_ns: int | None = None) -> Envelope:
        envelope = Envelope(session_id=self.session_id, seq=self.seq, media_ns=media_ns,
                            wall_ns=now_ns() if wall_ns is None else wall_ns)
        self.seq += 1
        return envelope


class TurnEvent(Event):
    """An event that belongs to one turn of the conversation."""

    turn_id: TurnId
