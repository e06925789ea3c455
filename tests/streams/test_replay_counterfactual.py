"""Counterfactual replay (streams.turns.replay), pure: scripted sessions through the core under two settings, and
what the comparison says changed. The replay against the real broker and the live processor is in
test_turn_worker.py."""

from __future__ import annotations

import json

import pytest

from bench.endpointing_events import Conversation
from streams.turns.core import Context, initial, step
from streams.turns.replay import (
    Turn,
    compare,
    fold,
    outcome,
    percentile,
    policy_for,
    read_settings_file,
    summary,
)
from streams.turns.replay_cli import as_json, as_text, run, since_ms
from streams.turns.replay_source import decoded, encoded, merge
from tests.streams.replay import fixture_name, fixture_paths, load_fixture
from tests.streams.replay.test_replay import transcripts_behind

S = "a" * 32
MS = 1_000_000


def pause_then_more() -> Conversation:
    """Two utterances 700 ms apart, no sentence end: two turns at the 500 ms default silence, one at 1000 ms."""
    return Conversation(S).say(500, 1500, "i want to go").say(2200, 3000, "somewhere warm").wait(5000)


def test_the_current_settings_give_the_core_s_own_decisions() -> None:
    events = pause_then_more().events
    run = outcome(events, policy_for())
    assert [d for _, d in fold(events, policy_for()) if d.type != "stage_stamped"] == list(run.decisions)
    assert [(t.text, t.committed_ns // MS, t.endpointing_ms, t.premature) for t in run.turns] == [
        ("i want to go", 2000, 500.0, True),  # the person went on 200 ms after this commit
        ("somewhere warm", 3500, 500.0, False),
    ]


@pytest.mark.parametrize(("given", "kinds", "turns"), [
    ({"VOICEBUS_TURN_SILENCE_MS": "1000"}, ["merged"], 1),
    ({"turn_silence_ms": "400"}, ["earlier", "earlier"], 2),
    ({"VOICEBUS_TURN_SILENCE_MS": "500"}, ["same", "same"], 2),
])
def test_what_other_settings_change(given: dict[str, str], kinds: list[str], turns: int) -> None:
    events = pause_then_more().events
    before, after = outcome(events, policy_for()), outcome(events, policy_for(given))
    changes = compare(before.turns, after.turns)
    assert [c.kind for c in changes] == kinds and len(after.turns) == turns
    if kinds[0] == "earlier":
        assert [c.commit_delta_ms for c in changes] == [-100.0, -100.0]
    if kinds == ["merged"]:
        assert [t.text for t in changes[0].before] == ["i want to go", "somewhere warm"]
        assert [t.text for t in changes[0].after] == ["i want to go somewhere warm"]
        assert summary([after], changes).premature == 0 and summary([before]).premature == 1


def turn(start_ms: int, end_ms: int, commit_ms: int, text: str = "x") -> Turn:
    return Turn(f"t{start_ms}", text, start_ms * MS, end_ms * MS, commit_ms * MS, False, False, False)


def test_compare_groups_turns_by_the_speech_they_cover() -> None:
    a, b, c = turn(0, 1000, 1500), turn(2000, 3000, 3500), turn(5000, 6000, 6500)
    split = [turn(0, 400, 900), turn(600, 1000, 1500)]
    changes = compare([a, b, c], [*split, turn(2000, 3000, 3500, "y"), turn(8000, 9000, 9500)])
    assert [(ch.kind, len(ch.before), len(ch.after)) for ch in changes] == [
        ("split", 1, 2), ("text", 1, 1), ("dropped", 1, 0), ("added", 0, 1)]


def test_settings_by_name_and_from_a_file() -> None:
    assert policy_for({"VOICEBUS_TURN_SILENCE_MS": "300"}).silence_ns == 300 * MS
    with pytest.raises(ValueError, match="not a turn processor setting"):
        policy_for({"VOICEBUS_TURN_SILENCE": "300"})
    with pytest.raises(ValueError):
        policy_for({"VOICEBUS_TURN_SILENCE_MS": "soon"})
    assert read_settings_file("# tuned\nVOICEBUS_TURN_SILENCE_MS=300\n\nexport VOICEBUS_TURN_SPECULATIVE_MS='150'") \
        == {"VOICEBUS_TURN_SILENCE_MS": "300", "VOICEBUS_TURN_SPECULATIVE_MS": "150"}
    with pytest.raises(ValueError):
        read_settings_file("VOICEBUS_TURN_SILENCE_MS")


def test_since_and_percentiles() -> None:
    assert since_ms("1h", 10_000.0) == 6_400_000 and since_ms("30s", 100.0) == 70_000
    with pytest.raises(ValueError):
        since_ms("an hour", 0.0)
    assert percentile([], 50) is None and percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 20.0], 95) == pytest.approx(19.5)


