"""The per-session turn state: a frozen record that the Faust table stores as JSON."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from schemas.edge import PlayoutFinished, PlayoutInterrupted, PlayoutStarted, SessionEnded

HeldEvent = Annotated[PlayoutStarted | PlayoutFinished | PlayoutInterrupted | SessionEnded,
                      Field(discriminator="type")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Final(_Frozen):
    """A final transcript not yet part of a committed turn."""

    start_ns: int
    end_ns: int
    text: str
    wall_ns: int


class Score(_Frozen):
    """An end-of-turn score (EndOfTurnScored) of one utterance, not yet part of a decided turn."""

    start_ns: int
    end_ns: int
    probability: float


class Segment(_Frozen):
    """One utterance of a turn: speech long enough to count, between a VAD start and its stop."""

    start_ns: int
    announced_ns: int  # when the VAD said it started (SpeechStarted's media time), a little after start_ns
    end_ns: int | None = None  # the last voiced frame; None while it goes on
    end_wall_ns: int = 0
    vad_end_ns: int = 0  # media time of the SpeechStopped decision
    vad_end_wall_ns: int = 0


class OpenTurn(_Frozen):
    """The person's turn in progress, not yet committed: its utterances in order (the last may go on).

    A pause between two of them may still turn out to be the turn's end: when the words before it come late
    (a loaded recogniser), the pause is judged once they come, as if they had come at once."""

    segments: tuple[Segment, ...]
    speculative_ns: int | None = None  # media time the current turn id was offered speculatively
    speculative_wall_ns: int = 0

    @property
    def start_ns(self) -> int:
        return self.segments[0].start_ns

    @property
    def last(self) -> Segment:
        return self.segments[-1]


class Interruption(_Frozen):
    """A barge-in waiting for words: without them it is a false interruption."""

    turn_id: str
    played_ms: int
    at_ns: int


class TurnState(_Frozen):
    session_id: str
    node_id: str = "unknown"
    turn_no: int = 1  # ordinal of the next turn id, f"{session_id}-{turn_no}"
    out_seq: int = 0  # seq of the next event this processor publishes for the session
    seen: dict[str, tuple[int, int]] = {}  # edge source -> (media_ns, seq) of the last event applied
    decided_until_ns: int = 0  # speech up to here belongs to a turn committed or dropped: its finals are stale
    now_ns: int = 0  # the session's media clock as far as events have carried it
    speaking: bool = False
    utterance_start_ns: int = 0  # start of the utterance going on (valid while speaking)
    utterance_announced_ns: int = 0  # media time of its SpeechStarted
    utterance_confirmed: bool = False  # it lasted at least the minimum duration
    turn: OpenTurn | None = None
    finals: tuple[Final, ...] = ()
    scores: tuple[Score, ...] = ()
    reply: str | None = None  # committed turn whose reply is in flight or playing
    interruption: Interruption | None = None
    held: tuple[HeldEvent, ...] = ()  # edge events read ahead of the VAD events it sent before them
    ending: bool = False  # the session ended; words the person said before are still due
    ended: bool = False

    def turn_id(self) -> str:
        return f"{self.session_id}-{self.turn_no}"

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes) -> TurnState:
        return cls.model_validate_json(data)
