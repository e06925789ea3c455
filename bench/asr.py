"""ASR benchmark: the embedded recognisers side by side on the shared speech, wideband and telephone band.

For each recording with a transcript (librivox, goforward, jfk) and its telephone-band copy (down to 8 kHz and
back, 300-3400 Hz), the real edge VAD (Silero + the segmenter) cuts the utterances and marks each 20 ms frame
voiced or not, as the edge does. Each utterance is then fed to a recogniser as the ASR worker feeds it: from
``asr_preroll_ms`` before the speech start to the frame where the VAD decides speech stopped, with the worker's
own rule for starting a final early (``inference.speculation``). From the first early start on, frames are fed in
real time, so a final worked out at the pause races the VAD's stop decision as it would live.

Measured per engine and mode: word error rate (words lower-cased, punctuation and hyphens dropped, "mr" as
"mister", small numbers as words: Whisper writes "Mr." and "10"), time from the end of speech (the end of the
last voiced frame) to the final (the VAD's stop decision, 240 ms later, plus the recogniser's remaining work;
Kafka transit not included), and CPU seconds (all threads of this process) per second of audio fed.

Run: python -m bench.asr [--engines pocketsphinx,whisper,whisper@30] [--speculate-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference import speculation
from inference.engines.base import AsrEngine
from ingest.engines.vad import SileroVad
from ingest.speech import Segmenter, SpeechStop, VadParams
from runtime.pcm import read_wav, resample

SPEECH = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "speech"
FRAME = 320  # samples in 20 ms
FRAME_NS = 20_000_000
PREROLL_NS = 200 * 1_000_000  # the worker's asr_preroll_ms
NUMBERS = dict(enumerate("zero one two three four five six seven eight nine ten eleven twelve".split()))


def words(text: str) -> list[str]:
    text = re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " "))
    out = []
    for w in text.split():
        w = {"mr": "mister", "mrs": "missus"}.get(w, w)
        out.append(NUMBERS.get(int(w), w) if w.isdigit() else w)
    return out


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def telephone(samples: np.ndarray) -> np.ndarray:
    """What a phone line delivers: 8 kHz, 300-3400 Hz, back at 16 kHz."""
    narrow = np.frombuffer(resample(resample(samples.tobytes(), 16000, 8000), 8000, 16000), np.int16)
    spectrum = np.fft.rfft(narrow.astype(np.float64))
    hz = np.fft.rfftfreq(narrow.size, 1 / 16000)
    spectrum[(hz < 300) | (hz > 3400)] = 0
    return np.clip(np.fft.irfft(spectrum, narrow.size), -32768, 32767).astype(np.int16)


@dataclass
class Utt:
    frames: list[tuple[int, bytes, bool]]  # media ns, PCM, voiced (the edge's per-frame flag)
    end_ns: int  # the VAD's speech end: the last voiced frame
    stop_ns: int  # the frame at which the VAD decided speech stopped


@dataclass
class Clip:
    name: str
    group: str
    ref: list[str]
    utterances: list[Utt]


def cut(samples: np.ndarray) -> list[Utt]:
    """The edge's utterances: Silero probability per frame, the segmenter's decisions."""
    vad, segmenter, params = SileroVad().stream(), Segmenter(VadParams()), VadParams()
    frames, utts = [], []
    for i in range(len(samples) // FRAME):
        media, chunk = i * FRAME_NS, samples[i * FRAME:(i + 1) * FRAME]
        p = vad.probability(chunk)
        frames.append((media, chunk.tobytes(), p >= params.threshold))
        for d in segmenter.push(media, media, p):
            if isinstance(d, SpeechStop):
                first = max(0, (d.start_media_ns - PREROLL_NS) // FRAME_NS)
                utts.append(Utt(frames[first:i + 1], d.end_media_ns, media))
    return utts


def clips(speech: Path, band: str) -> list[Clip]:
    wavs = [*sorted((speech / "librivox").glob("*.wav")), speech / "misc" / "goforward.wav",
            speech / "misc" / "jfk.wav"]
    out = []
    for wav in wavs:
        samples, _ = read_wav(wav)
        samples = np.concatenate([samples, np.zeros(16000, np.int16)])  # the microphone goes on after the words
        if band == "telephone":
            samples = telephone(samples)
        out.append(Clip(wav.stem[-4:] if wav.parent.name == "librivox" else wav.stem, wav.parent.name,
                        words(wav.with_suffix(".txt").read_text()), cut(samples)))
    return out


@dataclass
class Run:
    errors: dict[str, int] = field(default_factory=dict)  # group -> word errors
    ref_words: dict[str, int] = field(default_factory=dict)
    lags_ms: list[float] = field(default_factory=list)  # end of speech -> final
    cpu_s: float = 0.0
    audio_s: float = 0.0
    prepared: int = 0
    prepared_used: int = 0
    texts: list[str] = field(default_factory=list)

    def wer(self, group: str) -> float:
        return self.errors.get(group, 0) / max(1, self.ref_words.get(group, 0))


async def transcribe(engine: AsrEngine, utt: Utt, speculate_ns: int, run: Run) -> str:
    """One utterance as the worker feeds it; the lag from the end of speech to the final is added to ``run``."""
    stream = await engine.stream(16000)
    spec, anchor = speculation.Speculation(), None  # anchor: (wall s, media ns) of the first early start
    try:
        for media, pcm, voiced in utt.frames:
            if anchor is not None:
                await asyncio.sleep(max(0.0, anchor[0] + (media - anchor[1]) / 1e9 - time.perf_counter()))
            await stream.push(pcm)
            spec, due = speculation.on_frame(spec, media + FRAME_NS, FRAME_NS, voiced, speculate_ns)
            if due:
                run.prepared += 1
                await stream.prepare()
                anchor = anchor or (time.perf_counter(), media + FRAME_NS)
        decided_ns = utt.stop_ns + FRAME_NS  # the VAD decides once the stop frame is in
        if anchor is not None:
            await asyncio.sleep(max(0.0, anchor[0] + (decided_ns - anchor[1]) / 1e9 - time.perf_counter()))
        t0 = time.perf_counter()
        prepared = speculation.stands(spec, utt.end_ns)
        text = await (stream.finish_prepared() if prepared else stream.finish())
        run.prepared_used += prepared
        run.lags_ms.append((decided_ns - (utt.end_ns + FRAME_NS)) / 1e6 + (time.perf_counter() - t0) * 1000)
        run.audio_s += len(utt.frames) * FRAME_NS / 1e9
        return text
    finally:
        await stream.aclose()


async def measure(engine: AsrEngine, clip: Clip, speculate_ns: int, run: Run) -> None:
    """One clip's utterances into ``run``: its text scored, CPU and audio added."""
    cpu0 = time.process_time()
    text = " ".join([await transcribe(engine, u, speculate_ns, run) for u in clip.utterances])
    run.cpu_s += time.process_time() - cpu0
    run.texts.append(text)
    run.errors[clip.group] = run.errors.get(clip.group, 0) + word_errors(clip.ref, words(text))
    run.ref_words[clip.group] = run.ref_words.get(clip.group, 0) + len(clip.ref)


