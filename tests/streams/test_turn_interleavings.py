"""Property: every interleaving of the topics that Kafka allows gives the same turns.

The turn processor reads voice.vad, voice.transcripts, voice.playout and voice.sessions independently; Kafka
keeps the order within each topic's partition and nothing across them. A backlog (after a restart) is read
round-robin, so the sparse topics run far ahead of the VAD; a loaded ASR makes transcripts lag it. Lag is
bounded by the policy's ASR wait (a final later than that is, by the policy, too late); lead is not bounded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.base import Event
from schemas.conversation import TranscriptFinal
from streams.turns.core import SOURCES
from streams.turns.policy import Policy
from tests.streams.turn_cases import CASES, SID, conv, run

MS = 1_000_000
MAX_LAG_NS = 2500 * MS  # how far a transcript or playout event may trail the VAD (within the ASR wait)

SCRIPTS: dict[str, Callable[[], list[Event]]] = {
    **{name: (lambda script=script: script().events) for name, (script, policy, _) in CASES.items()
       if policy == Policy()},
    "pauses mid-sentence, a barge-in, a resumed turn, then the session ends": lambda: (
        conv().say(500, 1500, "tell me a story").wait(2200).playout_started(f"{SID}-1").wait(3000)
        .say(3000, 3200, "", barge_in=(f"{SID}-1", 740)).wait(4500).say(5000, 5400, "and so")
        .say(5800, 6600, "what happened?").wait(8000).say(9000, 9800, "hello there").say(10100, 10900, "again")
        .wait(12500).end().events),
    "words cut short by the VAD, pauses near the threshold": lambda: (
        conv().say(500, 620, "the key").say(900, 2000, "is on the table").wait(2440).say(2460, 3000, "i said")
        .wait(3700).say(4220, 4500, "ok").wait(6000).events),
    "end-of-turn scores: sure, mid-thought, unsure, over a reply and its barge-in": lambda: (
        conv().say(500, 1500, "tell me a story", p_complete=0.9).wait(2000).playout_started(f"{SID}-1")
        .wait(2600).say(2600, 3400, "about a", p_complete=0.2, barge_in=(f"{SID}-1", 500))
        .say(4200, 5000, "dragon", p_complete=0.85).wait(5600).say(6000, 6800, "and then", p_complete=0.5)
        .wait(8600).events),
    "five turns back to back with short pauses": lambda: (
        conv().say(300, 1100, "one").wait(1800).say(2000, 2900, "two please").wait(3600)
        .say(3700, 4400, "three").wait(5100).say(5200, 6000, "four").wait(6800).say(6900, 7600, "five")
        .wait(9000).events),
}


def by_topic(events: list[Event]) -> dict[str, list[Event]]:
    queues: dict[str, list[Event]] = {}
    for e in events:
        queues.setdefault(SOURCES[type(e)], []).append(e)
    return queues


@st.composite
def interleavings(draw: st.DrawFn, events: list[Event]) -> list[Event]:
    """Any merge of the per-topic queues, except that no event trails the VAD by more than MAX_LAG_NS."""
    queues = {k: list(reversed(v)) for k, v in by_topic(events).items()}
    out: list[Event] = []
    while any(queues.values()):
        vad_head = queues["vad"][-1].media_ns if queues.get("vad") else None
        overdue = [k for k, q in queues.items() if k != "vad" and q and vad_head is not None
                   and vad_head - q[-1].media_ns > MAX_LAG_NS]
        ready = overdue or sorted(k for k, q in queues.items() if q)
        out.append(queues[draw(st.sampled_from(ready))].pop())
    return out


def committed(decisions: list[Event]) -> list[tuple[str, str]]:
    return [(d.turn_id, d.text) for d in decisions if d.type == "turn_committed"]  # type: ignore[attr-defined]


def outcomes(decisions: list[Event]) -> list[tuple[str, str]]:
    """What the person and the agent experience: commits, barge-ins and how each reply ended."""
    keep = {"turn_committed": "text", "barge_in": "played_ms", "false_interruption": "played_ms",
            "turn_ended": "outcome"}
    return sorted((d.type, d.turn_id, str(getattr(d, keep[d.type]))) for d in decisions if d.type in keep
                  and not (d.type == "turn_ended" and d.outcome == "cancelled"))  # type: ignore[attr-defined]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(SCRIPTS)))
def test_every_interleaving_gives_the_same_turns(data: st.DataObject, name: str) -> None:
    events = SCRIPTS[name]()
    _, expected = run(events)
    shuffled = data.draw(interleavings(events))
    _, decisions = run(shuffled, roundtrip=True)
    assert outcomes(decisions) == outcomes(expected)
    # No utterance with words lost, none committed twice. (Speech shorter than the policy's minimum counts only
    # when a turn follows it: alone it is noise, even when the recogniser makes a word of it.)
    texts = [text for _, text in committed(decisions)]
    words = Counter(" ".join(texts).split())
    finals = [e for e in events if isinstance(e, TranscriptFinal) and e.text]
    long = Counter(" ".join(e.text for e in finals if e.end_media_ns - e.start_media_ns >= Policy().min_speech_ns).split())
    assert long <= words <= Counter(" ".join(e.text for e in finals).split())
    assert len({turn_id for turn_id, _ in committed(decisions)}) == len(texts)


@settings(max_examples=30, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(SCRIPTS)))
def test_redelivering_a_prefix_changes_nothing(data: st.DataObject, name: str) -> None:
    """At-least-once: after a crash, events from an earlier offset of each topic come again."""
    events = data.draw(interleavings(SCRIPTS[name]()))
    cut = data.draw(st.integers(0, len(events)))
    back = data.draw(st.integers(0, cut))
    state, first = run(events[:cut], roundtrip=True)
    _, rest = run(events[back:], state=state, roundtrip=True)
    _, once = run(events, roundtrip=True)
    assert first + rest == once
