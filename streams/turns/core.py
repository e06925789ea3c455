"""Turn-taking decisions: a pure function of the state and one event, driven by the media time in events.

``step(state, event, ctx)`` gives the next state and the events to publish; the Faust shell calls it once per
event. ``ctx.wall_ns`` is the processor's clock: it only stamps when a decision was made (a measurement for
telemetry), it never makes one, so replaying a session's events gives the same decisions.

The topics are read independently, so events of one session arrive in any interleaving of their topics (each
topic in order). The edge's events (VAD, playout, sessions) carry one sequence per session and are applied once
by a watermark; transcripts follow the ASR contract in ``schemas.conversation``: a final is identified by its
span and matched to a turn by overlap, whatever order it arrives in. An end-of-turn score is joined to the
utterance that ends at its span's end; the ASR sends it before the utterance's final and a pause is judged only
once that final is in (or given up on), so the score is there whenever it can matter, in every interleaving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.base import Envelope, Event
from schemas.conversation import (
    BargeIn,
    EndOfTurnScored,
    FalseInterruption,
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
from schemas.telemetry import Stage, StageStamped
from streams.turns.policy import Policy
from streams.turns.state import Final, HeldEvent, Interruption, OpenTurn, Score, Segment, TurnState

Inbound = (
    SpeechStarted | SpeechStopped | VadProgress | TranscriptPartial | TranscriptFinal | EndOfTurnScored
    | PlayoutStarted | PlayoutFinished | PlayoutInterrupted | SessionStarted | SessionEnded
)
# Each source is read from its own topic. The edge's sources have a (media_ns, seq) watermark each: an event at
# or below it was already applied. The ASR's events are not ordered with each other's media times (schemas
# .conversation): finals are applied once by their span instead.
SOURCES: dict[type[Event], str] = {
    SpeechStarted: "vad", SpeechStopped: "vad", VadProgress: "vad",
    TranscriptPartial: "asr", TranscriptFinal: "asr", EndOfTurnScored: "asr",
    PlayoutStarted: "playout", PlayoutFinished: "playout", PlayoutInterrupted: "playout",
    SessionStarted: "sessions", SessionEnded: "sessions",
}




@dataclass(frozen=True)
class Context:
    policy: Policy
    wall_ns: int  # the processor's clock, for stamps only


def initial(session_id: str) -> TurnState:
    return TurnState(session_id=session_id)


def step(state: TurnState, event: Inbound, ctx: Context) -> tuple[TurnState, tuple[Event, ...]]:
    """The next state and the decisions that one event causes."""
    source = SOURCES[type(event)]
    if state.ended or event.session_id != state.session_id or _applied(state, source, event):
        return state, ()  # a redelivered or stray event changes nothing
    run = _Step(state, ctx)
    if source != "asr":
        run.set(seen={**state.seen, source: (event.media_ns, event.seq)})
    node_id = getattr(event, "node_id", None)
    if node_id:
        run.set(node_id=node_id)
    # Topics are consumed independently, and a backlog (after a restart) is read round-robin across them, so
    # the sparse topics run ahead of the VAD. Only the VAD moves the clock; playout events and the session's
    # end wait until the VAD has caught up with them (the edge's last VAD event has the session end's media
    # time); transcripts are matched to speech by their media spans.
    if isinstance(event, PlayoutStarted | PlayoutFinished | PlayoutInterrupted | SessionEnded):
        run.set(held=(*run.s.held, event))
    else:
        if source == "vad":
            run.release(lambda h: not isinstance(h, SessionEnded) and (h.seq < event.seq or h.media_ns < event.media_ns))
            run.set(now_ns=max(state.now_ns, event.media_ns))
        run.apply(event)
    run.release(lambda h: isinstance(h, SessionEnded) and h.media_ns <= run.s.now_ns)
    run.advance()
    return run.s, tuple(run.out)


def _applied(state: TurnState, source: str, event: Inbound) -> bool:
    """Whether the event was applied already (a redelivery) or belongs to speech already decided."""
    if isinstance(event, TranscriptFinal):
        span = (event.start_media_ns, event.end_media_ns)
        return event.end_media_ns <= state.decided_until_ns or any((f.start_ns, f.end_ns) == span
                                                                    for f in state.finals)
    if isinstance(event, EndOfTurnScored):
        # Once its utterance's final is in, a score is late (the ASR sends it first): taking it would make the
        # decision depend on when it came. A repeated one is applied once.
        span = (event.start_media_ns, event.end_media_ns)
        return event.end_media_ns <= state.decided_until_ns or any(
            (x.start_ns, x.end_ns) == span for x in (*state.scores, *state.finals))
    if isinstance(event, TranscriptPartial):
        return False  # a hint only: applying one twice changes nothing
    last = state.seen.get(source)
    return last is not None and (event.media_ns, event.seq) <= last


class _Step:
    """One transition: the working state and the decisions made so far."""

    def __init__(self, state: TurnState, ctx: Context) -> None:
        self.s = state
        self.p = ctx.policy
        self.wall_ns = ctx.wall_ns
        self.out: list[Event] = []

    def set(self, **changes: Any) -> None:
        self.s = self.s.model_copy(update=changes)

    def set_turn(self, **changes: Any) -> None:
        assert self.s.turn is not None
        self.set(turn=self.s.turn.model_copy(update=changes))

    def set_last(self, **changes: Any) -> None:
        """Change the turn's latest utterance."""
        assert self.s.turn is not None
        segments = self.s.turn.segments
        self.set_turn(segments=(*segments[:-1], segments[-1].model_copy(update=changes)))

    # -- publishing --

    def emit(self, model: type[Event], turn_id: str, **fields: Any) -> None:
        s = self.s
        envelope = Envelope(session_id=s.session_id, seq=s.out_seq, media_ns=s.now_ns, wall_ns=self.wall_ns)
        self.out.append(model(**envelope, turn_id=turn_id, node_id=s.node_id, **fields))
        self.set(out_seq=s.out_seq + 1)

    def stamp(self, turn_id: str, stage: Stage, wall_ns: int, media_ns: int) -> None:
        self.emit(StageStamped, turn_id, stage=stage, stage_wall_ns=wall_ns, stage_media_ns=media_ns,
                  service="streams")

    # -- what each event changes --

    def release(self, due: Callable[[HeldEvent], bool]) -> None:
        """Apply the held edge events that are due, in the order the edge sent them (its seq counts all its
        events); the session's end is the edge's last event, so everything held comes before it."""
        ready = [h for h in self.s.held if due(h)]
        if any(isinstance(h, SessionEnded) for h in ready):
            ready = list(self.s.held)
        if ready:
            self.set(held=tuple(h for h in self.s.held if h not in ready))
            for h in sorted(ready, key=lambda h: h.seq):
                self.apply(h)

    def apply(self, e: Inbound) -> None:
        s = self.s
        if isinstance(e, SpeechStarted):
            self.set(speaking=True, utterance_start_ns=e.speech_start_media_ns, utterance_announced_ns=e.media_ns,
                     utterance_confirmed=False)
        elif isinstance(e, SpeechStopped):
            self.speech_stopped(e)
        elif isinstance(e, VadProgress):
            # A voiced frame this long after the start proves the speech lasted (the edge's "speaking" alone
            # does not: it stays true through its own hangover after the last voiced frame).
            if (e.speaking and e.voiced and s.speaking and not s.utterance_confirmed
                    and e.media_ns - s.utterance_start_ns >= self.p.min_speech_ns):
                self.confirm(s.utterance_start_ns)
        elif isinstance(e, TranscriptFinal):
            self.set(finals=(*self.s.finals, Final(start_ns=e.start_media_ns, end_ns=e.end_media_ns,
                                                   text=e.text.strip(), wall_ns=e.wall_ns)))
            self.words(self.s.finals[-1])
        elif isinstance(e, EndOfTurnScored):
            self.set(scores=(*self.s.scores, Score(start_ns=e.start_media_ns, end_ns=e.end_media_ns,
                                                   probability=e.probability)))
        # A TranscriptPartial changes nothing here: its final follows (the ASR contract) and decides.
        elif isinstance(e, PlayoutStarted):
            self.set(reply=e.turn_id)
        elif isinstance(e, PlayoutFinished):
            self.emit(TurnEnded, e.turn_id, outcome="completed")
            if self.s.reply == e.turn_id:
                self.set(reply=None)
        elif isinstance(e, PlayoutInterrupted):
            self.barge_in(e)
        elif isinstance(e, SessionEnded):
            self.session_ending()
        # SessionStarted only moves the media clock and names the node.

    def speech_stopped(self, e: SpeechStopped) -> None:
        start, end = e.speech_start_media_ns, e.speech_end_media_ns
        confirmed = (self.s.speaking and self.s.utterance_confirmed) or end - start >= self.p.min_speech_ns
        self.set(speaking=False, utterance_start_ns=start)
        if confirmed:
            if not self.s.utterance_confirmed or self.s.turn is None:
                self.confirm(start)
            self.set_last(end_ns=end, end_wall_ns=e.speech_end_wall_ns, vad_end_ns=e.media_ns,
                          vad_end_wall_ns=e.wall_ns)
        # Shorter speech (a click, a cough) is ignored: an open turn keeps counting from its own speech end.
        self.set(utterance_confirmed=False)

    def confirm(self, start: int) -> None:
        """Speech long enough to count: it opens a turn, or resumes the open one (withdrawing a speculative)."""
        turn = self.s.turn
        segment = Segment(start_ns=start, announced_ns=max(start, self.s.utterance_announced_ns))
        if turn is None:
            # Finals from well before this speech (noise that did not open a turn) are not part of it.
            lead = self.lead_from(start)
            self.set(turn=OpenTurn(segments=(segment,)), finals=tuple(f for f in self.s.finals if f.end_ns > lead),
                     scores=tuple(x for x in self.s.scores if x.end_ns > lead))
        else:
            if turn.speculative_ns is not None:
                self.withdraw()
            self.set_turn(segments=(*turn.segments, segment))
        self.set(utterance_confirmed=True)

    def interrupts(self, f: Final, at_ns: int) -> bool:
        """Words spoken within the false-interruption window of a barge-in at ``at_ns`` make it real. Judged by
        the speech's media span, not by when its final arrives, so every order of the topics agrees."""
        return bool(f.text) and f.end_ns > at_ns and f.start_ns < at_ns + self.p.false_interruption_ns

    def words(self, f: Final) -> None:
        i = self.s.interruption
        if i is not None and self.interrupts(f, i.at_ns):
            self.interrupted(i.turn_id)

    def barge_in(self, e: PlayoutInterrupted) -> None:
        """The edge paused the reply when the person spoke over it. With false interruptions resumed, only the
        barge-in is reported now (the responder keeps the reply): the words decide later whether it is cancelled
        (``interrupted``) or resumes (``advance``)."""
        if self.s.interruption is not None:
            self.interrupted(self.s.interruption.turn_id)  # a newer reply was paused: the older one is over
        self.emit(BargeIn, e.turn_id, played_ms=e.played_ms)
        # Words may already be here: the transcripts topic can be read ahead of the playout topic.
        words = any(self.interrupts(f, e.barge_in_media_ns) for f in self.s.finals)
        if self.p.resume_false_interruption and not words:
            self.set(interruption=Interruption(turn_id=e.turn_id, played_ms=e.played_ms, at_ns=e.barge_in_media_ns))
        else:
            self.interrupted(e.turn_id)
        if self.s.reply == e.turn_id:
            self.set(reply=None)

    def interrupted(self, turn_id: str) -> None:
        """The barge-in stands: stop the reply for good."""
        self.emit(TurnCancelled, turn_id, reason="barge_in")
        self.emit(TurnEnded, turn_id, outcome="interrupted")
        if self.s.interruption is not None and self.s.interruption.turn_id == turn_id:
            self.set(interruption=None)

    def session_ending(self) -> None:
        """The person left. What they said before still counts: a turn whose words are still being recognised
        is judged when they come (the ASR sends a final for every utterance, also at a session's end), then the
        session ends. An utterance cut off by the end (no SpeechStopped) is not a turn. The reply in flight is
        cancelled at once: nobody is left to hear it, whatever the recogniser still has to say."""
        turn = self.s.turn
        if turn is not None and turn.last.end_ns is None:
            rest = turn.segments[:-1]
            self.set(turn=turn.model_copy(update={"segments": rest}) if rest else None)
        self.end_reply()
        self.set(ending=True, speaking=False)

    def end_reply(self) -> None:
        s = self.s
        if s.reply is not None:
            self.emit(TurnCancelled, s.reply, reason="session_ended")
            self.emit(TurnEnded, s.reply, outcome="cancelled")
        if s.interruption is not None:  # the paused reply is not heard on
            self.interrupted(s.interruption.turn_id)
        self.set(reply=None, interruption=None)

    def words_due(self, turn: OpenTurn) -> bool:
        return any(not any(f.end_ns > seg.start_ns for f in self.finals_of(turn, i))
                   for i, seg in enumerate(turn.segments))

    def session_ended(self) -> None:
        s = self.s
        if s.turn is not None and s.turn.speculative_ns is not None:
            self.emit(TurnCancelled, s.turn_id(), reason="session_ended")
            self.emit(TurnEnded, s.turn_id(), outcome="cancelled")
        self.end_reply()  # a turn committed while the session was ending
        # The state stays (small) so that redelivered events of the session are still recognised.
        self.set(ended=True, ending=False, speaking=False, turn=None, finals=(), scores=(), reply=None,
                 interruption=None)

    # -- what the passing of media time decides --

    def advance(self) -> None:
        if self.s.ended:
            return
        p = self.p
        self.pause()
        if self.s.ending:
            if self.s.turn is None or not self.words_due(self.s.turn):
                self.session_ended()
            return
        i = self.s.interruption
        if (i is not None and self.s.now_ns >= i.at_ns + p.false_interruption_ns
                and not self.s.speaking and self.s.turn is None):
            # No words came and nothing the person said is still pending: a cough, a door. The responder has the
            # edge resume the paused reply, so it is the reply in flight again: its PlayoutFinished completes the
            # turn, another barge-in pauses it again. (No playout event says it resumed: nothing here waits for it.)
            self.emit(FalseInterruption, i.turn_id, played_ms=i.played_ms)
            self.set(interruption=None, reply=i.turn_id)

    def pause(self) -> None:
        """Judge the turn's pauses in order: offer it speculatively, commit it, or drop it if wordless.

        A pause is the turn's end when it lasts the silence the words before it call for. Those words may come
        after the person spoke again (the recogniser lags): then the pause is judged when they come, and the
        speech after it is the next turn, as it would have been had they come at once."""
        while (turn := self.s.turn) is not None:
            i = self.turn_end(turn)
            if i is None:
                return
            self.close(turn, i)

    def turn_end(self, turn: OpenTurn) -> int | None:
        """Index of the utterance that ends the turn, or None (undecided: the turn goes on, or words are due)."""
        s, p = self.s, self.p
        for i, seg in enumerate(turn.segments):
            if seg.end_ns is None:
                return None  # still speaking
            last = i == len(turn.segments) - 1
            if last and s.speaking:
                return None  # more speech, maybe too short to count: no decision until it stops
            finals = self.finals_of(turn, i)
            text = " ".join(f.text for f in finals if f.text)
            heard = any(f.end_ns > seg.start_ns for f in finals)  # this utterance has its final
            probability = self.probability(seg)
            needed = p.silence_needed(text, probability)
            # The final is not coming (judged without the score: with the final missing, whether its score
            # came is a matter of timing).
            waited = s.now_ns - seg.end_ns >= p.silence_needed(text) + p.asr_wait_ns
            if not heard and not waited:
                return None  # its words are due; a later pause cannot be judged before this one
            pause = s.now_ns - seg.end_ns
            if last and (s.ending or pause >= needed):  # s.ending: the person left, nothing more is coming
                return i
            # A past pause ended when the VAD announced the next speech, not where it dates its start (up to
            # ~100 ms earlier): with its words on time, the turn would have been committed in between.
            if not last and turn.segments[i + 1].announced_ns - seg.end_ns > needed:
                return i
            if (last and heard and turn.speculative_ns is None and pause >= p.speculative_ns
                    and p.speculates(text, probability)):
                self.emit(TurnSpeculative, s.turn_id(), text=text, speech_start_media_ns=turn.start_ns,
                          speech_end_media_ns=seg.end_ns)
                self.set_turn(speculative_ns=s.now_ns, speculative_wall_ns=self.wall_ns)
        return None

    def probability(self, seg: Segment) -> float | None:
        """P(complete) at the end of this utterance (the score of the utterance the ASR ended where the VAD
        did), or None: no scorer, or the score was not made in time."""
        return next((x.probability for x in reversed(self.s.scores) if x.end_ns == seg.end_ns), None)

    def finals_of(self, turn: OpenTurn, i: int) -> tuple[Final, ...]:
        """The finals of the turn's utterances up to the i-th (later ones wait), and of speech too short to
        count just before the turn: words there (speech the VAD cut short) lead into it. The recogniser sends
        a session's finals in order, so those came before the finals of the turn's own speech."""
        end = turn.segments[i].end_ns
        assert end is not None
        lead = self.lead_from(turn.start_ns)
        return tuple(f for f in self.s.finals if f.end_ns > lead and f.start_ns <= end)

    def lead_from(self, start_ns: int) -> int:
        return max(self.s.decided_until_ns, start_ns - self.p.max_silence_ns)

    def close(self, turn: OpenTurn, i: int) -> None:
        """The turn ends after its i-th utterance: commit it (or drop it without words); the rest goes on."""
        finals = self.finals_of(turn, i)
        text = " ".join(f.text for f in finals if f.text)
        seg = turn.segments[i]
        assert seg.end_ns is not None
        if text:
            self.commit(turn, seg, finals, text)
        elif self.words_due(OpenTurn(segments=turn.segments[:i + 1])):
            self.asr_timeout()
        # A turn without words (noise the VAD took for speech) is dropped. Either way its speech is decided:
        # a final for it that comes later (a redelivery, or one later than the ASR wait) is not taken for new
        # speech.
        rest = turn.segments[i + 1:]
        self.set(turn=OpenTurn(segments=rest) if rest else None,
                 finals=tuple(f for f in self.s.finals if f not in finals),
                 scores=tuple(x for x in self.s.scores if x.end_ns > seg.end_ns),
                 decided_until_ns=max(self.s.decided_until_ns, seg.end_ns))

    def commit(self, turn: OpenTurn, seg: Segment, finals: tuple[Final, ...], text: str) -> None:
        turn_id = self.s.turn_id()
        assert seg.end_ns is not None
        self.emit(TurnCommitted, turn_id, text=text, speech_end_media_ns=seg.end_ns,
                  speech_start_media_ns=min(turn.start_ns, *(f.start_ns for f in finals)))
        self.stamp(turn_id, "speech_end", seg.end_wall_ns, seg.end_ns)
        self.stamp(turn_id, "vad_end", seg.vad_end_wall_ns, seg.vad_end_ns)
        last = max(finals, key=lambda f: f.wall_ns)  # the words were all there once the last final was made
        self.stamp(turn_id, "asr_final", last.wall_ns, last.end_ns)
        if turn.speculative_ns is not None:
            self.stamp(turn_id, "turn_speculative", turn.speculative_wall_ns, turn.speculative_ns)
        self.stamp(turn_id, "turn_committed", self.wall_ns, self.s.now_ns)
        self.set(turn_no=self.s.turn_no + 1, reply=turn_id)

    def asr_timeout(self) -> None:
        """The turn's words did not come within the ASR wait (the recogniser crashed or lags): it is not
        answered, and it does not vanish either: it ends with the reason, under its own id."""
        turn_id = self.s.turn_id()
        self.emit(TurnCancelled, turn_id, reason="asr_timeout")
        self.emit(TurnEnded, turn_id, outcome="cancelled")
        self.set(turn_no=self.s.turn_no + 1)

    def withdraw(self) -> None:
        """The person resumed after a speculative turn: cancel it; the turn goes on under the next id."""
        turn_id = self.s.turn_id()
        self.emit(TurnCancelled, turn_id, reason="withdrawn")
        self.emit(TurnEnded, turn_id, outcome="cancelled")
        self.set(turn_no=self.s.turn_no + 1)
        self.set_turn(speculative_ns=None, speculative_wall_ns=0)
