"""Table tests of the pure turn-taking core: every transition, driven by scripted edge and ASR events."""

from __future__ import annotations

import pytest

from bench.endpointing_events import MS, WALL0_NS
from schemas.conversation import TranscriptFinal, TranscriptPartial
from schemas.edge import SpeechStarted
from schemas.telemetry import StageStamped
from schemas.topics import PLAYOUT, SESSIONS, TRANSCRIPTS, TURNS, VAD
from streams.turns.core import SOURCES
from streams.turns.policy import Policy
from tests.streams.turn_cases import CASES, SID, WALL, committed_at_ms, conv, run, turns


@pytest.mark.parametrize("name", list(CASES))
def test_transitions(name: str) -> None:
    script, policy, expected = CASES[name]
    _, decisions = run(script().events, policy)
    assert turns(decisions) == expected


@pytest.mark.parametrize(("text", "silence_ms"), [
    ("hello there", 500),  # neutral: the base threshold
    ("what time is it?", 300),  # sentence end: sooner
    ("I'm done.", 300),
    ("i would like the", 1200),  # continuation word: longer
    ("so um", 1200),
])
def test_threshold_follows_the_text(text: str, silence_ms: int) -> None:
    _, decisions = run(conv().say(500, 1500, text).wait(4000).events)
    assert committed_at_ms(decisions) == [silence_ms]


@pytest.mark.parametrize(("text", "p_complete", "silence_ms"), [
    ("hello there", None, 500),  # no score (scorer off, or late): the text rules
    ("hello there", 0.5, 500),  # unsure model: the text rules
    ("what time is it?", 0.5, 300),
    ("hello there", 0.8, 240),  # sure it is finished: 200 ms, so as soon as the VAD stop (240 ms) and score are in
    ("what time is it?", 0.95, 240),
    ("hello there", 0.3, 1500),  # mid-thought: up to the cap
    ("i would like the", 0.1, 1500),
    ("i would like the", 0.9, 500),  # the model and the text disagree: the neutral silence
    ("what time is it?", 0.1, 500),
])
def test_threshold_follows_the_model_and_the_text(text: str, p_complete: float | None, silence_ms: int) -> None:
    _, decisions = run(conv().say(500, 1500, text, p_complete=p_complete).wait(4000).events)
    assert committed_at_ms(decisions) == [silence_ms]


def test_model_thresholds_are_settings_and_capped() -> None:
    policy = Policy(confident_silence_ns=400 * MS, complete_probability=0.6, unfinished_silence_ns=3000 * MS,
                    max_silence_ns=1000 * MS)
    _, sure = run(conv().say(500, 1500, "hello there", p_complete=0.65).wait(4000).events, policy)
    _, unsure = run(conv().say(500, 1500, "hello there", p_complete=0.2).wait(4000).events, policy)
    assert (committed_at_ms(sure), committed_at_ms(unsure)) == ([400], [1000])


def test_hard_cap_bounds_every_threshold() -> None:
    policy = Policy(incomplete_silence_ns=3000 * MS, max_silence_ns=900 * MS)
    _, decisions = run(conv().say(500, 1500, "and then the").wait(5000).events, policy)
    assert committed_at_ms(decisions) == [900]


def test_commit_waits_for_a_late_final_transcript() -> None:
    c = conv().say(500, 1500, None).wait(2200)
    c.final(500, 1500, "late words")  # after the 500 ms threshold, within the ASR wait
    _, decisions = run(c.wait(3000).events)
    assert turns(decisions) == [("turn_committed", "1", "late words")]
    # When the final came, on the VAD clock (its last frame, 2180 ms; speech ended at 1500).
    assert committed_at_ms(decisions) == [680]


def test_final_before_its_speech_stopped_still_counts() -> None:
    """Topics are consumed independently: the ASR's final may be applied before the VAD's SpeechStopped."""
    events = conv().say(500, 1500, "hello").wait(2600).events
    stop = next(i for i, e in enumerate(events) if e.type == "speech_stopped")
    final = next(i for i, e in enumerate(events) if e.type == "transcript_final")
    events.insert(stop, events.pop(final))
    _, decisions = run(events)
    assert turns(decisions)[-1] == ("turn_committed", "1", "hello")


