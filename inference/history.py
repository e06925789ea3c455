"""Per-session conversation history that keeps only what the person actually heard.

It is the responder's fold of the session's turns, and ``voice.history`` holds the same fold (schemas.history):
``snapshot`` gives a session's record, ``restore`` takes one back, so whichever responder owns a session next
goes on from where the last one left it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from inference.engines.base import Message
from inference.text import heard_text
from schemas.history import HeardTurn, SpokenSentence


@dataclass
class Spoken:
    """A sentence of a reply and how much of its audio was sent (it grows while the sentence streams)."""

    text: str
    ms: float = 0.0
    complete: bool = False  # all of its audio was made


@dataclass
class Exchange:
    """One turn: what the person said and the reply as spoken, sentence by sentence with its audio length."""

    turn_id: str
    user_text: str
    sentences: list[Spoken] = field(default_factory=list)
    played_ms: float | None = None  # set by a barge-in: only this much of the reply was heard
    answered: bool = False  # the reply is made (or stopped) and sent: not to be answered again

    def record(self) -> HeardTurn:
        return HeardTurn(turn_id=self.turn_id, user_text=self.user_text, answered=self.answered,
                         played_ms=None if self.played_ms is None else round(self.played_ms),
                         sentences=tuple(SpokenSentence(text=s.text, ms=s.ms, complete=s.complete)
                                         for s in self.sentences))

    @classmethod
    def of(cls, turn: HeardTurn) -> Exchange:
        return cls(turn.turn_id, turn.user_text, [Spoken(s.text, s.ms, s.complete) for s in turn.sentences],
                   turn.played_ms, turn.answered)


class History:
    def __init__(self, max_turns: int, max_sessions: int) -> None:
        self._max_turns, self._max_sessions = max_turns, max_sessions
        self._sessions: OrderedDict[str, deque[Exchange]] = OrderedDict()

    def messages(self, session_id: str, system_prompt: str, user_text: str, turn_id: str = "") -> list[Message]:
        """The conversation to send the LLM for a new turn of this session (``turn_id`` itself left out: a turn
        answered again, after the responder that answered it died, may be in the history already)."""
        out = [Message("system", system_prompt)] if system_prompt else []
        for ex in self._sessions.get(session_id, ()):
            if ex.turn_id == turn_id:
                continue
            out.append(Message("user", ex.user_text))
            if heard := heard_text([(s.text, s.ms, s.complete) for s in ex.sentences], ex.played_ms):
                out.append(Message("assistant", heard))
        out.append(Message("user", user_text))
        return out

    def add(self, session_id: str, turn_id: str, user_text: str) -> Exchange:
        """A reply the person will hear (a committed turn); the caller appends its sentences as they are spoken.
        A turn already here (answered again) starts afresh in its place."""
        exchanges = self._session(session_id)
        exchange = Exchange(turn_id, user_text)
        for i, ex in enumerate(exchanges):
            if ex.turn_id == turn_id:
                exchanges[i] = exchange
                return exchange
        exchanges.append(exchange)
        return exchange

    def heard(self, session_id: str, turn_id: str, played_ms: float | None) -> bool:
        """A barge-in: the reply of ``turn_id`` was heard only up to ``played_ms``. False if unknown."""
        for ex in self._sessions.get(session_id, ()):
            if ex.turn_id == turn_id:
                ex.played_ms = played_ms
                return True
        return False

    def resumed(self, session_id: str, turn_id: str) -> bool:
        """The barge-in was false and the reply plays on: it is heard to its end (or to the next barge-in)."""
        return self.heard(session_id, turn_id, None)

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def knows(self, session_id: str) -> bool:
        return session_id in self._sessions

    def answered(self, session_id: str, turn_id: str) -> bool:
        """Whether the turn's reply was made and sent (here, or by the responder whose history this took)."""
        return any(ex.turn_id == turn_id and ex.answered for ex in self._sessions.get(session_id, ()))

    def snapshot(self, session_id: str) -> tuple[HeardTurn, ...]:
        """The session's history as its voice.history record holds it."""
        return tuple(ex.record() for ex in self._sessions.get(session_id, ()))

    def restore(self, session_id: str, turns: tuple[HeardTurn, ...]) -> None:
        """Take a session's history from its voice.history record (what was here of it is replaced)."""
        exchanges = self._session(session_id)
        exchanges.clear()
        exchanges.extend(Exchange.of(t) for t in turns)

    def clear(self) -> None:
        self._sessions.clear()

    def _session(self, session_id: str) -> deque[Exchange]:
        exchanges = self._sessions.setdefault(session_id, deque(maxlen=self._max_turns))
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        return exchanges