def test_merge_keeps_each_partition_s_order() -> None:
    events = pause_then_more().events
    vad = [(i, S, e) for i, e in enumerate(events) if "transcript" not in e.type]
    asr = [(0, S, e) for e in events if "transcript" in e.type]  # all stamped early: read first, still in order
    merged = merge([vad, asr])[S]
    assert [e for e in merged if "transcript" in e.type] == [e for _, _, e in asr]
    assert [e for e in merged if "transcript" not in e.type] == [e for _, _, e in vad]
    assert decoded(encoded(events)) == events


def test_the_command_s_outputs() -> None:
    given = {"VOICEBUS_TURN_SILENCE_MS": "1000"}
    result = run({S: encoded(pause_then_more().events)}, given)
    text = as_text(result, given)
    assert "merged" in text and "endpointing p50" in text and "500 ms" in text and "1000 ms" in text
    doc = json.loads(json.dumps(as_json(result, given)))
    assert doc["summary"]["current"]["turns"] == 2 and doc["summary"]["given"]["turns"] == 1
    assert doc["summary"]["given"]["changes"] == {"merged": 1}
    assert [c["kind"] for c in doc["sessions"][0]["changes"]] == ["merged"]


def test_the_plot(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from streams.turns.replay_cli import plot

    plot(run({S: encoded(pause_then_more().events)}, {"VOICEBUS_TURN_SILENCE_MS": "1000"}), tmp_path / "replay.png")
    assert (tmp_path / "replay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def stepped(events: list, policy) -> list:
    """Every event stepped, the plain way."""
    state, out = initial(events[0].session_id), []
    for i, e in enumerate(events):
        state, decisions = step(state, e, Context(policy, 0))
        out.extend((i, d) for d in decisions)
    return out


FIXTURES = {fixture_name(p): p for p in fixture_paths()}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_the_fold_decides_what_stepping_every_event_decides(name: str) -> None:
    """fold skips the heartbeats that would change nothing but the clock: the same decisions, at the same
    events, for real recordings in their recorded order and with the transcripts read late, under two policies."""
    events = [e for _, e in load_fixture(FIXTURES[name]).events]
    late = transcripts_behind(1000)(events)
    for policy in (policy_for(), policy_for({"VOICEBUS_TURN_SILENCE_MS": "300",
                                             "VOICEBUS_TURN_FALSE_INTERRUPTION_MS": "400"})):
        for order in (events, late):
            assert fold(order, policy) == stepped(order, policy)


def test_heartbeats_decode_as_the_codec_decodes_them() -> None:
    from schemas.topics import VAD
    from schemas.upcast import DecodeError
    from streams.turns.replay_source import decode

    for e in pause_then_more().events[:40]:
        if e.type.startswith(("vad", "speech")):
            raw = VAD.codec.encode(e)
            assert decode(VAD.codec, raw, e.type.encode()) == VAD.codec.decode(raw) == e
    v1 = json.dumps({"type": "vad_progress", "schema_version": 1, "session_id": S, "seq": 1, "media_ns": 0,
                     "wall_ns": 0, "node_id": "edge-1", "speaking": False, "probability": 0.7}).encode()
    assert decode(VAD.codec, v1, b"vad_progress").voiced is True  # through the codec's upcaster
    with pytest.raises(DecodeError):
        decode(VAD.codec, b"{not json", b"vad_progress")


def test_a_recorded_barge_in_counts_for_the_turn_that_covers_the_speech_whose_reply_it_cut() -> None:
    story = (Conversation(S).say(500, 1500, "tell me a story").wait(2200).playout_started(f"{S}-1").wait(3000)
             .say(3000, 3800, "stop please", barge_in=(f"{S}-1", 740)).wait(8000))
    run = outcome(story.events, policy_for())
    assert [(t.text, t.barged_in) for t in run.turns] == [("tell me a story", True), ("stop please", False)]
    assert run.barge_ins == 1
    # Waiting 2 s, the two are one turn: it covers the speech whose reply was cut in on (as recorded).
    given = policy_for({"VOICEBUS_TURN_SILENCE_MS": "2000", "VOICEBUS_TURN_MAX_SILENCE_MS": "2000"})
    late = outcome(story.events, given, [(t.speech_start_ns, t.speech_end_ns) for t in run.turns if t.barged_in])
    assert [(t.text, t.barged_in) for t in late.turns] == [("tell me a story stop please", True)]
    assert [t.barged_in for t in outcome(story.events, given, []).turns] == [False]
    assert outcome(story.events[:10], policy_for()).turns == ()  # nothing committed yet


def test_the_replay_reads_what_the_turn_processor_reads() -> None:
    from streams.turns.agent import SOURCES
    from streams.turns.replay_source import INPUTS

    assert sorted(s.name for s in INPUTS) == sorted(s.name for s in SOURCES)


def test_sessions_replayed_in_processes_give_what_one_process_gives() -> None:
    sessions = {f"{i:032x}": encoded(Conversation(f"{i:032x}").say(500, 1500, "i want to go")
                                     .say(2200 + 100 * i, 3000 + 100 * i, "somewhere warm").wait(6000).events)
                for i in range(4)}
    given = {"VOICEBUS_TURN_SILENCE_MS": "800"}
    assert run(sessions, given, jobs=2) == run(sessions, given)