@pytest.mark.parametrize("name", [
    "speculative then withdrawn when the person resumes; the turn goes on under the next id",
    "barge-in during a reply: it pauses, keeping what was played; the words make it a real interruption",
    "two turns get consecutive ids",
])
def test_transcripts_read_ahead_of_the_vad(name: str) -> None:
    """A backlog is read round-robin across topics: the few transcripts come long before their VAD events."""
    script, policy, expected = CASES[name]
    events = script().events
    ahead = [e for e in events if e.type == "transcript_final"] + [e for e in events if e.type != "transcript_final"]
    _, decisions = run(ahead, policy)
    assert [row for row in turns(decisions) if row[0] != "turn_speculative"] == [
        row for row in expected if row[0] != "turn_speculative"]


@pytest.mark.parametrize("name", [
    "barge-in during a reply: it pauses, keeping what was played; the words make it a real interruption",
    "a cough over a reply: a barge-in, then a false interruption; nothing is cancelled (the reply resumes)",
    "reply played to the end",
])
def test_playout_read_ahead_of_the_vad(name: str) -> None:
    script, policy, expected = CASES[name]
    events = script().events
    playout = ("playout_started", "playout_interrupted", "playout_finished")
    ahead = [e for e in events if e.type in playout] + [e for e in events if e.type not in playout]
    _, decisions = run(ahead, policy, roundtrip=True)
    assert turns(decisions) == expected


def test_commit_stamps_the_turn_timeline() -> None:
    _, decisions = run(conv().say(500, 1500, "hello there").wait(2600).events)
    stamps = {d.stage: d for d in decisions if isinstance(d, StageStamped)}
    assert list(stamps) == ["speech_end", "vad_end", "asr_final", "turn_speculative", "turn_committed"]
    assert {d.turn_id for d in stamps.values()} == {f"{SID}-1"}
    assert stamps["speech_end"].stage_wall_ns == WALL0_NS + 1500 * MS
    assert stamps["vad_end"].stage_wall_ns == WALL0_NS + 1740 * MS  # the edge's 240 ms hangover
    assert stamps["asr_final"].stage_wall_ns == WALL0_NS + 1765 * MS  # fed the frame past it, +5 ms
    assert stamps["turn_committed"].stage_wall_ns == WALL  # the processor's own clock
    assert stamps["turn_committed"].stage_media_ns == 2000 * MS


def test_withdrawn_turn_gets_no_timeline_stamps() -> None:
    _, decisions = run(conv().say(500, 1500, "hello there").say(1900, 2600, "how are you").wait(3700).events)
    assert {d.turn_id for d in decisions if isinstance(d, StageStamped)} == {f"{SID}-2"}


def test_duplicate_events_change_nothing() -> None:
    events = conv().say(500, 1500, "i want to").say(1900, 2600, "go home").wait(3700).events
    once_state, once = run(events)
    doubled = [e for event in events for e in (event, event)]
    assert run(doubled) == (once_state, once)
    # Redelivery of the whole log after it was applied (a restart before the offsets were committed).
    again_state, again = run(events, state=once_state)
    assert (again_state, again) == (once_state, [])


