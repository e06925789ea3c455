"""Transcripts (voice.transcripts), turn decisions (voice.turns) and replies (voice.replies.<node>).

The ASR -> turn processor contract (voice.transcripts, keyed by session id)
--------------------------------------------------------------------------
An *utterance* is the speech between one SpeechStarted and its SpeechStopped on voice.vad; the ASR names it by
its start, ``start_media_ns`` (the VAD's ``speech_start_media_ns``).

The ASR (producer) keeps, per session:
- for each utterance, zero or more TranscriptPartial, then exactly one TranscriptFinal, all with the same
  ``start_media_ns``; the final's ``end_media_ns`` is the VAD's speech end (or the audio fed, when the VAD's
  stop never came); a partial's ``end_media_ns`` is the audio fed so far, which may run past the speech end;
- the event's own ``media_ns`` is the session's media clock when it was made: the end of the audio the
  recogniser had consumed. It never goes backwards within one worker's stream for a session, so a final is
  never stamped before the partials it supersedes;
- ``seq`` counts up per session within one worker; a worker that takes a session over starts again.

The turn processor (consumer) relies on nothing else. In particular it must not assume:
- any order between voice.transcripts and voice.vad / voice.playout (separate topics, read independently: a
  final may come before its SpeechStopped, or seconds after it);
- that ``seq`` or ``media_ns`` increase across workers (a rebalance restarts both).
So it identifies a final by its span, applies a repeated final once, matches finals to turns by span overlap
(never by arrival), and treats partials as hints that a later final supersedes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from schemas.base import Event, Nanos, NodeId, TurnEvent
from schemas.telemetry import Stage
from schemas.upcast import Payload, upcaster

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


@upcaster("transcript_final", 1)
def _transcript_final_v1(p: Payload) -> Payload:
    # v1 carried the span in milliseconds.
    out = {k: v for k, v in p.items() if k not in ("start_ms", "end_ms")}
    return {**out, "start_media_ns": p["start_ms"] * 1_000_000, "end_media_ns": p["end_ms"] * 1_000_000}


class TurnSpeculative(TurnEvent):
    """A short pause with text: the responder may start, holding its output until the turn is committed.
    ``speech_start_media_ns``..``speech_end_media_ns`` is the span of the person's speech in the turn."""

    VERSION = 2
    type: Literal["turn_speculative"] = "turn_speculative"
    schema_version: int = 2
    node_id: NodeId
    text: str
    speech_start_media_ns: Nanos
    speech_end_media_ns: Nanos


class TurnCommitted(TurnEvent):
    """The person's turn is over: answer ``text``. The span is that of the speech it covers."""

    VERSION = 2
    type: Literal["turn_committed"] = "turn_committed"
    schema_version: int = 2
    node_id: NodeId
    text: str
    speech_start_media_ns: Nanos
    speech_end_media_ns: Nanos


@upcaster("turn_speculative", 1)
@upcaster("turn_committed", 1)
def _turn_v1(p: Payload) -> Payload:
    # v1 had no start of the turn's speech: an empty span at its end.
    return {**p, "speech_start_media_ns": p["speech_end_media_ns"]}


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
    """Playable reply audio, PCM16 mono. ``index`` counts from 0 within the reply (duplicates share it).
    The span is the person's speech the reply answers (the turn's), so the edge can tell its client."""

    VERSION = 2
    type: Literal["reply_audio_chunk"] = "reply_audio_chunk"
    schema_version: int = 2
    speech_start_media_ns: Nanos
    speech_end_media_ns: Nanos
    index: Annotated[int, Field(ge=0)]
    sample_rate: Literal[8000, 16000, 22050, 24000, 48000] = 16000
    pcm: bytes
    text: str = ""


@upcaster("reply_audio_chunk", 1)
def _reply_audio_chunk_v1(p: Payload) -> Payload:
    # v1 did not say which speech the reply answers.
    return {**p, "speech_start_media_ns": 0, "speech_end_media_ns": 0}


class ReplyText(TurnEvent):
    type: Literal["reply_text"] = "reply_text"
    text: str


class ReplyEnded(TurnEvent):
    type: Literal["reply_ended"] = "reply_ended"
    chunks: Annotated[int, Field(ge=0)]


class ReplyCancelled(TurnEvent):
    type: Literal["reply_cancelled"] = "reply_cancelled"


class SpeechRecognised(Event):
    """The person's words for the edge holding the session (voice.replies.<node>), so it can show them: the ASR
    sends one with every transcript it puts on voice.transcripts, with the same envelope, text and span; ``final``
    says which of the two it copies. Only the edge reads these; the turn processor reads voice.transcripts."""

    type: Literal["speech_recognised"] = "speech_recognised"
    text: str
    final: bool
    start_media_ns: Nanos
    end_media_ns: Nanos


class ReplyStages(TurnEvent):
    """When the stages of the turn that the responder knows happened (wall ns by stage: ``turn_committed``,
    ``llm_first_token``, ``tts_first_audio``), sent once, before the reply's first audio, so that the edge can
    show the turn's latency breakdown without reading voice.telemetry, where the same times are stamped."""

    type: Literal["reply_stages"] = "reply_stages"
    stages: dict[Stage, Nanos]
