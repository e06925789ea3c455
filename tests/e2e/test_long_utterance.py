"""A long utterance with pauses (jfk.wav, 11 s, four phrases) through the whole platform: the platform may make
several turns of it; the client pairs each reply with it by the turn's speech span and reports it answered once
the reply to the turn that covers its end is heard, not as an unanswered utterance. The next utterance gets its
own turn.

The edge's echo guard is off here (VOICEBUS_AEC=false): this client plays nothing back into its microphone, and
the guard took the person's speech in the first second of a reply for the reply's echo, so the rest of the
recording was never heard as speech (ingest/echo_guard.py: a stretch of digital silence in the played audio
makes its normalised correlation blow up). That is the edge's matter, not the pairing's."""

from __future__ import annotations

import pytest

from bench.simulate import Script, converse, server_turns
from tests.conftest import SPEECH
from tests.e2e.conftest import Platform

pytestmark = pytest.mark.e2e

JFK, GO_FORWARD = SPEECH / "misc" / "jfk.wav", SPEECH / "misc" / "goforward.wav"


@pytest.fixture
def platform_env() -> dict[str, str]:
    return {"VOICEBUS_AEC": "false"}


async def test_an_utterance_split_into_turns_is_answered_by_the_reply_to_its_last_turn(platform: Platform) -> None:
    script = Script([JFK, GO_FORWARD], turns=2, pause_s=0.5, reply_timeout_s=30.0, barge_in_every=0)
    jfk, go = await converse(platform.url, "", script, 0, lambda u: None)

    assert jfk.answered, jfk.note
    assert jfk.answer_turn == jfk.turns[-1] and jfk.answer_span_ms is not None
    assert jfk.answer_span_ms[1] >= jfk.speech_end_ms - 600  # the answering turn covers the end of the speech
    assert jfk.reply_onset is not None and jfk.reply_onset > jfk.speech_end_at
    assert go.answered and go.turns == [go.answer_turn] and go.answer_turn not in jfk.turns, (go.note, jfk.turns)
    print(f"\n[e2e] jfk.wav became {len(jfk.turns)} turn(s); reply {jfk.client_v2v_ms:.0f} ms after its end")

    rows = await server_turns([jfk.session_id], {*jfk.turns, *go.turns}, timeout_s=30)
    assert {*jfk.turns, *go.turns} <= set(rows), sorted(rows)  # every turn heard is in ClickHouse by its id
