"""Which known recording, and which part of it, a transcription request holds: the reference ASR's ear.

Why an energy envelope and not an exact hash: the audio the platform sends for transcription has been through
Opus both ways, the edge's echo canceller and noise suppressor, and the VAD's cut (a pre-roll before the onset,
a hangover after the offset), so no two bytes match the recording. A transcription request also carries only
the audio (no session id), and the VAD may split one recording at its pauses into several requests, so neither
"the next utterance registered for this session" nor "the recording of this duration" identifies it. What
survives all of that is the loudness contour of the speech: its log energy every 10 ms, floored (so the noise
the suppressor removed and the silence it left look alike) and normalised. The request's contour is slid along
every registered recording's and the best Pearson correlation names the recording and the offset; the words
whose middle falls inside the matched span are the transcript (word timings from ``.words.json`` when the
recording has them, else the transcript spread evenly over its speech). A span that reaches the recording's last
word ends with a full stop, as a Whisper server's would.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HOP = 160  # samples of 16 kHz audio per envelope point: 10 ms
BANDS = (0, 500, 1500, 3000)  # lower edges (Hz): where the energy sits tells "meters" from "he was"
FLOOR_DB = -50.0  # below this (dBFS) everything is "quiet": NS output and the original's room tone look alike
MIN_SCORE = 0.4  # a weaker best match is no match (noise, an echo fragment): answered with no words; unrelated
# speech scores up to about 0.8 against these recordings, so this does not tell speech apart, only noise: the bench
# speaks only registered recordings
MIN_POINTS = 20  # 200 ms: shorter requests carry too little contour to place


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Known:
    name: str
    envelope: np.ndarray
    words: tuple[Word, ...]


@dataclass(frozen=True)
class Match:
    name: str  # "" when nothing matched
    score: float
    start_s: float  # where in the recording the request starts
    text: str


def envelope(pcm: np.ndarray) -> np.ndarray:
    """Floored log energy of 16 kHz PCM16 in a few bands, one row per 10 ms: shape (points, bands)."""
    n = len(pcm) // HOP
    if n == 0:
        return np.zeros((0, len(BANDS)), dtype=np.float32)
    frames = pcm[:n * HOP].astype(np.float32).reshape(n, HOP) / 32768.0
    power = np.abs(np.fft.rfft(frames * np.hanning(HOP), axis=1)) ** 2 / HOP
    edges = [int(hz * HOP / 16000) for hz in (*BANDS, 8000)]
    bands = np.stack([power[:, a:b].sum(axis=1) for a, b in zip(edges, edges[1:], strict=False)], axis=1)
    return np.maximum(10 * np.log10(bands + 1e-12), FLOOR_DB).astype(np.float32)


def words_of(wav: Path, duration_s: float, speech: tuple[float, float] | None) -> tuple[Word, ...]:
    """Word timings of a recording: its ``.words.json`` if there is one, else its ``.txt`` spread over its speech."""
    timed = wav.with_suffix(".words.json")
    if timed.exists():
        out = []
        for w in json.loads(timed.read_text())["w"]:
            token = re.sub(r"\(\d+\)$", "", w["t"])
            if token and not token.startswith(("<", "[")):
                out.append(Word(token, w["b"], w["b"] + w["d"]))
        return tuple(out)
    text = wav.with_suffix(".txt")
    tokens = text.read_text().split() if text.exists() else []
    start, end = speech or (0.0, duration_s)
    step = (end - start) / max(1, len(tokens))
    return tuple(Word(t, start + i * step, start + (i + 1) * step) for i, t in enumerate(tokens))


class Recordings:
    """The recordings a benchmark plays, registered once; ``match`` places a request's audio among them."""

    def __init__(self) -> None:
        self._known: list[Known] = []

    def __len__(self) -> int:
        return len(self._known)

    def register(self, name: str, pcm16k: np.ndarray, words: tuple[Word, ...]) -> None:
        self._known.append(Known(name, envelope(pcm16k), words))

    def register_file(self, wav: Path) -> None:
        from bench.utterances import label_span
        from runtime.pcm import read_wav

        pcm, rate = read_wav(wav)
        if rate != 16000:
            raise ValueError(f"{wav}: reference recordings are 16 kHz")
        span = label_span(wav.with_suffix(".lab"))
        if span is None:  # no labels: from the first to the last point within 30 dB of the loudest
            env = envelope(pcm).max(axis=1)
            loud = np.nonzero(env > env.max() - 30)[0]
            span = (loud[0] * HOP / rate, (loud[-1] + 1) * HOP / rate) if len(loud) else None
        self.register(wav.name, pcm, words_of(wav, len(pcm) / rate, span))

    def match(self, pcm16k: np.ndarray) -> Match:
        probe = envelope(pcm16k)
        if len(probe) < MIN_POINTS or float(np.ptp(probe)) < 1.0 or not self._known:
            return Match("", 0.0, 0.0, "")
        best: tuple[float, Known, int] | None = None
        for known in self._known:
            score, lag = _best_lag(probe, known.envelope)
            if best is None or score > best[0]:
                best = (score, known, lag)
        assert best is not None
        score, known, lag = best
        if score < MIN_SCORE:
            return Match("", score, 0.0, "")
        start_s, end_s = lag * HOP / 16000, (lag + len(probe)) * HOP / 16000
        inside = [w for w in known.words if start_s <= (w.start_s + w.end_s) / 2 < end_s]
        text = " ".join(w.text for w in inside)
        if inside and inside[-1] is known.words[-1] and not text.endswith((".", "!", "?")):
            text += "."
        return Match(known.name, round(score, 3), round(start_s, 2), text)


def _best_lag(probe: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """Highest Pearson correlation of ``probe`` against ``ref`` over every offset (``ref`` padded with quiet on
    both sides, so a request that starts before the recording or runs past its end still aligns), and the
    offset into ``ref`` where it is reached (may be negative)."""
    m = len(probe)
    pad = np.full((m - 1, probe.shape[1]), FLOOR_DB, dtype=np.float32)
    padded = np.concatenate([pad, ref, pad]).astype(np.float64)
    numerator = np.zeros(len(padded) - m + 1)
    w_var = np.zeros(len(padded) - m + 1)
    p_var = 0.0
    for band in range(probe.shape[1]):  # each band centred on its own mean; the sums pooled over bands
        p = probe[:, band].astype(np.float64)
        p = p - p.mean()
        p_var += float(np.dot(p, p))
        x = padded[:, band]
        c1 = np.concatenate([[0.0], np.cumsum(x)])
        c2 = np.concatenate([[0.0], np.cumsum(x * x)])
        sums, squares = c1[m:] - c1[:-m], c2[m:] - c2[:-m]
        w_var += np.maximum(squares - sums * sums / m, 0.0)
        numerator += np.correlate(x, p, mode="valid")
    corr = numerator / np.maximum(np.sqrt(w_var * p_var), 1e-6)
    # A window that is almost all padding correlates by accident: count only windows that overlap the recording
    # by at least half the probe.
    lags = np.arange(len(corr)) - (m - 1)
    overlap = np.minimum(lags + m, len(ref)) - np.maximum(lags, 0)
    corr[overlap < min(m, len(ref)) // 2] = -1.0
    i = int(np.argmax(corr))
    return float(corr[i]), int(lags[i])
