"""Pure text helpers of the responder: cutting a token stream into speakable pieces, and what was heard."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s")
_CLAUSE_END = re.compile(r"[,;:\u2014]\s")


@dataclass
class SentenceSplitter:
    """Cuts streamed text into sentences for TTS, as soon as each is complete.

    A sentence ends at . ! or ? followed by whitespace (so "3.5" stays whole). A long one is cut at a clause
    (, ; : —) once it has ``clause_chars``; the first piece is cut at a clause sooner (``first_clause_chars``) so
    the reply starts speaking early. Nothing is longer than ``max_chars`` (cut at a space).
    """

    first_clause_chars: int = 12
    clause_chars: int = 80
    max_chars: int = 200
    _buffer: str = ""
    _pieces: int = field(default=0)

    def push(self, text: str) -> list[str]:
        self._buffer += text
        out: list[str] = []
        while (cut := self._cut()) is not None:
            piece, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:].lstrip()
            if piece:
                out.append(piece)
                self._pieces += 1
        return out

    def flush(self) -> list[str]:
        piece, self._buffer = self._buffer.strip(), ""
        return [piece] if piece else []

    def _cut(self) -> int | None:
        if m := _SENTENCE_END.search(self._buffer):
            return m.end()
        threshold = self.first_clause_chars if self._pieces == 0 else self.clause_chars
        for m in _CLAUSE_END.finditer(self._buffer):
            if m.end() >= threshold:
                return m.end()
        if len(self._buffer) > self.max_chars:
            space = self._buffer.rfind(" ", 0, self.max_chars)
            return space + 1 if space > 0 else self.max_chars
        return None


MS_PER_CHAR = 65.0  # speech at about 175 words a minute: a guess used until a sentence's length is known


def heard_text(sentences: list[tuple[str, float, bool]], played_ms: float | None) -> str:
    """What the person heard of a reply, marked with "..." where they cut in.

    ``sentences`` are (text, audio ms sent, complete) in order; ``played_ms`` None means all of it (no barge-in).
    Whole sentences played count whole; of the one playing at the cut, the played share of its words (an even
    pace within it). A sentence still being synthesised has an unknown length: it is estimated from the
    reply's pace so far (characters per ms of the complete sentences).
    """
    if played_ms is None:
        return " ".join(text for text, _, _ in sentences)
    done_chars = sum(len(t) for t, _, c in sentences if c)
    done_ms = sum(ms for _, ms, c in sentences if c)
    pace = done_ms / done_chars if done_chars and done_ms else MS_PER_CHAR
    heard: list[str] = []
    start = 0.0
    for text, ms, complete in sentences:
        length = ms if complete else max(ms, len(text) * pace)
        if played_ms >= start + length:
            heard.append(text)
        else:
            words = text.split()
            share = max(0.0, played_ms - start) / length if length > 0 else 0.0
            if spoken := words[: int(len(words) * share)]:
                heard.append(" ".join(spoken))
            break
        start += length
    if heard:
        heard[-1] = heard[-1].rstrip(".!?,;:") + "..."
    return " ".join(heard)
