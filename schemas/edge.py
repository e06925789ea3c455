"""Events the WebRTC edge publishes: VAD (voice.vad), session lifecycle (voice.sessions), playout (voice.playout)."""

from __future__ import annotations

from typing import Literal

from schemas.base import Event, TurnEvent
from schemas.bounds import Count, MediaMs, MediaNs, Name, NodeId, Probability, UserAgent, WallNs
from schemas.upcast import Payload, upcaster


class SpeechStarted(Event):
    type: Literal["speech_started"] = "speech_started"
    node_id: NodeId
    speech_start_media_ns: MediaNs
    speech_start_wall_ns: WallNs
    probability: Probability


class SpeechStopped(Event):
    """The edge's VAD decided speech stopped. ``speech_end`` is the last voiced frame's capture time;
    the event's own ``wall_ns`` is the VAD decision (``vad_end`` on the turn timeline)."""

    VERSION = 2
    type: Literal["speech_stopped"] = "speech_stopped"
    schema_version: int = 2
    node_id: NodeId
    speech_start_media_ns: MediaNs
    speech_end_media_ns: MediaNs
    speech_end_wall_ns: WallNs


@upcaster("speech_stopped", 1)
def _speech_stopped_v1(p: Payload) -> Payload:
    # v1 had no wall time for the speech end: derive it from the decision's wall and media times.
    lag = p["media_ns"] - p["speech_end_media_ns"]
    return {**p, "speech_end_wall_ns": max(0, p["wall_ns"] - lag)}


class VadProgress(Event):
    """Heartbeat of the media clock: lets silence advance turn state when nothing else happens. ``voiced``:
    the frame's probability reached the edge's VAD threshold (consumers need not know the threshold)."""

    VERSION = 2
    type: Literal["vad_progress"] = "vad_progress"
    schema_version: int = 2
    node_id: NodeId
    speaking: bool
    probability: Probability
    voiced: bool


@upcaster("vad_progress", 1)
def _vad_progress_v1(p: Payload) -> Payload:
    # v1 left "voiced" to the reader: 0.5 was the edge's threshold then.
    return {**p, "voiced": p["probability"] >= 0.5}


class SessionStarted(Event):
    type: Literal["session_started"] = "session_started"
    node_id: NodeId
    remote: Name = ""
    user_agent: UserAgent = ""


class SessionEnded(Event):
    """The session is over. The edge node that held it publishes it, except ``edge_lost``: the node (an edge
    worker process) died, and the signaling front that dispatched the session to it publishes it instead. The
    front does not know the session's media clock then: ``media_ns`` is 0 and ``seq`` lies past anything the
    worker stamped (its last reported seq plus a margin), so it applies at once, after everything the worker
    published; ``frames_in`` and ``frames_dropped`` are 0 (unknown)."""

    VERSION = 2
    type: Literal["session_ended"] = "session_ended"
    schema_version: int = 2
    node_id: NodeId
    reason: Literal["client_closed", "deleted", "ice_failed", "dtls_failed", "shutdown", "error", "edge_lost"]
    frames_in: Count = 0
    frames_dropped: Count = 0


@upcaster("session_ended", 1)
def _session_ended_v1(p: Payload) -> Payload:
    # v2 added the reason edge_lost; every v1 reason is still valid.
    return p


class PlayoutStarted(TurnEvent):
    type: Literal["playout_started"] = "playout_started"
    node_id: NodeId


class PlayoutFinished(TurnEvent):
    type: Literal["playout_finished"] = "playout_finished"
    node_id: NodeId
    played_ms: MediaMs


class PlayoutInterrupted(TurnEvent):
    """The person spoke over the reply and the edge stopped playout itself (barge-in)."""

    type: Literal["playout_interrupted"] = "playout_interrupted"
    node_id: NodeId
    played_ms: MediaMs
    barge_in_media_ns: MediaNs
