"""One valid event of every type of every JSON topic, for round trips and the export tests."""

from __future__ import annotations

from typing import Any

from schemas.audio import AudioFrame
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
from schemas.history import ConversationHistory, HeardTurn, SpokenSentence
from schemas.telemetry import DeadLetter, StageStamped
from schemas.topics import ALL_SPECS, TopicSpec

SESSION = "0123456789abcdef0123456789abcdef"
NODE = "edge-1"
WALL = 1_700_000_000_000_000_000
BASE: dict[str, Any] = {"session_id": SESSION, "seq": 7, "media_ns": 2_340_000_000, "wall_ns": WALL}
TURN: dict[str, Any] = {**BASE, "turn_id": f"{SESSION}-3"}

EVENTS: tuple[Any, ...] = (
    SpeechStarted(**BASE, node_id=NODE, speech_start_media_ns=1_000_000_000, speech_start_wall_ns=WALL - 10**9,
                  probability=0.93),
    SpeechStopped(**BASE, node_id=NODE, speech_start_media_ns=1_000_000_000, speech_end_media_ns=2_100_000_000,
                  speech_end_wall_ns=WALL - 240_000_000),
    VadProgress(**BASE, node_id=NODE, speaking=False, probability=0.02, voiced=False),
    SessionStarted(**BASE, node_id=NODE, remote="127.0.0.1:50000", user_agent="kcat/1.7"),
    SessionEnded(**BASE, node_id=NODE, reason="client_closed", frames_in=500, frames_dropped=2),
    PlayoutStarted(**TURN, node_id=NODE),
    PlayoutFinished(**TURN, node_id=NODE, played_ms=1820),
    PlayoutInterrupted(**TURN, node_id=NODE, played_ms=640, barge_in_media_ns=3_000_000_000),
    TranscriptPartial(**BASE, text="what is the wea", start_media_ns=10**9, end_media_ns=2 * 10**9,
                      engine="pocketsphinx"),
    TranscriptFinal(**BASE, text="what is the weather — in Zürich?", start_media_ns=10**9,
                    end_media_ns=2_100_000_000),
    EndOfTurnScored(**BASE, start_media_ns=10**9, end_media_ns=2_100_000_000, probability=0.87,
                    engine="smart-turn-v3.2"),
    TurnSpeculative(**TURN, node_id=NODE, text="what is the weather", speech_start_media_ns=900_000_000,
                    speech_end_media_ns=2_100_000_000),
    TurnCommitted(**TURN, node_id=NODE, text="what is the weather", speech_start_media_ns=900_000_000,
                    speech_end_media_ns=2_100_000_000),
    TurnCancelled(**TURN, node_id=NODE, reason="barge_in"),
    BargeIn(**TURN, node_id=NODE, played_ms=640),
    FalseInterruption(**TURN, node_id=NODE, played_ms=640),
    TurnEnded(**TURN, node_id=NODE, outcome="completed"),
    StageStamped(**TURN, node_id=NODE, stage="llm_first_token", stage_wall_ns=WALL, service="responder",
                 engine="echo"),
    StageStamped(**TURN, node_id=NODE, stage="speech_end", stage_wall_ns=WALL, stage_media_ns=2_100_000_000,
                 service="ingest"),
    DeadLetter(source_topic="voice.vad", partition=3, offset=42, key=SESSION.encode(), value=b"\xff\x00{not json",
               headers=[("trace", b"\x01\x02")], error="not JSON", consumer="streams", wall_ns=WALL),
    DeadLetter(source_topic="voice.audio", partition=0, offset=0, key=None, value=None, error="empty message"),
    ReplyAudioChunk(**TURN, index=0, sample_rate=22050, pcm=b"\xff\xfe\x00\x01" * 40, text="It is",
                    speech_start_media_ns=900_000_000, speech_end_media_ns=2_100_000_000),
    ReplyText(**TURN, text="It is sunny."),
    ReplyEnded(**TURN, chunks=12),
    ReplyCancelled(**TURN),
    ReplyResumed(**TURN),
    ReplyStages(**TURN, stages={"turn_committed": WALL - 30_000_000, "llm_first_token": WALL - 10_000_000,
                                "tts_first_audio": WALL}),
    SpeechRecognised(**BASE, text="what is the wea", final=False, start_media_ns=10**9, end_media_ns=2 * 10**9),
    ConversationHistory(**BASE, turns=(
        HeardTurn(turn_id=f"{SESSION}-1", user_text="hello", sentences=(
            SpokenSentence(text="Hello there.", ms=820.0, complete=True),)),
        HeardTurn(turn_id=f"{SESSION}-2", user_text="tell me a story", played_ms=1300, sentences=(
            SpokenSentence(text="Once upon a time, a keeper counted ships.", ms=2610.0, complete=True),
            SpokenSentence(text="One winter a storm came in.", ms=400.0, complete=False))),
    )),
)

FRAME = AudioFrame(SESSION, 7, WALL, 140_000_000, 16000, bytes(range(256)) * 2 + b"\x00" * 128, flags=1)


def spec_of(event: Any) -> TopicSpec:
    """The one topic an event type belongs to."""
    (spec,) = [s for s in ALL_SPECS if type(event) in s.models]
    return spec


def by_topic() -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for event in EVENTS:
        out.setdefault(spec_of(event).name, []).append(event)
    return out
