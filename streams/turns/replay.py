"""Counterfactual replay: a session's recorded decision inputs through the turn core under other settings.

The core is a pure function of the state and one event (core.step, event time only), so the recorded inputs of
a session (voice.vad, voice.transcripts, voice.playout, voice.sessions) folded through it again give exactly the
decisions it made live, and folded under other settings, the decisions those would have made. What the other
settings cannot change is recorded as it happened: the person's speech and words, and when the agent's replies
played (a reply that would have started sooner or later is not simulated, so barge-ins are the recorded ones).

``fold`` runs one session; ``outcome`` reads turns off its decisions; ``compare`` matches the turns of two runs by
their speech and says what changed; ``summary`` gives the numbers to put side by side. Reading the inputs from
Kafka is ``streams.turns.replay_source``; ``voicebus replay`` is ``streams.turns.replay_cli``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from schemas.base import Event
from schemas.conversation import BargeIn, TurnCancelled, TurnCommitted, TurnSpeculative
from schemas.edge import SpeechStarted, VadProgress
from schemas.telemetry import StageStamped
from streams.turns.core import Context, Inbound, initial, step
from streams.turns.policy import Policy
from streams.turns.settings import TurnSettings
from streams.turns.state import TurnState

MS = 1_000_000
ENV_PREFIX = "VOICEBUS_"
# The person speaking again this soon after a commit had not finished: the turn was cut off (a longer silence
# threshold would have kept it open). One second is about the longest pause inside a sentence.
PREMATURE_NS = 1000 * MS
WALL = 0  # the processor's clock only stamps telemetry: a fixed value keeps replays comparable


def fold(events: Sequence[Inbound], policy: Policy, wall_ns: int = WALL) -> list[tuple[int, Event]]:
    """Every decision the core makes for one session's events in this order, with the index of the input event
    that caused it.

    Most events are the edge's VadProgress heartbeats, and most of those come while nothing waits for the clock.
    Such a heartbeat followed by a later one is not stepped: it would only move the clock and the VAD watermark,
    which the next one moves past (``_idle`` says when; tests/streams/test_replay_counterfactual.py checks the
    decisions against stepping every event, on every recorded fixture). It makes a replay about twice as fast.
    """
    state = None
    ctx = Context(policy, wall_ns)
    out: list[tuple[int, Event]] = []
    last = len(events) - 1
    for i, event in enumerate(events):
        if state is None:
            state = initial(event.session_id)
        elif i < last and isinstance(event, VadProgress) and _idle(state):
            later = events[i + 1]
            if isinstance(later, VadProgress) and (later.media_ns, later.seq) > (event.media_ns, event.seq):
                continue
        state, decisions = step(state, event, ctx)
        out.extend((i, d) for d in decisions)
    return out


def _idle(state: TurnState) -> bool:
    """Whether a VadProgress would change nothing but the clock and the watermark (core.step): no turn, pause,
    barge-in or session end is waiting for the clock, nothing is held for the VAD, and the person is not
    speaking (a heartbeat then may confirm their speech)."""
    return state.ended or (state.turn is None and state.interruption is None and not state.held
                           and not state.speaking and not state.ending)


def policy_for(overrides: Mapping[str, str] | None = None) -> Policy:
    """The policy of the turn settings from the environment, with ``overrides`` (``VOICEBUS_TURN_SILENCE_MS``:
    the variable names, or the field names) on top."""
    fields: dict[str, Any] = {}
    for name, value in (overrides or {}).items():
        key = name.removeprefix(ENV_PREFIX).lower()
        if key not in TurnSettings.model_fields:
            raise ValueError(f"{name} is not a turn processor setting (see `VOICEBUS_TURN_*` in the README)")
        fields[key] = value
    return Policy.from_settings(TurnSettings(**fields))


def read_settings_file(text: str) -> dict[str, str]:
    """``NAME=value`` lines (an env file: blank lines and ``#`` comments ignored)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            if not sep:
                raise ValueError(f"not NAME=value: {line!r}")
            out[name.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return out


# -- what a run decided --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """A committed turn: its speech, when it was committed (media time) and how it went."""

    turn_id: str
    text: str
    speech_start_ns: int
    speech_end_ns: int
    committed_ns: int
    speculative: bool  # offered speculatively first (under the id it was committed with)
    premature: bool  # the person spoke again within PREMATURE_NS of the commit
    barged_in: bool  # the person cut in on the reply to this speech (as recorded: the replies are not replayed)

    @property
    def endpointing_ms(self) -> float:
        """Commit minus the end of the speech, in media time (the live figure adds the processor's lag)."""
        return (self.committed_ns - self.speech_end_ns) / MS


@dataclass(frozen=True)
class Outcome:
    """One session under one policy."""

    session_id: str
    decisions: tuple[Event, ...]  # telemetry stamps left out
    turns: tuple[Turn, ...]
    speculative: int  # speculative offers made
    withdrawn: int  # of them, withdrawn because the person went on
    barge_ins: int
    asr_timeouts: int


def outcome(events: list[Inbound], policy: Policy, cut_in: list[tuple[int, int]] | None = None) -> Outcome:
    """Fold one session's events under ``policy`` and read its turns off the decisions.

    A recorded barge-in names the turn whose reply it cut: a live turn id. Under the live settings the run has
    the same ids; under others, pass ``cut_in``, the speech spans of the live turns cut in on (the live run's
    turns with ``barged_in``): a turn covering such speech is the one whose reply the person cut in on."""
    decisions = tuple(d for _, d in fold(events, policy) if not isinstance(d, StageStamped))
    starts = sorted(e.speech_start_media_ns for e in events if isinstance(e, SpeechStarted))
    offered = {d.turn_id for d in decisions if isinstance(d, TurnSpeculative)}
    barged = {d.turn_id for d in decisions if isinstance(d, BargeIn)}
    turns = []
    for d in decisions:
        if isinstance(d, TurnCommitted):
            after = next((s for s in starts if s > d.speech_end_media_ns), None)
            cut = d.turn_id in barged if cut_in is None else any(
                start <= d.speech_end_media_ns and d.speech_start_media_ns <= end for start, end in cut_in)
            turns.append(Turn(d.turn_id, d.text, d.speech_start_media_ns, d.speech_end_media_ns, d.media_ns,
                              d.turn_id in offered, after is not None and after - d.media_ns < PREMATURE_NS, cut))
    cancelled = [d for d in decisions if isinstance(d, TurnCancelled)]
    return Outcome(events[0].session_id if events else "", decisions, tuple(turns), len(offered),
                   sum(c.reason == "withdrawn" for c in cancelled), len(barged),
                   sum(c.reason == "asr_timeout" for c in cancelled))


# -- two runs side by side -----------------------------------------------------------------------------------------

Kind = Literal["same", "earlier", "later", "text", "merged", "split", "regrouped", "added", "dropped"]


@dataclass(frozen=True)
class Change:
    """Turns of the two runs that cover the same speech: one of each (maybe committed at another time), or
    several of one run covered by one of the other (merged, split), or a turn only one run committed."""

    kind: Kind
    before: tuple[Turn, ...]
    after: tuple[Turn, ...]

    @property
    def commit_delta_ms(self) -> float | None:
        """How much later (negative: sooner) the turn was committed, for one turn on each side."""
        if len(self.before) == 1 and len(self.after) == 1:
            return (self.after[0].committed_ns - self.before[0].committed_ns) / MS
        return None


def _overlap(a: Turn, b: Turn) -> bool:
    return a.speech_start_ns <= b.speech_end_ns and b.speech_start_ns <= a.speech_end_ns


def compare(before: Iterable[Turn], after: Iterable[Turn]) -> list[Change]:
    """The turns of two runs of one session, grouped by the speech they cover, in media order."""
    b, a = list(before), list(after)
    groups: list[tuple[list[Turn], list[Turn]]] = []
    for side, t in [(0, t) for t in b] + [(1, t) for t in a]:  # connected components of "covers the same speech"
        touching = [g for g in groups if any(_overlap(t, u) for u in g[0] + g[1])]
        merged: tuple[list[Turn], list[Turn]] = ([], [])
        for g in touching:
            groups.remove(g)
            merged[0].extend(g[0])
            merged[1].extend(g[1])
        merged[side].append(t)
        groups.append(merged)
    out = [Change(_kind(g[0], g[1]), tuple(sorted(g[0], key=_start)), tuple(sorted(g[1], key=_start)))
           for g in groups]
    return sorted(out, key=lambda c: min(_start(t) for t in c.before + c.after))


def _start(t: Turn) -> int:
    return t.speech_start_ns


def _kind(before: list[Turn], after: list[Turn]) -> Kind:
    if not before:
        return "added"
    if not after:
        return "dropped"
    if len(before) == 1 and len(after) == 1:
        (x,), (y,) = before, after
        if x.text.split() != y.text.split():
            return "text"
        if y.committed_ns == x.committed_ns:
            return "same"
        return "later" if y.committed_ns > x.committed_ns else "earlier"
    if len(after) == 1:
        return "merged"
    return "split" if len(before) == 1 else "regrouped"


# -- numbers -------------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between the closest ranks; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Summary:
    sessions: int
    turns: int
    endpointing_p50_ms: float | None
    endpointing_p95_ms: float | None
    premature: int
    premature_rate: float | None
    speculative: int
    withdrawn: int
    barge_ins: int
    asr_timeouts: int
    changes: dict[str, int] = field(default_factory=dict)  # kind -> how many (of this run against the live one)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summary(outcomes: Iterable[Outcome], changes: Iterable[Change] = ()) -> Summary:
    runs = list(outcomes)
    turns = [t for o in runs for t in o.turns]
    endpointing = [t.endpointing_ms for t in turns]
    premature = sum(t.premature for t in turns)
    kinds: dict[str, int] = {}
    for c in changes:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    return Summary(len(runs), len(turns), percentile(endpointing, 50), percentile(endpointing, 95), premature,
                   premature / len(turns) if turns else None, sum(o.speculative for o in runs),
                   sum(o.withdrawn for o in runs), sum(o.barge_ins for o in runs),
                   sum(o.asr_timeouts for o in runs), kinds)
