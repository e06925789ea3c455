"""Transcripts (voice.transcripts), turn decisions (voice.turns) and replies (voice.replies.<node>)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.base import Event, Nanos, NodeId, TurnEvent

Millis = Annotated[int, Field(ge=0)]


class TranscriptPartial(Event):
    type: Literal["transcript_partial"] = "transcript_partial"
    text: str
    start_media_ns: Nanos
    end_media_ns: Nanos
    engine: str = ""


class TranscriptFinal(Event):
    """Final text of one utterance (speech between a SpeechStarted and its SpeechStopped)."""

    VERSION = 2
    type: Literal["transcript_final"] = "transcript_final"
    schema_version: int = 2
    text: str
    start_media_ns: Nanos
    end_media_ns: Nanos
    engine: str = ""


class TurnSpeculative(TurnEvent):
    """A short pause with text: the responder may start, holding its output until the turn is committed."""

    type: Literal["turn_speculative"] = "turn_speculative"
    node_id: NodeId
    text: str
    speech_end_media_ns: Nanos


class TurnCommitted(TurnEvent):
    type: Literal["turn_committed"] = "turn_committed"
    node_id: NodeId
    text: str
    speech_end_media_ns: Nanos


class TurnCancelled(TurnEvent):
    """Stop work and playout for this turn: the person resumed (withdrawn), interrupted, or left."""

    type: Literal["turn_cancelled"] = "turn_cancelled"
    node_id: NodeId
    reason: Literal["withdrawn", "barge_in", "session_ended"]


class BargeIn(TurnEvent):
    """The person interrupted the reply of ``turn_id``; only ``played_ms`` of it was heard."""

    type: Literal["barge_in"] = "barge_in"
    node_id: NodeId
    played_ms: Millis


class FalseInterruption(TurnEvent):
    """A barge-in with no words after it (a cough, a door): the reply may resume from ``played_ms``."""

    type: Literal["false_interruption"] = "false_interruption"
    node_id: NodeId
    played_ms: Millis


class TurnEnded(TurnEvent):
    type: Literal["turn_ended"] = "turn_ended"
    node_id: NodeId
    outcome: Literal["completed", "interrupted", "cancelled"]


class ReplyAudioChunk(TurnEvent):
    """Playable reply audio, PCM16 mono. ``index`` counts from 0 within the reply (duplicates share it)."""

    type: Literal["reply_audio_chunk"] = "reply_audio_chunk"
    index: Annotated[int, Field(ge=0)]
    sample_rate: Literal[8000, 16000, 22050, 24000, 48000] = 16000
    pcm: bytes
    text: str = ""


class ReplyText(TurnEvent):
    type: Literal["reply_text"] = "reply_text"
    text: str


class ReplyEnded(TurnEvent):
    type: Literal["reply_ended"] = "reply_ended"
    chunks: Annotated[int, Field(ge=0)]


class ReplyCancelled(TurnEvent):
    type: Literal["reply_cancelled"] = "reply_cancelled"