def test_redelivery_from_an_earlier_offset_commits_each_turn_once() -> None:
    events = conv().say(500, 1500, "hello").wait(2500).say(4000, 5000, "goodbye").wait(6000).events
    cut = len(events) * 2 // 3
    mid_state, first = run(events[:cut], roundtrip=True)
    _, rest = run(events[cut // 2:], state=mid_state, roundtrip=True)  # overlap, as at-least-once delivers
    committed = [d.turn_id for d in first + rest if d.type == "turn_committed"]
    assert committed == [f"{SID}-1", f"{SID}-2"]
    assert [d.seq for d in first + rest] == list(range(len(first + rest)))  # outputs numbered once


def test_replaying_a_recorded_log_gives_the_same_decisions() -> None:
    """The log as it would be recorded from the topics (bytes through the codecs), replayed twice."""
    codecs = {"vad": VAD.codec, "asr": TRANSCRIPTS.codec, "playout": PLAYOUT.codec, "sessions": SESSIONS.codec}
    script = (conv().say(500, 1500, "tell me a story").wait(2200).playout_started(f"{SID}-1").wait(3000)
              .say(3000, 3200, "", barge_in=(f"{SID}-1", 740)).wait(4500).say(5000, 5400, "and so")
              .say(5800, 6600, "what happened?").wait(8000).end())
    log = [(SOURCES[type(e)], codecs[SOURCES[type(e)]].encode(e)) for e in script.events]
    replays = [run((codecs[src].decode(raw) for src, raw in log), roundtrip=True)[1] for _ in range(2)]
    assert replays[0] == replays[1]
    assert [TURNS.codec.decode(TURNS.codec.encode(d)) for d in replays[0] if d.type != "stage_stamped"] == [
        d for d in replays[0] if d.type != "stage_stamped"]
    assert turns(replays[0])[-1] == ("turn_ended", "2", "cancelled")  # the session ended before its reply


def test_policy_from_settings() -> None:
    from streams.turns.settings import TurnSettings

    policy = Policy.from_settings(TurnSettings(turn_silence_ms=400, turn_continuation_words="and, Well"))
    assert policy.silence_ns == 400 * MS
    assert policy.ending("oh well") == "incomplete" and policy.ending("the") == "neutral"
    assert Policy.from_settings(TurnSettings()) == Policy()
    policy = Policy.from_settings(TurnSettings(turn_complete_probability=0.7, turn_incomplete_probability=0.2,
                                               turn_confident_silence_ms=150, turn_unfinished_silence_ms=1400))
    assert (policy.complete_probability, policy.incomplete_probability) == (0.7, 0.2)
    assert (policy.confident_silence_ns, policy.unfinished_silence_ns) == (150 * MS, 1400 * MS)


def test_final_stamped_before_the_partials_it_supersedes_still_commits() -> None:
    """The ASR stamps partials with the audio fed (past the speech end) and, before the contract, stamped the
    final with the speech end: a final at 1.50 s after a partial at 1.70 s. Its words must not be lost."""
    c = conv().say(500, 1500, None)
    base = {"session_id": SID, "wall_ns": WALL0_NS, "start_media_ns": 500 * MS, "engine": "script"}
    c.events.append(TranscriptPartial(**base, seq=1, media_ns=1700 * MS, end_media_ns=1700 * MS, text="hello"))
    c.events.append(TranscriptFinal(**base, seq=2, media_ns=1500 * MS, end_media_ns=1500 * MS, text="hello there"))
    _, decisions = run(c.wait(2600).events)
    assert turns(decisions)[-1] == ("turn_committed", "1", "hello there")
    assert committed_at_ms(decisions) == [500]


def test_a_final_redelivered_after_its_turn_was_committed_opens_nothing() -> None:
    events = conv().say(500, 1500, "hello there").wait(2600).events
    final = next(e for e in events if e.type == "transcript_final")
    state, decisions = run(events)
    again, more = run([final, *conv().wait(0).events], state=state)
    assert more == [] and again == state
    assert turns(decisions)[-1] == ("turn_committed", "1", "hello there")


def test_a_pause_is_judged_when_its_late_words_come() -> None:
    """A loaded recogniser: the first utterance's final comes after the person spoke again. The 1 s pause was
    the turn's end, as it would have been with the words on time: two turns, not one that never ends."""
    c = conv().say(500, 1500, None).say(2500, 3500, None)
    c.final(500, 1500, "the first one")
    c.final(2500, 3500, "and the second")
    _, decisions = run(c.wait(6000).events)
    assert [row for row in turns(decisions) if row[0] == "turn_committed"] == [
        ("turn_committed", "1", "the first one"), ("turn_committed", "2", "and the second")]


def test_a_short_pause_with_late_words_stays_inside_the_turn() -> None:
    c = conv().say(500, 1500, None).say(1800, 2600, None)
    c.final(500, 1500, "i want to")
    c.final(1800, 2600, "go home")
    _, decisions = run(c.wait(5000).events)
    assert [row for row in turns(decisions) if row[0] == "turn_committed"] == [
        ("turn_committed", "1", "i want to go home")]


def test_a_final_later_than_the_asr_wait_reopens_nothing() -> None:
    """The turn was ended for want of words (asr_timeout); its final, when it finally comes, is too late."""
    c = conv().say(500, 1500, None).wait(12000)
    c.final(500, 1500, "late words")
    _, decisions = run(c.wait(13000).events)
    assert turns(decisions) == [("turn_cancelled", "1", "asr_timeout"), ("turn_ended", "1", "cancelled")]


def test_words_due_when_the_session_ends_are_still_committed() -> None:
    """The person hangs up while the recogniser is still on their last utterance: the conversation log keeps
    the turn (committed once its final comes), and its reply is cancelled with the session."""
    c = conv().say(500, 1500, None).wait(1800).end()
    c.final(500, 1500, "goodbye then")
    _, decisions = run(c.events)
    assert turns(decisions) == [("turn_committed", "1", "goodbye then"), ("turn_cancelled", "1", "session_ended"),
                                ("turn_ended", "1", "cancelled")]  # no speculation: the words came at the end


def test_an_utterance_cut_off_by_the_session_end_is_not_a_turn() -> None:
    c = conv().say(500, 1500, "hello there").wait(2600)
    c.t_ms = 3000
    c.events.append(SpeechStarted(session_id=SID, seq=900, media_ns=3060 * MS, wall_ns=WALL0_NS, node_id="edge-1",
                                  speech_start_media_ns=3000 * MS, speech_start_wall_ns=WALL0_NS, probability=0.9))
    c.t_ms = 3400
    _, decisions = run(c.end().events)
    assert [row for row in turns(decisions) if row[0] == "turn_committed"] == [("turn_committed", "1", "hello there")]
    assert turns(decisions)[-1] == ("turn_ended", "1", "cancelled")  # its reply, with the session


def test_a_past_pause_ends_when_the_next_speech_was_announced_not_where_it_is_dated() -> None:
    """The VAD dates a start back to where the speech began but says so only once it is sure (60 ms and more
    later). With the words on time the core commits before the announcement, so with them late it must too."""
    late, on_time = conv().say(500, 1500, None), conv().say(500, 1500, "in a group")
    for c in (late, on_time):
        c.say(1960, 2600, None)  # 460 ms after the first speech (500 needed), announced 60 ms after that
    late.final(500, 1500, "in a group")
    for c in (late, on_time):
        c.final(1960, 2600, "we met")
    committed = [[r for r in turns(run(c.wait(5000).events)[1]) if r[0] == "turn_committed"] for c in (late, on_time)]
    assert committed[0] == committed[1] == [("turn_committed", "1", "in a group"), ("turn_committed", "2", "we met")]


def test_the_reply_in_flight_is_cancelled_when_the_person_leaves_even_with_words_due() -> None:
    c = conv().say(500, 1500, "tell me a story").wait(2200).playout_started(f"{SID}-1").wait(3000)
    c.say(3000, 3800, None).wait(3900).end()  # hangs up; the recogniser has not finished "bye"
    _, decisions = run(c.events)
    assert turns(decisions)[-2:] == [("turn_cancelled", "1", "session_ended"), ("turn_ended", "1", "cancelled")]
    c.final(3000, 3800, "bye")
    _, decisions = run(c.events)
    assert [r for r in turns(decisions) if r[0] == "turn_committed"][-1] == ("turn_committed", "2", "bye")


def test_a_lost_edge_ends_the_session_as_its_own_end_would() -> None:
    # The signaling front's SessionEnded for a worker that died: no media time (0), a seq past the worker's.
    from ingest.front import SEQ_MARGIN
    from schemas.edge import SessionEnded

    script = conv().say(500, 1500, "hello there").wait(1800)
    last_seq = max(e.seq for e in script.events if getattr(e, "node_id", None))
    lost = SessionEnded(session_id=SID, seq=last_seq + SEQ_MARGIN, media_ns=0, wall_ns=WALL, node_id="edge-1-w1",
                        reason="edge_lost")
    state, decisions = run([*script.events, lost])
    _, own = run(conv().say(500, 1500, "hello there").wait(1800).end().events)
    assert state.ended and turns(decisions) == turns(own) == [
        ("turn_speculative", "1", "hello there"), ("turn_committed", "1", "hello there"),
        ("turn_cancelled", "1", "session_ended"), ("turn_ended", "1", "cancelled")]
