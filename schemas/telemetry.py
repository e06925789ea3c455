"""Per-turn stage stamps (voice.telemetry) and dead letters (voice.dlq)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Nanos, NodeId, TurnEvent, now_ns

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
    stage_wall_ns: Nanos
    stage_media_ns: Nanos | None = None
    service: Literal["ingest", "streams", "asr", "responder"]
    engine: str = ""


class DeadLetter(BaseModel):
    """A message no consumer could decode, kept whole with the reason. Not an Event: it has no session."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    type: Literal["dead_letter"] = "dead_letter"
    schema_version: int = 1
    source_topic: str
    partition: Annotated[int, Field(ge=0)]
    offset: Annotated[int, Field(ge=0)]
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = []  # Kafka header values may be null
    error: str
    consumer: str = ""
    wall_ns: Nanos = Field(default_factory=now_ns)
