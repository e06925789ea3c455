"""Turn thresholds in media nanoseconds, and the signals that pick one: the transcript's last word and the
end-of-turn model's P(complete). Pure."""

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
    complete_probability: float = 0.8
    incomplete_probability: float = 0.3
    confident_silence_ns: int = 200 * MS
    unfinished_silence_ns: int = 1500 * MS
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
            complete_probability=s.turn_complete_probability,
            incomplete_probability=s.turn_incomplete_probability,
            confident_silence_ns=s.turn_confident_silence_ms * MS,
            unfinished_silence_ns=s.turn_unfinished_silence_ms * MS,
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

    def scored_ending(self, probability: float | None) -> Ending | None:
        """What the end-of-turn model says of the pause (None: no score, the model is off or was late)."""
        if probability is None:
            return None
        if probability >= self.complete_probability:
            return "complete"
        return "incomplete" if probability <= self.incomplete_probability else "neutral"

    def silence_needed(self, text: str, probability: float | None = None) -> int:
        """The silence (ns) after which a turn with this text, and this P(complete) of its last utterance, is
        committed, never above the hard cap.

        The text and the model each say complete, neutral or incomplete. An unsure model leaves it to the text.
        A sure one moves the threshold its way (shorter when finished, longer when mid-thought) unless the text
        says the opposite: then neither is trusted and the neutral silence applies."""
        by_text = self.ending(text)
        rules = {
            "complete": self.complete_silence_ns,
            "neutral": self.silence_ns,
            "incomplete": self.incomplete_silence_ns,
        }[by_text]
        by_model = self.scored_ending(probability)
        if by_model == "complete":
            chosen = self.silence_ns if by_text == "incomplete" else min(rules, self.confident_silence_ns)
        elif by_model == "incomplete":
            chosen = self.silence_ns if by_text == "complete" else max(rules, self.unfinished_silence_ns)
        else:
            chosen = rules
        return min(chosen, self.max_silence_ns)

    def speculates(self, text: str, probability: float | None = None) -> bool:
        """Offer a speculative turn only when it may be finished: a continuation word, or the model hearing the
        person mid-thought, says it is not."""
        return (bool(text.strip()) and self.ending(text) != "incomplete"
                and self.scored_ending(probability) != "incomplete")
