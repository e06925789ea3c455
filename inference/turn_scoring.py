"""End-of-turn scoring inside the ASR worker: the turn's audio of each session, and its score at each speech stop.

It runs here because this worker already holds the session's audio, while the turn processor sees only events and
the edge's per-frame path must stay lean. The score goes out just before the utterance's final (the turn
processor judges a pause once that final is in): a score not ready within ``asr_turn_score_wait_ms`` is left
out rather than sent after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from inference.engines.base import TurnEndEngine
from schemas.audio import AudioFrame

log = logging.getLogger(__name__)

TURN_AUDIO_MS = 8000  # what the scorer sees of a turn: its last 8 s (Smart Turn's window)
TURN_PREROLL_MS = 500  # audio before the turn's first speech start that is scored with it (as Pipecat does)


@dataclass
class TurnAudio:
    """One session's recent audio and where its current turn began."""

    recent: deque[AudioFrame] = field(default_factory=deque)  # the last TURN_AUDIO_MS
    turn_start_ns: int = 0  # first speech start after a pause of at least asr_turn_gap_ms
    last_end_ns: int | None = None  # the last utterance's speech end

    def add(self, frame: AudioFrame) -> None:
        self.recent.append(frame)
        while self.recent[0].media_ns < frame.media_ns - TURN_AUDIO_MS * 1_000_000:
            self.recent.popleft()

    def speech_started(self, start_ns: int, gap_ns: int) -> None:
        if self.last_end_ns is None or start_ns - self.last_end_ns >= gap_ns:
            self.turn_start_ns = start_ns

    def pcm_until(self, until_ns: int) -> bytes:
        """The turn's audio from shortly before its first speech up to ``until_ns``."""
        since = self.turn_start_ns - TURN_PREROLL_MS * 1_000_000
        return b"".join(f.pcm for f in self.recent if since <= f.media_ns < until_ns)


@dataclass
class ScoreStats:
    scores: int = 0
    scores_missed: int = 0  # not ready within asr_turn_score_wait_ms, or failed: the final went alone
    score_wait_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))  # final ready -> score ready


class TurnScoring:
    def __init__(self, scorer: TurnEndEngine, wait_s: float, stats: ScoreStats) -> None:
        self.scorer = scorer
        self._wait_s = wait_s
        self._stats = stats

    def start(self, audio: TurnAudio, decided_ns: int | None) -> asyncio.Future[float] | None:
        """Start scoring the turn's audio up to the VAD's stop decision (a little silence after the words, as
        the model learnt it): an utterance without a VAD stop is not at a pause and is not scored."""
        if decided_ns is None:
            return None
        pcm = audio.pcm_until(decided_ns)
        return asyncio.ensure_future(self.scorer.score(pcm)) if pcm else None

    async def result(self, session_id: str, scoring: asyncio.Future[float] | None) -> float | None:
        """The score, or None when there was none to wait for, it came too late or it failed."""
        if scoring is None:
            return None
        t0 = time.perf_counter()
        done, _ = await asyncio.wait({scoring}, timeout=self._wait_s)
        self._stats.score_wait_ms.append((time.perf_counter() - t0) * 1000)
        if not done:
            scoring.cancel()  # a late score would break the contract (after the final): it is not sent
        elif not scoring.cancelled() and scoring.exception() is None:
            self._stats.scores += 1
            return scoring.result()
        elif not scoring.cancelled():
            log.error("end-of-turn scorer failed: %s", scoring.exception(), extra={"session_id": session_id})
        self._stats.scores_missed += 1
        return None
