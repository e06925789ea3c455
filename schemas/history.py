"""The conversation as heard (voice.history): one record per session, the fold of its turns.

The responder that owns a session publishes the session's whole history (its last turns: what the person said,
the reply sentence by sentence with the audio sent of each, and how much of it was played) every time it changes
in a way that the turn events alone cannot rebuild: a reply made, a barge-in, a false interruption. The topic is
compacted and keyed by session, so compaction keeps exactly the latest record of each session: that is why a
record carries the whole history and not one turn (a per-turn record under the session key would be compacted
away). A tombstone (no value) forgets a session that ended. A responder that is assigned partitions of
voice.turns reads the same partitions of this topic (same key, same partition count) before it answers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.base import Event
from schemas.bounds import MediaMs, Text, TurnId

MAX_HISTORY_TURNS = 1000  # far above what a responder keeps for its LLM (VOICEBUS_RESPONDER_HISTORY_TURNS)


class SpokenSentence(BaseModel):
    """One sentence of a reply and the audio sent of it (it is cut short when the reply is)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: Text
    ms: float = Field(ge=0.0, le=float(7 * 24 * 3600 * 1000))
    complete: bool  # all of its audio was made (its length is known)


class HeardTurn(BaseModel):
    """One turn: what the person said and the reply as spoken; ``played_ms`` set: a barge-in cut it there."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    turn_id: TurnId
    user_text: Text
    sentences: tuple[SpokenSentence, ...] = ()
    played_ms: MediaMs | None = None
    # The reply was made to its end (or stopped) and the edge got all of it: a responder that reads the turn's
    # commit again (its offset was not committed yet) does not answer it again.
    answered: bool = False


class ConversationHistory(Event):
    """The session's conversation so far, oldest turn first (the latest record of a session is all of it)."""

    type: Literal["conversation_history"] = "conversation_history"
    turns: tuple[HeardTurn, ...] = Field(max_length=MAX_HISTORY_TURNS)
