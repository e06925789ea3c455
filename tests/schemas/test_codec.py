"""Every event through its topic's codec; what a codec must refuse; reading old versions as the current one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.codec import DecodeError
from schemas.conversation import TranscriptFinal
from schemas.edge import SessionEnded, SpeechStopped
from schemas.topics import ALL_SPECS, REGISTRY, REPLIES, SESSIONS, TRANSCRIPTS, TURNS, VAD, replies_topic, spec_for
from tests.schemas.samples import BASE, EVENTS, NODE, spec_of

JSON_MODELS = {m for s in ALL_SPECS if s.codec is not None for m in s.models if hasattr(m, "model_fields")}


def test_every_model_of_every_topic_has_a_sample():
    assert {type(e) for e in EVENTS} == JSON_MODELS


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_round_trip_through_the_topic_codec(event):
    codec = spec_of(event).codec
    data = codec.encode(event)
    back = codec.decode(data)
    assert back == event and type(back) is type(event)
    assert json.loads(data)["type"] == event.type
    assert json.loads(data)["schema_version"] == event.schema_version


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_events_are_frozen(event):
    with pytest.raises(ValidationError):
        event.seq = 99  # type: ignore[misc]


def _payload(event: Any, **changes: Any) -> bytes:
    return json.dumps({**json.loads(event.model_dump_json()), **changes}).encode()


STOPPED = next(e for e in EVENTS if isinstance(e, SpeechStopped))
COMMITTED = next(e for e in EVENTS if e.type == "turn_committed")

BAD = [
    ("empty", VAD, b"", "empty message"),
    ("none", VAD, None, "empty message"),
    ("garbage bytes", VAD, b"\xff\xfe\x00garbage", "not JSON"),
    ("not an object", VAD, b"[1, 2, 3]", "expected a JSON object"),
    ("deeply nested", VAD, b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ("truncated JSON", VAD, _payload(STOPPED)[:40], "not JSON"),
    ("unknown type", VAD, _payload(STOPPED, type="speech_paused"), "unknown event type 'speech_paused'"),
    ("type of another topic", VAD, _payload(COMMITTED), "unknown event type 'turn_committed'"),
    ("type is not a string", VAD, _payload(STOPPED, type=["speech_stopped"]), "unknown event type"),
    ("no type", VAD, b'{"session_id": "x"}', "unknown event type None"),
    ("future version", VAD, _payload(STOPPED, schema_version=3), "newer than this build reads (2)"),
    ("version zero", VAD, _payload(STOPPED, schema_version=0), "positive integer"),
    ("version not a number", VAD, _payload(STOPPED, schema_version="2"), "positive integer"),
    ("missing field", TURNS, _payload(COMMITTED, text=None), "text"),
    ("extra field", TURNS, _payload(COMMITTED, colour="red"), "colour"),
    ("bad session id", TURNS, _payload(COMMITTED, session_id="ABC"), "session_id"),
    ("negative time", TURNS, _payload(COMMITTED, media_ns=-1), "media_ns"),
    ("bad enum", TURNS, _payload(next(e for e in EVENTS if e.type == "turn_cancelled"), reason="bored"), "reason"),
    ("v1 without the old fields", TRANSCRIPTS, json.dumps({**BASE, "type": "transcript_final",
                                                          "schema_version": 1, "text": "hi"}).encode(),
     "cannot upcast"),
]


@pytest.mark.parametrize(("spec", "data", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_codec_refuses_with_a_clear_error(spec, data, message):
    with pytest.raises(DecodeError) as caught:
        spec.codec.decode(data)
    assert message in str(caught.value)


V1_STOPPED = {**BASE, "type": "speech_stopped", "schema_version": 1, "node_id": NODE,
              "speech_start_media_ns": 1_000_000_000, "speech_end_media_ns": 2_100_000_000}
V1_FINAL = {**BASE, "type": "transcript_final", "schema_version": 1, "text": "hello there", "start_ms": 1000,
            "end_ms": 2100}

UPCASTS = [
    ("speech_stopped v1", VAD, V1_STOPPED,
     SpeechStopped(**BASE, node_id=NODE, speech_start_media_ns=1_000_000_000, speech_end_media_ns=2_100_000_000,
                   speech_end_wall_ns=BASE["wall_ns"] - 240_000_000)),
    ("speech_stopped without schema_version is v1", VAD, {k: v for k, v in V1_STOPPED.items() if k != "schema_version"},
     SpeechStopped(**BASE, node_id=NODE, speech_start_media_ns=1_000_000_000, speech_end_media_ns=2_100_000_000,
                   speech_end_wall_ns=BASE["wall_ns"] - 240_000_000)),
    ("transcript_final v1", TRANSCRIPTS, V1_FINAL,
     TranscriptFinal(**BASE, text="hello there", start_media_ns=1_000_000_000, end_media_ns=2_100_000_000)),
    ("session_ended v1", SESSIONS, {**BASE, "type": "session_ended", "schema_version": 1, "node_id": NODE,
                                    "reason": "deleted", "frames_in": 10},
     SessionEnded(**BASE, node_id=NODE, reason="deleted", frames_in=10)),
]


@pytest.mark.parametrize(("spec", "old", "current"), [u[1:] for u in UPCASTS], ids=[u[0] for u in UPCASTS])
def test_an_old_version_is_read_as_the_current_one(spec, old, current):
    event = spec.codec.decode(json.dumps(old).encode())
    assert event == current
    assert event.schema_version == type(current).VERSION == 2


def test_a_model_cannot_be_made_at_an_old_version():
    # Old payloads go through the upcaster; constructing one directly is a programming error.
    with pytest.raises(ValidationError, match="not the current 2"):
        SpeechStopped.model_validate({**V1_STOPPED, "speech_end_wall_ns": 0})


@pytest.mark.parametrize("name", [s.name for s in REGISTRY] + [replies_topic("edge-7")])
def test_registry_resolves_every_topic(name):
    assert spec_for(name).name in (name, REPLIES.name)


def test_unknown_topic_is_refused():
    with pytest.raises(KeyError, match="not a voicebus topic"):
        spec_for("voice.nope")


def test_session_keyed_topics_are_co_partitioned():
    keyed = [s for s in ALL_SPECS if s.key == "session_id"]
    assert len({s.partitions for s in keyed}) == 1, [(s.name, s.partitions) for s in keyed]
