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
- ``seq`` counts up per session within one worker; a worker that takes a session over starts again;
- with an end-of-turn scorer on, for an utterance that the VAD stopped, at most one EndOfTurnScored with the
  same span as its final, sent *before* that final (so a consumer that waits for the final has the score).

The turn processor (consumer) relies on nothing else. In particular it must not assume:
- any order between voice.transcripts and voice.vad / voice.playout (separate topics, read independently: a
  final may come before its SpeechStopped, or seconds after it);
- that ``seq`` or ``media_ns`` increase across workers (a rebalance restarts both).
So it identifies a final by its span, applies a repeated final once, matches finals to turns by span overlap
(never by arrival), and treats partials as hints that a later final supersedes. A score is joined to its
utterance by the span too; one that comes after its utterance's final breaks the order above and is ignored, so
every interleaving of the topics decides the same.
"""

from __future__ import annotations

from typing import Literal

from schemas.base import Event, TurnEvent
from schemas.bounds import Count, MediaMs, MediaNs, Name, NodeId, Pcm16, Probability, Text, WallNs
from schemas.telemetry import Stage
from schemas.upcast import Payload, upcaster


class TranscriptPartial(Event):
    type: Literal["transcript_partial"] = "transcript_partial"
    text: Text
    start_media_ns: MediaNs
    end_media_ns: MediaNs
    engine: Name = ""


class TranscriptFinal(Event):
    """Final text of one utterance (speech between a SpeechStarted and its SpeechStopped)."""

    VERSION = 2
    type: Literal["transcript_final"] = "transcript_final"
    schema_version: int = 2
    text: Text
    start_media_ns: MediaNs
    end_media_ns: MediaNs
    engine: Name = ""


class EndOfTurnScored(Event):
    """How likely the person finished their turn at the end of one utterance (``probability``: P(complete)),
    judged from the sound of the turn up to the pause (an audio model, e.g. Smart Turn). The span is the
    utterance's, as in its TranscriptFinal."""

    type: Literal["end_of_turn_scored"] = "end_of_turn_scored"
    start_media_ns: MediaNs
    end_media_ns: MediaNs
    probability: Probability
    engine: Name = ""


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
    text: Text
    speech_start_media_ns: MediaNs
    speech_end_media_ns: MediaNs


class TurnCommitted(TurnEvent):
    """The person's turn is over: answer ``text``. The span is that of the speech it covers."""

    VERSION = 2
    type: Literal["turn_committed"] = "turn_committed"
    schema_version: int = 2
    node_id: NodeId
    text: Text
    speech_start_media_ns: MediaNs
    speech_end_media_ns: MediaNs


@upcaster("turn_speculative", 1)
@upcaster("turn_committed", 1)
def _turn_v1(p: Payload) -> Payload:
    # v1 had no start of the turn's speech: an empty span at its end.
    return {**p, "speech_start_media_ns": p["speech_end_media_ns"]}


class TurnCancelled(TurnEvent):
    """Stop work and playout for this turn: the person resumed (withdrawn), interrupted, or left; or the turn's
    words did not come within the turn processor's ASR wait (asr_timeout: it is not answered)."""

    type: Literal["turn_cancelled"] = "turn_cancelled"
    node_id: NodeId
    reason: Literal["withdrawn", "barge_in", "session_ended", "asr_timeout"]


class BargeIn(TurnEvent):
    """The person spoke over the reply of ``turn_id``; ``played_ms`` of it was heard. The edge has paused it. With
    false interruptions resumed, the barge-in is judged later: ``TurnCancelled`` (reason ``barge_in``) and
    ``TurnEnded`` (``interrupted``) follow if words come, ``FalseInterruption`` if none do."""

    type: Literal["barge_in"] = "barge_in"
    node_id: NodeId
    played_ms: MediaMs


class FalseInterruption(TurnEvent):
    """A barge-in with no words after it (a cough, a door): the reply resumes from ``played_ms``."""

    type: Literal["false_interruption"] = "false_interruption"
    node_id: NodeId
    played_ms: MediaMs


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
    speech_start_media_ns: MediaNs
    speech_end_media_ns: MediaNs
    index: Count
    sample_rate: Literal[8000, 16000, 22050, 24000, 48000] = 16000
    pcm: Pcm16
    text: Text = ""


@upcaster("reply_audio_chunk", 1)
def _reply_audio_chunk_v1(p: Payload) -> Payload:
    # v1 did not say which speech the reply answers.
    return {**p, "speech_start_media_ns": 0, "speech_end_media_ns": 0}


class ReplyText(TurnEvent):
    type: Literal["reply_text"] = "reply_text"
    text: Text


class ReplyEnded(TurnEvent):
    type: Literal["reply_ended"] = "reply_ended"
    chunks: Count


class ReplyCancelled(TurnEvent):
    type: Literal["reply_cancelled"] = "reply_cancelled"


class ReplyResumed(TurnEvent):
    """The barge-in that paused this turn's reply was a false interruption: play the rest of it from where it
    stopped. The edge keeps a paused reply's unplayed audio for a bounded time; after that this is ignored."""

    type: Literal["reply_resumed"] = "reply_resumed"


class SpeechRecognised(Event):
    """The person's words for the edge holding the session (voice.replies.<node>), so it can show them: the ASR
    sends one with every transcript it puts on voice.transcripts, with the same envelope, text and span; ``final``
    says which of the two it copies. Only the edge reads these; the turn processor reads voice.transcripts."""

    type: Literal["speech_recognised"] = "speech_recognised"
    text: Text
    final: bool
    start_media_ns: MediaNs
    end_media_ns: MediaNs


class ReplyStages(TurnEvent):
    """When the stages of the turn that the responder knows happened (wall ns by stage: ``turn_committed``,
    ``llm_first_token``, ``tts_first_audio``), sent once, before the reply's first audio, so that the edge can
    show the turn's latency breakdown without reading voice.telemetry, where the same times are stamped."""

    type: Literal["reply_stages"] = "reply_stages"
    stages: dict[Stage, WallNs]
