"""Edge and ASR event streams for a scripted conversation, as the edge's VAD and the ASR would publish them.

Used by the endpointing benchmark (timings from real speech labels) and by the turn processor's tests. It
follows the edge's segmenter (ingest/speech.py): SpeechStarted once speech has lasted ``confirm_ms``,
SpeechStopped ``vad_silence_ms`` after the last voiced frame, VadProgress on every 20 ms frame for 2 s after
speech stopped and otherwise every 200 ms. The ASR follows its worker (inference/asr_worker.py) and the
contract in schemas.conversation: from SpeechStarted it emits a partial every ``partial_ms`` of audio fed,
stamped with the audio fed so far (past the speech end, through the hangover), then the final right after
SpeechStopped, stamped no earlier than the last partial, with the utterance's end-of-turn score just before it
when one is given. ``final_delay_ms`` holds the score and final back for that much more media time (the
scorer's work: they are read after the VAD events of those frames).
"""

from __future__ import annotations

from typing import Any

from schemas.audio import FRAME_MS
from schemas.base import Event, Stamper
from schemas.conversation import EndOfTurnScored, TranscriptFinal, TranscriptPartial
from schemas.edge import (
    PlayoutFinished,
    PlayoutInterrupted,
    PlayoutStarted,
    SessionEnded,
    SpeechStarted,
    SpeechStopped,
    VadProgress,
)

MS = 1_000_000
WALL0_NS = 1_700_000_000_000_000_000  # the session's wall clock at media time 0


