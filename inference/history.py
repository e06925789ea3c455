"""Per-session conversation history that keeps only what the person actually heard."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from inference.engines.base import Message
from inference.text import heard_text


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


class History:
    def __init__(self, max_turns: int, max_sessions: int) -> None:
        self._max_turns, self._max_sessions = max_turns, max_sessions
        self._sessions: OrderedDict[str, deque[Exchange]] = OrderedDict()

    def messages(self, session_id: str, system_prompt: str, user_text: str) -> list[Message]:
        """The conversation to send the LLM for a new turn of this session."""
        out = [Message("system", system_prompt)] if system_prompt else []
        for ex in self._sessions.get(session_id, ()):
            out.append(Message("user", ex.user_text))
            if heard := heard_text([(s.text, s.ms, s.complete) for s in ex.sentences], ex.played_ms):
                out.append(Message("assistant", heard))
        out.append(Message("user", user_text))
        return out

    def add(self, session_id: str, turn_id: str, user_text: str) -> Exchange:
        """A reply the person will hear (a committed turn); the caller appends its sentences as they are spoken."""
        exchanges = self._sessions.setdefault(session_id, deque(maxlen=self._max_turns))
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)
        exchange = Exchange(turn_id, user_text)
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
