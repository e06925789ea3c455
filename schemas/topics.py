"""The topic registry: every topic, its key, value type, partitioning, retention and cleanup policy.

Physical names are ``<topic_prefix><name>``. Every session-keyed topic has the same partition count, so
the turn processor's joins are co-partitioned.

Record headers: a JSON event may carry the Kafka header ``TYPE_HEADER`` (``"type"``), whose value is the
event's ``type`` field in UTF-8 (e.g. ``b"vad_progress"``), so that a consumer can skip the types it ignores
without decoding the value. The edge and the turn processor set it on every event they publish. It is
optional: a record without it is decoded as usual. A consumer that acts on an event still decodes the value;
the header only lets it pass over the others cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import Field

from schemas.audio import AudioFrame
from schemas.codec import AudioCodec, JsonCodec
from schemas.conversation import (
    BargeIn,
    EndOfTurnScored,
    FalseInterruption,
    ReplyAudioChunk,
    ReplyCancelled,
    ReplyEnded,
    ReplyResumed,
    ReplyStages,
    ReplyText,
    SpeechRecognised,
    TranscriptFinal,
    TranscriptPartial,
    TurnCancelled,
    TurnCommitted,
    TurnEnded,
    TurnSpeculative,
)
from schemas.edge import (
    PlayoutFinished,
    PlayoutInterrupted,
    PlayoutStarted,
    SessionEnded,
    SessionStarted,
    SpeechStarted,
    SpeechStopped,
    VadProgress,
)
from schemas.history import ConversationHistory
from schemas.telemetry import DeadLetter, StageStamped

SESSION_PARTITIONS = 8
TYPE_HEADER = "type"  # Kafka record header: the event's ``type`` (see the module docstring)
MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


def _union(*models: type) -> Any:
    if len(models) == 1:
        return models[0]
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007


def _codec(*models: Any) -> JsonCodec[Any]:
    versions = {m.model_fields["type"].default: m.model_fields["schema_version"].default for m in models}
    return JsonCodec(_union(*models), versions)


VadEvent = _union(SpeechStarted, SpeechStopped, VadProgress)
SessionEvent = _union(SessionStarted, SessionEnded)
PlayoutEvent = _union(PlayoutStarted, PlayoutFinished, PlayoutInterrupted)
TranscriptEvent = _union(TranscriptPartial, TranscriptFinal, EndOfTurnScored)
TurnDecision = _union(TurnSpeculative, TurnCommitted, TurnCancelled, BargeIn, FalseInterruption, TurnEnded)
ReplyEvent = _union(ReplyAudioChunk, ReplyText, ReplyEnded, ReplyCancelled, ReplyResumed, ReplyStages,
                    SpeechRecognised)
TelemetryEvent = StageStamped


@dataclass(frozen=True)
class TopicSpec:
    name: str
    description: str
    producer: str
    codec: Any = field(repr=False)
    models: tuple[type, ...] = ()
    readers: tuple[str, ...] = ()  # the services that consume it (each declares CONSUMES; a test compares)
    key: Literal["session_id", "source key"] = "session_id"
    partitions: int = SESSION_PARTITIONS
    retention_ms: int | None = DAY_MS
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    content_type: str = "application/json"
    max_message_bytes: int | None = None
    # The turn processor's inputs and decisions: kept as long as a deployment wants to replay them (`voicebus
    # replay`, VOICEBUS_REPLAY_RETENTION_DAYS); ``retention_ms`` is the default.
    replayable: bool = False

    def config(self, replay_retention_ms: int | None = None) -> dict[str, str]:
        """Topic-level Kafka configs (a replayable topic's retention is ``replay_retention_ms`` when given)."""
        out: dict[str, str] = {"cleanup.policy": self.cleanup_policy}
        retention = replay_retention_ms if self.replayable and replay_retention_ms else self.retention_ms
        if retention is not None and "delete" in self.cleanup_policy:
            out["retention.ms"] = str(retention)
        if self.max_message_bytes is not None:
            out["max.message.bytes"] = str(self.max_message_bytes)
        return out


def _json_topic(name: str, description: str, producer: str, *models: type, **kw: Any) -> TopicSpec:
    return TopicSpec(name, description, producer, _codec(*models), models, **kw)


AUDIO = TopicSpec("voice.audio", "20 ms PCM16 16 kHz mono frames from the edge (binary layout, schemas.audio)",
                  "ingest", AudioCodec(), (AudioFrame,), readers=("asr",), retention_ms=10 * MINUTE_MS,
                  content_type="application/octet-stream")
VAD = _json_topic("voice.vad", "speech started / stopped and media-clock progress from the edge's VAD",
                  "ingest", SpeechStarted, SpeechStopped, VadProgress, readers=("streams", "asr"), replayable=True)
SESSIONS = _json_topic("voice.sessions", "session lifecycle at the edge", "ingest", SessionStarted, SessionEnded,
                       readers=("streams", "asr", "telemetry"), replayable=True)
PLAYOUT = _json_topic("voice.playout", "what the edge actually played of each reply, and barge-ins",
                      "ingest", PlayoutStarted, PlayoutFinished, PlayoutInterrupted, readers=("streams",),
                      replayable=True)
TRANSCRIPTS = _json_topic("voice.transcripts", "partial and final transcripts, and end-of-turn scores, with media "
                          "time spans", "asr", TranscriptPartial, TranscriptFinal, EndOfTurnScored,
                          readers=("streams",), replayable=True)
TURNS = _json_topic("voice.turns", "turn decisions: speculative, committed, cancelled, barge-in, ended",
                    "streams", TurnSpeculative, TurnCommitted, TurnCancelled, BargeIn, FalseInterruption,
                    TurnEnded, readers=("responder", "telemetry"), replayable=True)
TELEMETRY = _json_topic("voice.telemetry", "per-stage timestamps of each turn", "every service", StageStamped,
                        readers=("telemetry",), retention_ms=7 * DAY_MS)
DLQ = _json_topic("voice.dlq", "undecodable messages with their origin and the error", "every consumer",
                  DeadLetter, key="source key", partitions=1, retention_ms=30 * DAY_MS,
                  # a dead letter carries the original bytes base64'd: room for a 1 MiB message and its headers
                  max_message_bytes=4 * 1024 * 1024)
TURN_STATE_CHANGELOG = TopicSpec(
    "voice.turn-state-changelog", "changelog of the turn processor's per-session state table (Faust)",
    "streams", None, readers=("streams",), key="session_id", retention_ms=None, cleanup_policy="compact",
)
# Compacted (the latest history of each session stays) and deleted after a week without a new record: a session
# that ended without its tombstone (the responder forgets a session on TurnCancelled(session_ended) only) goes.
HISTORY = _json_topic("voice.history", "each session's conversation as heard, the responder's fold of its turns "
                      "(compacted: the latest record of a session is all of it)", "responder", ConversationHistory,
                      readers=("responder",), retention_ms=7 * DAY_MS, cleanup_policy="compact,delete")

REPLIES_PATTERN = "voice.replies.{node_id}"
# The ASR also writes here: a copy of each transcript for the edge holding the session, so that an edge reads
# only its own sessions' words (reading voice.transcripts, every edge would read every session's).
REPLIES = _json_topic(REPLIES_PATTERN,
                      "reply audio, text, end, cancel, resume and stage times, and the person's recognised words, "
                      "for the sessions held by one edge node", "responder, asr",
                      ReplyAudioChunk, ReplyText, ReplyEnded, ReplyCancelled, ReplyResumed, ReplyStages,
                      SpeechRecognised,
                      readers=("ingest",))

# Topics that exist once per deployment (the per-node reply topics are made per node: replies_topic()).
REGISTRY: tuple[TopicSpec, ...] = (AUDIO, VAD, SESSIONS, PLAYOUT, TRANSCRIPTS, TURNS, TELEMETRY, DLQ,
                                   TURN_STATE_CHANGELOG, HISTORY)
ALL_SPECS: tuple[TopicSpec, ...] = (*REGISTRY, REPLIES)


def replies_topic(node_id: str) -> str:
    return REPLIES_PATTERN.format(node_id=node_id)


_TOPIC_OF: dict[type, TopicSpec] = {model: spec for spec in ALL_SPECS for model in spec.models}


def topic_of(model: type) -> TopicSpec:
    """The topic that carries events of this model (each model is on exactly one topic). For a reply event
    that is the per-node pattern: ``replies_topic(node)`` names the topic."""
    try:
        return _TOPIC_OF[model]
    except KeyError:
        raise KeyError(f"{model.__name__} is on no voicebus topic") from None


def spec_for(name: str) -> TopicSpec:
    """The spec of a registry topic name, or of a per-node reply topic."""
    for spec in REGISTRY:
        if spec.name == name:
            return spec
    if name.startswith("voice.replies."):
        return REPLIES
    raise KeyError(f"{name!r} is not a voicebus topic")
