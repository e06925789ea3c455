"""Per-turn stage stamps (voice.telemetry) and dead letters (voice.dlq)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.base import TurnEvent, now_ns
from schemas.bounds import ErrorText, MediaNs, Name, NodeId, Offset, Partition, TopicName, WallNs

# The turn timeline of design.md, in order.
Stage = Literal[
    "speech_end",
    "vad_end",
    "turn_speculative",
    "turn_committed",
    "asr_final",
    "llm_first_token",
    "tts_first_audio",
    "reply_first_at_edge",
    "reply_first_sent",
    "reply_last_sent",
    "barge_in_speech_start",
]
STAGES: tuple[str, ...] = get_args(Stage)


class StageStamped(TurnEvent):
    """One stage of one turn happened at ``stage_wall_ns`` (and, where it has one, ``stage_media_ns``)."""

    type: Literal["stage_stamped"] = "stage_stamped"
    node_id: NodeId
    stage: Stage
    stage_wall_ns: WallNs
    stage_media_ns: MediaNs | None = None
    service: Literal["ingest", "streams", "asr", "responder"]
    engine: Name = ""


class DeadLetter(BaseModel):
    """A message no consumer could decode, kept whole with the reason. Not an Event: it has no session."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    type: Literal["dead_letter"] = "dead_letter"
    schema_version: int = 1
    source_topic: TopicName
    partition: Partition
    offset: Offset
    # The record as it was, whatever it holds: its size is bounded by the broker's message size, not here
    # (a dead letter must be writable for any record a consumer can be handed).
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = []  # Kafka header values may be null
    error: ErrorText
    consumer: Annotated[str, StringConstraints(max_length=256)] = ""
    wall_ns: WallNs = Field(default_factory=now_ns)
