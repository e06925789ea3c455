"""Events the WebRTC edge publishes: VAD (voice.vad), session lifecycle (voice.sessions), playout (voice.playout)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.base import Event, Nanos, NodeId, TurnEvent

Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class SpeechStarted(Event):
    type: Literal["speech_started"] = "speech_started"
    node_id: NodeId
    speech_start_media_ns: Nanos
    speech_start_wall_ns: Nanos
    probability: Probability


class SpeechStopped(Event):
    """The edge's VAD decided speech stopped. ``speech_end`` is the last voiced frame's capture time;
    the event's own ``wall_ns`` is the VAD decision (``vad_end`` on the turn timeline)."""

    VERSION = 2
    type: Literal["speech_stopped"] = "speech_stopped"
    schema_version: int = 2
    node_id: NodeId
    speech_start_media_ns: Nanos
    speech_end_media_ns: Nanos
    speech_end_wall_ns: Nanos


class VadProgress(Event):
    """Heartbeat of the media clock: lets silence advance turn state when nothing else happens."""

    type: Literal["vad_progress"] = "vad_progress"
    node_id: NodeId
    speaking: bool
    probability: Probability


class SessionStarted(Event):
    type: Literal["session_started"] = "session_started"
    node_id: NodeId
    remote: str = ""
    user_agent: str = ""


class SessionEnded(Event):
    type: Literal["session_ended"] = "session_ended"
    node_id: NodeId
    reason: Literal["client_closed", "deleted", "ice_failed", "dtls_failed", "shutdown", "error"]
    frames_in: Annotated[int, Field(ge=0)] = 0
    frames_dropped: Annotated[int, Field(ge=0)] = 0


class PlayoutStarted(TurnEvent):
    type: Literal["playout_started"] = "playout_started"
    node_id: NodeId


class PlayoutFinished(TurnEvent):
    type: Literal["playout_finished"] = "playout_finished"
    node_id: NodeId
    played_ms: Annotated[int, Field(ge=0)]


class PlayoutInterrupted(TurnEvent):
    """The person spoke over the reply and the edge stopped playout itself (barge-in)."""

    type: Literal["playout_interrupted"] = "playout_interrupted"
    node_id: NodeId
    played_ms: Annotated[int, Field(ge=0)]
    barge_in_media_ns: Nanos
