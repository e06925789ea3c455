"""How `voicebus simulate` / `bench` pair what a caller said with the replies it heard (pure: no network).

The client knows where its speech is (microphone frames x 20 ms = edge media time) and what the edge told it on
the data channel (reply_started / reply_ended with turn id and speech span); it pairs by span, never by order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.simulate import Script, render_table, summarize
from bench.utterances import Utterance, explain, label_span, playing, recording, replies_of, settle
from ingest.client import Hearing, Told
from tests.conftest import SPEECH


def utterance(start_ms: int = 1000, end_ms: int = 11000, end_at: float = 100.0) -> Utterance:
    return Utterance("s" * 32, 0, "jfk.wav", start_ms // 20, start_ms, end_ms, end_at)


def client(told: list[tuple[float, dict]], heard: list[tuple[float, bool]]) -> SimpleNamespace:
    hearing = Hearing()
    for at, loud in heard:
        hearing.add(at, loud)
    return SimpleNamespace(told=[Told(at, m) for at, m in told], hearing=hearing)


def frames(start: float, end: float, loud: bool) -> list[tuple[float, bool]]:
    n = round((end - start) / 0.02)
    return [(start + i * 0.02, loud) for i in range(n)]


def started(turn: str, start_ms: int, end_ms: int) -> dict:
    return {"type": "reply_started", "turn_id": turn, "speech_start_ms": start_ms, "speech_end_ms": end_ms}


def ended(turn: str, interrupted: bool = False) -> dict:
    return {"type": "reply_ended", "turn_id": turn, "played_ms": 400, "interrupted": interrupted}


def speech(start_ms: int, end_ms: int) -> dict:
    return {"type": "speech", "speaking": False, "speech_start_ms": start_ms, "speech_end_ms": end_ms}


def test_an_utterance_split_in_two_turns_is_answered_by_the_reply_to_the_last_one() -> None:
    u = utterance(end_at=100.0)
    c = client(
        told=[(95.0, speech(990, 3020)), (96.0, started("t-1", 990, 3020)), (96.5, ended("t-1", interrupted=True)),
              (99.0, speech(5000, 10980)), (100.8, started("t-2", 5000, 10980))],
        heard=frames(95.9, 96.0, False) + frames(96.0, 96.5, True) + frames(96.5, 100.8, False)
        + frames(100.8, 100.86, False) + frames(100.86, 101.5, True))
    assert settle(u, c)
    assert u.turns == ["t-1", "t-2"] and u.answer_turn == "t-2"
    # From the capture of the speech's last frame to the first loud frame of t-2's reply, not of t-1's.
    assert u.client_v2v_ms == pytest.approx(860, abs=1)


def test_the_reply_to_the_first_part_alone_does_not_answer_the_utterance() -> None:
    u = utterance()
    c = client(told=[(96.0, started("t-1", 990, 3020))], heard=frames(96.0, 97.0, True))
    assert not settle(u, c)
    assert u.turns == ["t-1"] and not u.answered


def test_audio_of_the_previous_reply_is_not_taken_for_the_next_one() -> None:
    u = utterance(start_ms=5000, end_ms=7000, end_at=100.0)
    # The previous reply (another utterance's) is loud until it ends; the new one starts quiet. Its audio may
    # arrive a little before the message, but never before the previous reply ended.
    c = client(told=[(99.0, started("t-0", 100, 900)), (101.0, ended("t-0")), (101.02, started("t-1", 4990, 7010))],
               heard=frames(99.0, 101.0, True) + frames(101.0, 101.1, False) + frames(101.1, 102.0, True))
    assert settle(u, c)
    assert u.answer_turn == "t-1"
    assert u.reply_onset == pytest.approx(101.1)


def test_a_reply_paused_by_a_cough_and_resumed_is_not_an_interrupted_one() -> None:
    u = utterance(end_at=100.0)
    told = [(99.0, speech(990, 10990)), (100.5, started("t-1", 990, 10990)),
            (101.0, {"type": "reply_paused", "turn_id": "t-1", "played_ms": 500})]
    c = client(told=told, heard=frames(100.5, 101.0, True) + frames(101.0, 102.0, False))
    assert settle(u, c) and u.answer_turn == "t-1"
    reply = replies_of(c.told)["t-1"]
    assert reply.paused and playing(c)  # silent, but it may resume: the caller waits
    c.told += [Told(102.0, {"type": "reply_resumed", "turn_id": "t-1", "played_ms": 500}),
               Told(104.0, ended("t-1"))]
    reply = replies_of(c.told)["t-1"]
    assert (reply.paused_ms, reply.resumed, reply.interrupted, reply.paused) == ([500], 1, False, False)
    assert not playing(c)
    settle(u, c)
    assert u.interrupted_ms is None


def test_a_reply_to_speech_outside_the_utterance_is_not_paired_with_it() -> None:
    u = utterance(start_ms=20_000, end_ms=22_000)
    c = client(told=[(96.0, started("t-1", 990, 3020))], heard=frames(96.0, 97.0, True))
    assert not settle(u, c)
    assert u.turns == []


@pytest.mark.parametrize(("told", "says"), [
    ([], "edge heard no speech"),
    ([(99.0, speech(990, 10990))], "no reply within 20 s"),
    ([(99.0, speech(990, 10990)), (101.0, {"type": "reply_cancelled", "turn_id": "t-1",
                                           "speech_start_ms": 990, "speech_end_ms": 10990})], "cancelled"),
    ([(95.0, speech(990, 3020)), (96.0, started("t-1", 990, 3020))], "the edge heard no speech after 2.0 s"),
])
def test_every_unanswered_utterance_is_explained(told: list, says: str) -> None:
    u = utterance()
    c = client(told=told, heard=frames(95.0, 97.0, False))
    settle(u, c)
    assert not u.answered
    assert says in explain(u, c, 20.0)


def test_server_rows_are_paired_by_turn_id_and_unpaired_turns_are_shown() -> None:
    u = utterance()
    c = client(told=[(99.0, speech(990, 10990)), (100.5, started("t-2", 990, 10990))],
               heard=frames(100.5, 101.0, True))
    assert settle(u, c)
    row = {"session_id": "s" * 32, "outcome": "completed", "endpointing_ms": 0.0, "model_ms": 0.0,
           "platform_overhead_ms": 0.0, "barge_in_reaction_ms": None}
    rows = {"t-9": row | {"turn_id": "t-9", "voice_to_voice_ms": 9999.0},  # ClickHouse's first row: not ours
            "t-2": row | {"turn_id": "t-2", "voice_to_voice_ms": 480.0}}
    assert summarize([u], rows)["voice_to_voice_ms_p50"] == 480.0
    table = render_table([u], rows)
    assert "480" in table.splitlines()[1] and "9999" not in table.splitlines()[1]
    assert "server turn t-9" in table


def test_a_script_with_a_seed_is_the_same_every_run_and_differs_between_callers() -> None:
    audio = [SPEECH / "misc" / "goforward.wav", SPEECH / "misc" / "jfk.wav", SPEECH / "librivox" / "x.wav"]
    script = Script(audio, 5, pause_s=1.0, reply_timeout_s=20, barge_in_every=0, pause_max_s=2.0, seed=7)
    assert script.plan(0) == script.plan(0)
    assert script.plan(0) != script.plan(1)
    assert all(1.0 <= pause <= 2.0 for _, pause in script.plan(0) + script.plan(1))


@pytest.fixture
def speech_data() -> None:
    if not SPEECH.is_dir():
        pytest.skip(f"speech data not found at {SPEECH}")


def test_where_the_speech_ends_in_a_recording(speech_data: None) -> None:
    libri = SPEECH / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"
    assert label_span(libri.with_suffix(".lab")) == pytest.approx((0.235689, 6.761690))
    rec = recording(libri)
    assert (rec.source, rec.speech_end_s) == ("labels", pytest.approx(6.761690))
    # No labels: found in the audio. jfk.wav's last word ends near 10.6 s; the noise after it is not speech.
    jfk = recording(SPEECH / "misc" / "jfk.wav")
    assert 10.3 <= jfk.speech_end_s <= 10.8, jfk
    go = recording(SPEECH / "misc" / "goforward.wav")  # "... meters": the final "s" is speech too
    assert 2.3 <= go.speech_end_s <= 2.45, go
