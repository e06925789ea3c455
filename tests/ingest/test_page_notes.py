"""What the edge works out for its page: sentence offsets in a reply, and a turn's latency breakdown."""

from __future__ import annotations

import pytest

from ingest.page import SEGMENTS, PageNotes, segments

MS = 1_000_000
T0 = 1_700_000_000_000 * MS


def stages(**ms: float) -> dict[str, int]:
    return {stage: T0 + int(at * MS) for stage, at in ms.items()}


FULL = dict(speech_end=0, turn_committed=300, asr_final=320, llm_first_token=500, tts_first_audio=560,
            reply_first_at_edge=575, reply_first_sent=590)


@pytest.mark.parametrize(("times", "expected"), [
    # The ASR finished after the commit: recognition counts from the commit, the model from the words.
    (FULL, dict(endpointing=300, recognition=20, model=240, platform=15, playout=15)),
    # The words were there before the commit: no recognition on the critical path.
    ({**FULL, "asr_final": 250}, dict(endpointing=300, recognition=0, model=260, platform=15, playout=15)),
    # A speculative reply: the first token came before the commit; only the TTS after it counts.
    ({**FULL, "llm_first_token": 200, "tts_first_audio": 310},
     dict(endpointing=300, recognition=20, model=0, platform=255, playout=15)),
    # The responder's stages did not come: no model time, and no platform time without it.
    ({k: v for k, v in FULL.items() if k not in ("llm_first_token", "tts_first_audio")},
     dict(endpointing=300, recognition=20, model=None, platform=None, playout=15)),
])
def test_segments_add_up_to_voice_to_voice(times, expected):
    parts = segments(stages(**times))
    assert parts == expected
    if None not in parts.values():
        assert sum(parts[s] for s in SEGMENTS) == pytest.approx(times["reply_first_sent"] - times["speech_end"])


def test_the_latency_of_a_turn_uses_its_own_speech_end_and_the_last_final_words_of_its_speech():
    notes = PageNotes()
    t = stages(**FULL)
    notes.speech_stopped(1_000 * MS, T0 - 5_000 * MS)  # an earlier utterance
    notes.speech_stopped(4_000 * MS, t["speech_end"])
    notes.final_words(500 * MS, 1_000 * MS, T0 - 4_000 * MS)  # words of the earlier utterance
    notes.final_words(2_000 * MS, 3_000 * MS, t["asr_final"] - 80 * MS)  # the turn's speech, in two utterances
    notes.final_words(3_200 * MS, 4_000 * MS, t["asr_final"])
    notes.stages("turn-1", {k: t[k] for k in ("turn_committed", "llm_first_token", "tts_first_audio")})
    notes.stamp("turn-1", "reply_first_at_edge", t["reply_first_at_edge"])
    notes.stamp("turn-1", "reply_first_sent", t["reply_first_sent"])
    told = notes.latency("turn-1", (2_000 * MS, 4_000 * MS))
    assert told["ms"] == 590
    assert told["segments_ms"] == dict(endpointing=300, recognition=20, model=240, platform=15, playout=15)
    assert list(told["stages_ms"]) == list(FULL) and told["stages_ms"]["asr_final"] == 320


def test_a_turn_whose_speech_end_the_edge_did_not_hear_has_no_voice_to_voice():
    notes = PageNotes()
    notes.stamp("turn-1", "reply_first_sent", T0)
    told = notes.latency("turn-1", (1_230 * MS, 3_450 * MS))
    assert told["ms"] is None and told["stages_ms"] == {} and told["segments_ms"]["endpointing"] is None


def test_sentences_start_where_their_audio_starts_and_repeated_chunks_count_once():
    notes = PageNotes()
    told = [notes.caption("t", i, ms, text) for i, ms, text in [
        (0, 200, "Hello there."), (1, 200, ""), (1, 200, ""), (2, 120, ""), (3, 200, "How are you?"),
        (0, 200, "Hello there."), (4, 200, ""),
    ]]
    assert [m and (m["text"], m["at_ms"]) for m in told] == [
        ("Hello there.", 0), None, None, None, ("How are you?", 520), None, None]