def engine_named(name: str) -> AsrEngine:
    """``pocketsphinx``, ``whisper``, or ``whisper@S``: Whisper with an encoder window of at least S s."""
    if name.startswith("whisper"):
        from inference.engines.whisper import WhisperAsr

        _, _, window = name.partition("@")
        return WhisperAsr(min_window_s=float(window or 10))
    from inference.engines.sphinx import PocketSphinxAsr

    return PocketSphinxAsr(keep_idle=1)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def main_async(args: argparse.Namespace) -> None:
    bands = {band: clips(args.speech, band) for band in ("wideband", "telephone")}
    print(f"utterances (edge VAD): {', '.join(f'{b} {sum(len(c.utterances) for c in cs)}' for b, cs in bands.items())}")
    print(f"{'engine':15} {'final started':18} {'band':10} {'WER libri':>9} {'WER misc':>8} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'CPU s/s':>7} {'early used':>10}")
    variants = []  # (engine name, engine, mode, early start after ns)
    for name in args.engines.split(","):
        engine = engine_named(name)
        await engine.warm()
        variants.append((name, engine, "at speech stop", 0))
        if engine.capabilities.speculative:
            variants += [(name, engine, f"after {ms} ms pause", ms * 1_000_000) for ms in args.speculate_ms]
    # Clip by clip, every variant in turn: the machine's load changes over a run and hits them all alike.
    runs = {(name, mode, band): Run() for band in bands for name, _, mode, _ in variants}
    for band, data in bands.items():
        for clip in data:
            for name, engine, mode, speculate_ns in variants:
                await measure(engine, clip, speculate_ns, runs[name, mode, band])
    rows = []
    for name, _, mode, speculate_ns in variants:
        for band in bands:
            run = runs[name, mode, band]
            rows.append((name, mode, band, run))
            early = f"{run.prepared_used}/{run.prepared}" if speculate_ns else "-"
            print(f"{name:15} {mode:18} {band:10} {run.wer('librivox'):9.1%} {run.wer('misc'):8.1%} "
                  f"{pct(run.lags_ms, 50):7.0f} {pct(run.lags_ms, 95):7.0f} {run.cpu_s / run.audio_s:7.3f} "
                  f"{early:>10}")
            if args.texts:
                for text in run.texts:
                    print(f"    {text}")
    for engine in {id(v[1]): v[1] for v in variants}.values():
        await engine.aclose()
    print("\nWER libri: the 5 librivox clips; misc: goforward + jfk. p50/p95: end of speech -> final, over the "
          "utterances (the VAD's 240 ms stop decision included). early used: finals started at a pause that were "
          "the utterance's / early starts.")
    best = [r for r in rows if r[2] == "wideband"]
    if best:
        name, mode, _, run = min(best, key=lambda r: statistics.median(r[3].lags_ms))
        print(f"fastest final (wideband p50): {name}, {mode}: {pct(run.lags_ms, 50):.0f} ms; goals: WER <= 12 % "
              f"on librivox, p50 <= 300 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech", type=Path, default=SPEECH)
    parser.add_argument("--engines", default="pocketsphinx,whisper,whisper@30",
                        help="whisper@S: Whisper's encoder window at least S s (default 10; Whisper's own is 30)")
    parser.add_argument("--speculate-ms", type=int, nargs="*", default=[100],
                        help="pauses after which a speculative engine starts its final early (one mode each)")
    parser.add_argument("--texts", action="store_true", help="print each clip's transcript")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