class Conversation:
    """Append-only script: ``say`` and ``wait`` walk the media clock frame by frame, emitting events."""

    def __init__(self, session_id: str, node_id: str = "edge-1", *, vad_silence_ms: int = 240,
                 confirm_ms: int = 60, asr_lag_ms: int = 5, progress_after_ms: int = 2000,
                 partial_ms: int = 300, final_delay_ms: int = 0) -> None:
        self.session_id, self.node_id = session_id, node_id
        self.vad_silence_ms, self.confirm_ms, self.partial_ms = vad_silence_ms, confirm_ms, partial_ms
        self.asr_lag_ms, self.progress_after_ms = asr_lag_ms, progress_after_ms
        self.final_delay_ms = final_delay_ms
        self._held: list[tuple[int, Event]] = []  # (media ms it is sent at, the score or final)
        self.events: list[Event] = []
        self.t_ms = 0  # the next frame to walk
        self._stamp = {"edge": Stamper(session_id, first_seq=1), "asr": Stamper(session_id, first_seq=1)}
        self._progress_until = -1
        self._last_progress: int | None = None

    def _edge(self, model: type[Event], t_ms: int, **fields: Any) -> None:
        envelope = self._stamp["edge"](t_ms * MS, WALL0_NS + t_ms * MS)
        self.events.append(model(**envelope, node_id=self.node_id, **fields))

    def _frame(self, speaking: bool, voiced: bool = False) -> None:
        t = self.t_ms
        while self._held and self._held[0][0] <= t:
            self.events.append(self._held.pop(0)[1])
        if (t <= self._progress_until or self._last_progress is None
                or t - self._last_progress >= 200):
            self._edge(VadProgress, t, speaking=speaking, probability=0.9 if voiced else 0.05, voiced=voiced)
            self._last_progress = t
        self.t_ms += FRAME_MS

    def wait(self, until_ms: int) -> Conversation:
        """Silence (or, if still inside an utterance's hangover, its end) up to ``until_ms``."""
        while self.t_ms < until_ms:
            self._frame(False)
        return self

    def say(self, start_ms: int, end_ms: int, text: str | None = "", *,
            barge_in: tuple[str, int] | None = None, p_complete: float | None = None) -> Conversation:
        """Speech from ``start_ms`` to ``end_ms`` (its last voiced frame), then its final transcript unless
        ``text`` is None. ``barge_in=(turn_id, played_ms)``: the edge stopped that reply when speech started.
        ``p_complete``: the end-of-turn score sent just before the final."""
        start, end = _frame_ms(start_ms), _frame_ms(end_ms)
        assert start >= self.t_ms and end >= start + self.confirm_ms, (start, end, self.t_ms)
        self.wait(start)
        words = (text or "").split()
        next_partial = start + self.confirm_ms + self.partial_ms
        while self.t_ms <= end:
            if self.t_ms == start + self.confirm_ms:
                self._edge(SpeechStarted, self.t_ms, speech_start_media_ns=start * MS,
                           speech_start_wall_ns=WALL0_NS + start * MS, probability=0.9)
                if barge_in is not None:
                    self._edge(PlayoutInterrupted, self.t_ms, turn_id=barge_in[0], played_ms=barge_in[1],
                               barge_in_media_ns=start * MS)
            self._frame(self.t_ms >= start + self.confirm_ms, voiced=True)
            if self.t_ms >= next_partial and words:
                heard = words[:max(1, len(words) * (self.t_ms - start) // max(1, end - start))]
                self._partial(start, self.t_ms, " ".join(heard))
                next_partial = self.t_ms + self.partial_ms
        stop = end + self.vad_silence_ms
        while self.t_ms < stop:  # the edge's hangover: still "speaking", no longer voiced
            self._frame(True)
            if self.t_ms >= next_partial and words:  # audio past the speech end is still fed
                self._partial(start, self.t_ms, " ".join(words))
                next_partial = self.t_ms + self.partial_ms
        self._edge(SpeechStopped, stop, speech_start_media_ns=start * MS, speech_end_media_ns=end * MS,
                   speech_end_wall_ns=WALL0_NS + end * MS)
        self._progress_until = stop + self.progress_after_ms
        at = stop + FRAME_MS + self.final_delay_ms  # the worker has fed the frame past the stop (and scored it)
        first = len(self.events)
        if p_complete is not None:
            self.score(start, end, p_complete, at_ms=at)
        if text is not None:
            self.final(start, end, text, at_ms=at)
        if self.final_delay_ms:
            self._held += [(at, e) for e in self.events[first:]]
            del self.events[first:]
        return self

    def _partial(self, start_ms: int, fed_ms: int, text: str) -> None:
        envelope = self._stamp["asr"](fed_ms * MS, WALL0_NS + (fed_ms + self.asr_lag_ms) * MS)
        self.events.append(TranscriptPartial(**envelope, text=text, start_media_ns=start_ms * MS,
                                             end_media_ns=fed_ms * MS, engine="script"))

    def final(self, start_ms: int, end_ms: int, text: str, at_ms: int | None = None) -> Conversation:
        at = self.t_ms if at_ms is None else at_ms
        envelope = self._stamp["asr"](at * MS, WALL0_NS + (at + self.asr_lag_ms) * MS)
        self.events.append(TranscriptFinal(**envelope, text=text,
                                           start_media_ns=start_ms * MS, end_media_ns=end_ms * MS,
                                           engine="script"))
        return self

    def score(self, start_ms: int, end_ms: int, p_complete: float, at_ms: int | None = None) -> Conversation:
        at = self.t_ms if at_ms is None else at_ms
        envelope = self._stamp["asr"](at * MS, WALL0_NS + (at + self.asr_lag_ms) * MS)
        self.events.append(EndOfTurnScored(**envelope, start_media_ns=start_ms * MS, end_media_ns=end_ms * MS,
                                           probability=p_complete, engine="script"))
        return self

    def playout_started(self, turn_id: str) -> Conversation:
        self._edge(PlayoutStarted, self.t_ms, turn_id=turn_id)
        return self

    def playout_finished(self, turn_id: str, played_ms: int) -> Conversation:
        self._edge(PlayoutFinished, self.t_ms, turn_id=turn_id, played_ms=played_ms)
        return self

    def end(self, reason: str = "client_closed") -> Conversation:
        self.events += [e for _, e in self._held]
        self._held.clear()
        # The edge's VAD has the last word on the media clock (ingest/peer.py EdgeSession.close).
        self._edge(VadProgress, self.t_ms, speaking=False, probability=0.0, voiced=False)
        self._edge(SessionEnded, self.t_ms, reason=reason)
        return self


def _frame_ms(t_ms: int) -> int:
    return t_ms // FRAME_MS * FRAME_MS
