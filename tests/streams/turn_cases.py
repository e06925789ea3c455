"""The turn core's table of cases and the helpers that run it (shared by its table and property tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bench.endpointing_events import MS, Conversation
from schemas.base import Event
from schemas.conversation import TurnCommitted
from schemas.telemetry import StageStamped
from streams.turns.core import Context, Inbound, initial, step
from streams.turns.policy import Policy
from streams.turns.state import TurnState

SID = "0123456789abcdef0123456789abcdef"
WALL = 42  # the processor's clock in these tests: fixed, so decisions compare exactly
DEFAULT = Policy()


def run(events: Iterable[Event], policy: Policy = DEFAULT, state: TurnState | None = None,
        roundtrip: bool = False) -> tuple[TurnState, list[Event]]:
    """Fold the events through the core; ``roundtrip`` stores the state as JSON between events, as the table does."""
    state = state or initial(SID)
    out: list[Event] = []
    for event in events:
        assert isinstance(event, Inbound)  # type: ignore[arg-type]
        state, decisions = step(state, event, Context(policy, WALL))
        out.extend(decisions)
        if roundtrip:
            state = TurnState.from_json(state.to_json())
    return state, out


def turns(decisions: list[Event]) -> list[tuple[Any, ...]]:
    """The voice.turns decisions in a compact form (telemetry stamps left out)."""
    rows: list[tuple[Any, ...]] = []
    for d in decisions:
        if isinstance(d, StageStamped):
            continue
        extra = {"turn_speculative": "text", "turn_committed": "text", "turn_cancelled": "reason",
                 "barge_in": "played_ms", "false_interruption": "played_ms", "turn_ended": "outcome"}[d.type]
        rows.append((d.type, d.turn_id.removeprefix(SID + "-"), getattr(d, extra)))
    return rows


def committed_at_ms(decisions: list[Event]) -> list[int]:
    """Silence (ms) between each committed turn's speech end and the media time of the commit."""
    return [(d.media_ns - d.speech_end_media_ns) // MS for d in decisions if isinstance(d, TurnCommitted)]


def conv() -> Conversation:
    return Conversation(SID)


def _playout_behind(c: Conversation) -> Conversation:
    """The playout topic read behind the transcripts: each barge-in read just after the next final transcript."""
    out: list[Event] = []
    held: list[Event] = []
    for e in c.events:
        if e.type == "playout_interrupted":
            held.append(e)
            continue
        out.append(e)
        if e.type == "transcript_final":
            out += held
            held = []
    c.events = out + held
    return c


CASES: dict[str, tuple[Callable[[], Conversation], Policy, list[tuple[Any, ...]]]] = {
    "one turn: speculative at the pause, committed at the threshold": (
        lambda: conv().say(500, 1500, "hello there").wait(2600), DEFAULT,
        [("turn_speculative", "1", "hello there"), ("turn_committed", "1", "hello there")],
    ),
    "resume after a short pause that ends in a continuation word: one turn, no speculation": (
        lambda: conv().say(500, 1500, "i want to").say(1900, 2600, "go home").wait(3700), DEFAULT,
        [("turn_speculative", "1", "i want to go home"), ("turn_committed", "1", "i want to go home")],
    ),
    "speculative then withdrawn when the person resumes; the turn goes on under the next id": (
        lambda: conv().say(500, 1500, "hello there").say(1900, 2600, "how are you").wait(3700), DEFAULT,
        [("turn_speculative", "1", "hello there"), ("turn_cancelled", "1", "withdrawn"),
         ("turn_ended", "1", "cancelled"), ("turn_speculative", "2", "hello there how are you"),
         ("turn_committed", "2", "hello there how are you")],
    ),
    "continuation word: an 800 ms pause does not end the turn": (
        lambda: conv().say(500, 1500, "i would like the").say(2300, 2900, "blue one").wait(4000), DEFAULT,
        [("turn_speculative", "1", "i would like the blue one"),
         ("turn_committed", "1", "i would like the blue one")],
    ),
    "continuation word alone: committed after the longer threshold": (
        lambda: conv().say(500, 1500, "i would like the").wait(3500), DEFAULT,
        [("turn_committed", "1", "i would like the")],
    ),
    "words in speech too short to count lead into the turn right after it (the VAD cut real speech short)": (
        lambda: conv().say(500, 620, "the key").say(900, 2000, "is on the table").wait(3000), DEFAULT,
        [("turn_speculative", "1", "the key is on the table"), ("turn_committed", "1", "the key is on the table")],
    ),
    "short speech below the minimum opens no turn": (
        lambda: conv().say(500, 580, "uh").wait(2000), DEFAULT, [],
    ),
    "short noise in a pause neither withdraws the speculative nor delays the commit": (
        lambda: conv().say(500, 1500, "hello there").say(1800, 1880, None).wait(2600), DEFAULT,
        [("turn_speculative", "1", "hello there"), ("turn_committed", "1", "hello there")],
    ),
    "speech with no words (the ASR heard nothing) is dropped": (
        lambda: conv().say(500, 1500, "").wait(3000), DEFAULT, [],
    ),
    "final transcript never comes: committed with the text it has after the ASR wait": (
        lambda: conv().say(500, 1500, "i want to").say(1800, 2400, None).wait(12000), DEFAULT,
        [("turn_committed", "1", "i want to")],
    ),
    "no final transcript within the ASR wait (a crashed or loaded recogniser): the turn ends with the reason": (
        lambda: conv().say(500, 1500, None).wait(12000), DEFAULT,
        [("turn_cancelled", "1", "asr_timeout"), ("turn_ended", "1", "cancelled")],
    ),
    "the next turn after an ASR timeout has the next id": (
        lambda: conv().say(500, 1500, None).wait(12000).say(12500, 13500, "hello there").wait(15000), DEFAULT,
        [("turn_cancelled", "1", "asr_timeout"), ("turn_ended", "1", "cancelled"),
         ("turn_speculative", "2", "hello there"), ("turn_committed", "2", "hello there")],
    ),
    "speculation off (threshold at the speculative pause)": (
        lambda: conv().say(500, 1500, "hello there").wait(2600),
        Policy(speculative_ns=10_000 * MS),
        [("turn_committed", "1", "hello there")],
    ),
    "barge-in during a reply: it pauses, keeping what was played; the words make it a real interruption": (
        lambda: (conv().say(500, 1500, "tell me a story").wait(2200).playout_started(f"{SID}-1").wait(3000)
                 .say(3000, 3800, "stop please", barge_in=(f"{SID}-1", 740)).wait(4500)), DEFAULT,
        [("turn_speculative", "1", "tell me a story"), ("turn_committed", "1", "tell me a story"),
         ("barge_in", "1", 740), ("turn_cancelled", "1", "barge_in"), ("turn_ended", "1", "interrupted"),
         ("turn_speculative", "2", "stop please"), ("turn_committed", "2", "stop please")],
    ),
    # The same decisions as above; only the next turn's speculation, made from the words, comes first.
    "words over a reply read before its barge-in (the playout topic behind): the same decisions": (
        lambda: _playout_behind(conv().say(500, 1500, "tell me a story").wait(2200).playout_started(f"{SID}-1")
                                .wait(3000).say(3000, 3800, "stop please", barge_in=(f"{SID}-1", 740)).wait(4500)),
        DEFAULT,
        [("turn_speculative", "1", "tell me a story"), ("turn_committed", "1", "tell me a story"),
         ("turn_speculative", "2", "stop please"),
         ("barge_in", "1", 740), ("turn_cancelled", "1", "barge_in"), ("turn_ended", "1", "interrupted"),
         ("turn_committed", "2", "stop please")],
    ),
    "a cough over a reply: a barge-in, then a false interruption; nothing is cancelled (the reply resumes)": (
        lambda: (conv().say(500, 1500, "tell me a story").wait(2200).playout_started(f"{SID}-1").wait(3000)
                 .say(3000, 3200, "", barge_in=(f"{SID}-1", 740)).wait(4500)), DEFAULT,
        [("turn_speculative", "1", "tell me a story"), ("turn_committed", "1", "tell me a story"),
         ("barge_in", "1", 740), ("false_interruption", "1", 740)],
    ),
    "a cough, then the resumed reply plays to its end: completed": (
        lambda: (conv().say(500, 1500, "tell me a story").wait(2200).playout_started(f"{SID}-1").wait(3000)
                 .say(3000, 3200, "", barge_in=(f"{SID}-1", 740)).wait(6000).playout_finished(f"{SID}-1", 3800)
                 .wait(6500)), DEFAULT,
        [("turn_speculative", "1", "tell me a story"), ("turn_committed", "1", "tell me a story"),
         ("barge_in", "1", 740), ("false_interruption", "1", 740), ("turn_ended", "1", "completed")],
    ),
    "a cough, then words over the resumed reply: the second barge-in stands": (
        lambda: (conv().say(500, 1500, "tell me a story").wait(2200).playout_started(f"{SID}-1").wait(3000)
                 .say(3000, 3200, "", barge_in=(f"{SID}-1", 740)).wait(5000)
                 .say(5000, 5800, "stop please", barge_in=(f"{SID}-1", 2400)).wait(6500)), DEFAULT,
        [("turn_speculative", "1", "tell me a story"), ("turn_committed", "1", "tell me a story"),
         ("barge_in", "1", 740), ("false_interruption", "1", 740),
         ("barge_in", "1", 2400), ("turn_cancelled", "1", "barge_in"), ("turn_ended", "1", "interrupted"),
         ("turn_speculative", "2", "stop please"), ("turn_committed", "2", "stop please")],
    ),
    "the session ends while a barge-in waits for words: the paused reply is over": (
        lambda: (conv().say(500, 1500, "tell me a story").wait(2200).playout_started(f"{SID}-1").wait(3000)
                 .say(3000, 3200, "", barge_in=(f"{SID}-1", 740)).wait(3600).end().wait(4000)), DEFAULT,
        [("turn_speculative", "1", "tell me a story"), ("turn_committed", "1", "tell me a story"),
         ("barge_in", "1", 740), ("turn_cancelled", "1", "barge_in"), ("turn_ended", "1", "interrupted")],
    ),
    "false interruptions off: the barge-in stands": (
        lambda: (conv().say(500, 1500, "tell me a story").wait(2200).playout_started(f"{SID}-1").wait(3000)
                 .say(3000, 3200, "", barge_in=(f"{SID}-1", 740)).wait(4500)),
        Policy(resume_false_interruption=False),
        [("turn_speculative", "1", "tell me a story"), ("turn_committed", "1", "tell me a story"),
         ("barge_in", "1", 740), ("turn_cancelled", "1", "barge_in"), ("turn_ended", "1", "interrupted")],
    ),
    "reply played to the end": (
        lambda: (conv().say(500, 1500, "hi").wait(2200).playout_started(f"{SID}-1").wait(4000)
                 .playout_finished(f"{SID}-1", 1800).wait(4300)), DEFAULT,
        [("turn_speculative", "1", "hi"), ("turn_committed", "1", "hi"), ("turn_ended", "1", "completed")],
    ),
    "session ends during a speculative turn: the words are committed (the log keeps them), the reply cancelled": (
        lambda: conv().say(500, 1500, "hello there").wait(1800).end().wait(3000), DEFAULT,
        [("turn_speculative", "1", "hello there"), ("turn_committed", "1", "hello there"),
         ("turn_cancelled", "1", "session_ended"), ("turn_ended", "1", "cancelled")],
    ),
    # The end-of-turn model's P(complete) (EndOfTurnScored, sent just before the final) with the text.
    "model sure the person finished: committed as soon as its score is in, no speculation needed": (
        lambda: conv().say(500, 1500, "hello there", p_complete=0.9).wait(2600), DEFAULT,
        [("turn_committed", "1", "hello there")],
    ),
    "model hears the person mid-thought: a 900 ms pause stays inside the turn, nothing speculative": (
        lambda: (conv().say(500, 1500, "i went to the shop", p_complete=0.1)
                 .say(2400, 3000, "yesterday", p_complete=0.9).wait(4000)), DEFAULT,
        [("turn_committed", "1", "i went to the shop yesterday")],
    ),
    "the same pause without scores: two turns (the silence rules alone)": (
        lambda: conv().say(500, 1500, "i went to the shop").say(2400, 3000, "yesterday").wait(4000), DEFAULT,
        [("turn_speculative", "1", "i went to the shop"), ("turn_committed", "1", "i went to the shop"),
         ("turn_speculative", "2", "yesterday"), ("turn_committed", "2", "yesterday")],
    ),
    "model unsure: the text rules decide, as without a score": (
        lambda: conv().say(500, 1500, "hello there", p_complete=0.5).wait(2600), DEFAULT,
        [("turn_speculative", "1", "hello there"), ("turn_committed", "1", "hello there")],
    ),
    "model sure, text ends in a continuation word: neither is trusted, the neutral silence": (
        lambda: conv().say(500, 1500, "i would like the", p_complete=0.95).say(2100, 2600, "red one").wait(3600),
        DEFAULT,
        [("turn_committed", "1", "i would like the"), ("turn_speculative", "2", "red one"),
         ("turn_committed", "2", "red one")],
    ),
    "a score read after its final breaks the ASR contract: ignored, the silence rules decide": (
        lambda: conv().say(500, 1500, "hello there").score(500, 1500, 0.95).wait(2600), DEFAULT,
        [("turn_speculative", "1", "hello there"), ("turn_committed", "1", "hello there")],
    ),
    "scores of a turn's earlier utterance do not judge its last pause": (
        lambda: (conv().say(500, 1500, "well", p_complete=0.1).say(1800, 2500, "that sounds good", p_complete=0.5)
                 .wait(3600)), DEFAULT,
        [("turn_speculative", "1", "well that sounds good"), ("turn_committed", "1", "well that sounds good")],
    ),
    "two turns get consecutive ids": (
        lambda: conv().say(500, 1500, "hello").wait(2500).say(4000, 5000, "goodbye").wait(6000), DEFAULT,
        [("turn_speculative", "1", "hello"), ("turn_committed", "1", "hello"),
         ("turn_speculative", "2", "goodbye"), ("turn_committed", "2", "goodbye")],
    ),
}
