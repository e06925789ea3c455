"""Turn thresholds in media nanoseconds and the transcript signal that picks one. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from streams.turns.settings import DEFAULT_CONTINUATION_WORDS, TurnSettings

MS = 1_000_000
_WORD = re.compile(r"[a-z']+")
Ending = Literal["complete", "neutral", "incomplete"]


@dataclass(frozen=True)
class Policy:
    silence_ns: int = 500 * MS
    complete_silence_ns: int = 300 * MS
    incomplete_silence_ns: int = 1200 * MS
    max_silence_ns: int = 1500 * MS
    speculative_ns: int = 200 * MS
    asr_wait_ns: int = 8000 * MS
    min_speech_ns: int = 150 * MS
    false_interruption_ns: int = 1000 * MS
    resume_false_interruption: bool = True
    continuation_words: frozenset[str] = frozenset(DEFAULT_CONTINUATION_WORDS.split(","))

    @classmethod
    def from_settings(cls, s: TurnSettings) -> Policy:
        return cls(
            silence_ns=s.turn_silence_ms * MS,
            complete_silence_ns=s.turn_complete_silence_ms * MS,
            incomplete_silence_ns=s.turn_incomplete_silence_ms * MS,
            max_silence_ns=s.turn_max_silence_ms * MS,
            speculative_ns=s.turn_speculative_ms * MS,
            asr_wait_ns=s.turn_asr_wait_ms * MS,
            min_speech_ns=s.turn_min_speech_ms * MS,
            false_interruption_ns=s.turn_false_interruption_ms * MS,
            resume_false_interruption=s.turn_resume_false_interruption,
            continuation_words=frozenset(w.strip().lower() for w in s.turn_continuation_words.split(",") if w.strip()),
        )

    def ending(self, text: str) -> Ending:
        """How the text ends: a sentence end (. ! ?), a word that rarely ends one, or neither."""
        stripped = text.rstrip()
        if stripped.endswith(("?", ".", "!")):
            return "complete"
        words = _WORD.findall(stripped.lower())
        if words and words[-1] in self.continuation_words:
            return "incomplete"
        return "neutral"

    def silence_needed(self, text: str) -> int:
        """The silence (ns) after which a turn with this text is committed, never above the hard cap."""
        chosen = {
            "complete": self.complete_silence_ns,
            "neutral": self.silence_ns,
            "incomplete": self.incomplete_silence_ns,
        }[self.ending(text)]
        return min(chosen, self.max_silence_ns)

    def speculates(self, text: str) -> bool:
        """Offer a speculative turn only for text that may be finished: a continuation word says it is not."""
        return bool(text.strip()) and self.ending(text) != "incomplete"
