"""Real recordings for the endpointing benchmark with the real parts in the loop: the edge's VAD (Silero and its
segmenter) cuts the utterances, an embedded recogniser (pocketsphinx or Whisper) gives their words, and Smart Turn scores
each pause the way the ASR worker does (the turn's audio up to the VAD's stop decision, its last 8 s).

Single-speaker recordings (librivox, jfk) are one turn each: every pause inside is a pause, the end is the end.
AMI meetings keep their per-speaker turns from the .rttm labels (one microphone mix: the VAD cannot tell the
speakers apart), with Smart Turn scoring the mix as a meeting room's microphone would hear it; no words.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.endpointing_data import Track, Utterance, ami
from inference.asr_worker import TURN_PREROLL_MS
from inference.engines.base import AsrEngine
from inference.engines.smart_turn import SmartTurn
from ingest.engines.vad import SileroVad
from ingest.speech import Segmenter, SpeechStop, VadParams
from runtime.pcm import read_wav

FRAME = 320  # samples in 20 ms
STOP_MS = VadParams.min_silence_ms  # the VAD's stop decision after the last voiced frame (the scored audio's end)
TURN_GAP_MS = 1500  # the ASR worker's asr_turn_gap_ms: a longer pause starts a new turn's audio
ASR_PREROLL_MS = 200  # the ASR worker's asr_preroll_ms


def vad_spans(samples: np.ndarray) -> list[tuple[int, int]]:
    """(start ms, last voiced frame ms) of each utterance, as the edge decides them."""
    vad, segmenter = SileroVad().stream(), Segmenter(VadParams())
    spans = []
    for i in range(len(samples) // FRAME):
        t_ns = i * 20_000_000
        for d in segmenter.push(t_ns, t_ns, vad.probability(samples[i * FRAME:(i + 1) * FRAME])):
            if isinstance(d, SpeechStop):
                spans.append((d.start_media_ns // 1_000_000, d.end_media_ns // 1_000_000))
    return spans


def turn_starts(utterances: list[Utterance]) -> list[int]:
    """Where the scored audio of each utterance's turn begins (the ASR worker's rule)."""
    starts, start, last_end = [], 0, None
    for u in utterances:
        if last_end is None or u.start_ms - last_end >= TURN_GAP_MS:
            start = u.start_ms
        starts.append(start)
        last_end = u.end_ms
    return starts


def scored(scorer: SmartTurn, samples: np.ndarray, utterances: list[Utterance]) -> list[Utterance]:
    clips = [samples[max(0, (s - TURN_PREROLL_MS) * 16):(u.end_ms + STOP_MS) * 16]
             for u, s in zip(utterances, turn_starts(utterances), strict=True)]
    ps = scorer.predict(clips) if clips else []
    return [replace(u, p_complete=p) for u, p in zip(utterances, ps, strict=True)]


async def _words(asr: AsrEngine, samples: np.ndarray, spans: list[tuple[int, int]]) -> list[str]:
    out = []
    for start, end in spans:
        stream = await asr.stream(16000)
        await stream.push(samples[max(0, (start - ASR_PREROLL_MS) * 16):(end + 20) * 16].tobytes())
        out.append(" ".join((await stream.finish()).split()))
        await stream.aclose()
    return out


def recogniser(name: str) -> AsrEngine:
    if name == "whisper":
        from inference.engines.whisper import WhisperAsr

        return WhisperAsr()
    from inference.engines.sphinx import PocketSphinxAsr

    return PocketSphinxAsr(keep_idle=1)


def single_speaker(wavs: list[Path], scorer: SmartTurn, asr_name: str = "pocketsphinx") -> list[Track]:
    """One track of one turn per recording: the edge VAD's utterances, the recogniser's words, scores."""
    asr = recogniser(asr_name)
    tracks = []
    for wav in wavs:
        samples, _ = read_wav(wav)
        samples = np.concatenate([samples, np.zeros(16000, np.int16)])  # the microphone goes on after the words
        spans = vad_spans(samples)
        texts = asyncio.run(_words(asr, samples, spans))
        utterances = [Utterance(s, e, t) for (s, e), t in zip(spans, texts, strict=True)]
        tracks.append([scored(scorer, samples, utterances)])
    return tracks


def ami_scored(folder: Path, scorer: SmartTurn, asr_name: str | None = None) -> list[Track]:
    """The .rttm turns of each speaker (bench.endpointing_data.ami), scored on the meeting's mix; with
    ``asr_name``, each utterance's words are that recogniser's, of the mix (else a neutral placeholder)."""
    tracks = []
    asr = recogniser(asr_name) if asr_name else None
    for rttm in sorted(folder.glob("*.rttm")):
        samples, _ = read_wav(rttm.with_suffix(".wav"))
        for track in ami(folder, only=rttm.stem):
            flat = [u for turn in track for u in turn]
            if asr is not None:
                texts = asyncio.run(_words(asr, samples, [(u.start_ms, u.end_ms) for u in flat]))
                flat = [replace(u, text=t) for u, t in zip(flat, texts, strict=True)]
            scores = iter(scored(scorer, samples, flat))
            tracks.append([[next(scores) for _ in turn] for turn in track])
    return tracks
