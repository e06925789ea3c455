"""Double talk: does the edge hear a person who talks over the agent, and never the agent's own echo?

Offline, with the edge's own per-frame path (``ingest.near_end.NearEnd``: AEC3, noise suppression, Silero VAD
and the speech/echo gate). The agent is the project's TTS played through a simulated loudspeaker path (a delay,
a short decaying reverb, a coupling level); the person is real speech from ``../shared/data/speech/`` starting
0.2-1.0 s into the reply. The echo is made from what was actually played, so a barge-in silences it as it would
in a room. Levels: the person at -26 dBFS, the reply at -20 dBFS, so an echo at -6 dB is as loud as the person.

Each session is fresh (AEC3 has heard nothing) and its barge-in comes in the first reply, or in a later reply
after a first one of 3 s has played. Reported per configuration: barge-in recall, false barge-ins per minute of
playout from echo alone, and reaction time (the person's speech onset -> the last agent frame sent).

Run: .venv/bin/python -m bench.double_talk [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ingest.client import load_speech
from schemas.audio import FRAME_MS, FRAME_SAMPLES, NS_PER_FRAME, RATE

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
REPLIES = ["Sure. The train leaves the central station at ten past nine, and it reaches the coast a little "
           "before noon, so you will have the whole afternoon by the sea.",
           "I found three restaurants near you that are open now. The closest one is an Italian place about five "
           "minutes away on foot, and it has good reviews for its pasta."]
FIRST_REPLY = "Hello, I can help you plan your trip today."
PERSON_DBFS, REPLY_DBFS, NOISE_DBFS = -26.0, -20.0, -60.0
ONSETS_S = (0.2, 0.4, 0.6, 0.8, 1.0)
PERSON_S = 2.0  # of each person's clip, from its speech onset
ECHO_RUNS = 4  # sessions per reply with echo alone
LATE_S = 1.5  # a barge-in this long after the onset no longer counts as reacting to it


class Listener(Protocol):
    """One session's microphone side, as the edge runs it."""

    def far(self, pcm: np.ndarray) -> None: ...

    def near(self, pcm: np.ndarray, media_ns: int, playing: bool) -> bool:
        """A microphone frame; True when it stops the playing reply (a barge-in)."""


def edge_listener() -> Listener:
    from ingest.engines import build_audio_processing
    from ingest.engines.vad import SileroVad
    from ingest.near_end import Heard, NearEnd
    from ingest.speech import VadParams

    echo, ns = build_audio_processing(aec=True, ns=True)
    heard: list[Heard] = []  # frames whose VAD window is scored (no event loop runs here: at once)
    near_end = NearEnd(SileroVad(), VadParams(), echo, ns, sink=heard.append)

    class Edge:
        def far(self, pcm: np.ndarray) -> None:
            near_end.far(pcm)

        def near(self, pcm: np.ndarray, media_ns: int, playing: bool) -> bool:
            near_end.playing(playing)
            near_end.process(pcm, media_ns, media_ns)
            barge_in = any(h.barge_in is not None for h in heard)
            heard.clear()
            return barge_in

    return Edge()


@dataclass(frozen=True)
class Config:
    delay_ms: int
    echo_db: float
    later: bool  # the barge-in comes in a later reply, after AEC3 has heard a first one

    def __str__(self) -> str:
        return f"{self.delay_ms:>3} ms {self.echo_db:>+5.0f} dB {'later' if self.later else 'first'} reply"


def level(pcm: np.ndarray, dbfs: float) -> np.ndarray:
    """Scaled so its active speech (frames within 30 dB of the loudest) has this RMS level."""
    x = pcm.astype(np.float64)
    frames = x[:len(x) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    active = rms[rms > rms.max() / 31.6]
    return x * (32768 * 10 ** (dbfs / 20) / np.sqrt((active ** 2).mean()))


def room(delay_ms: int, seed: int = 7) -> np.ndarray:
    """A loudspeaker-to-microphone impulse response: the delay, the direct sound, a 150 ms decaying tail with a
    quarter of the direct sound's energy (a device's speaker and microphone are close: the direct path leads)."""
    rng = np.random.default_rng(seed)
    tail = rng.standard_normal(RATE * 150 // 1000) * np.exp(-np.arange(RATE * 150 // 1000) / (RATE * 0.03))
    tail *= 0.5 / np.sqrt((tail ** 2).sum())
    ir = np.zeros(RATE * delay_ms // 1000 + len(tail) + 1)
    ir[RATE * delay_ms // 1000] = 1.0
    ir[RATE * delay_ms // 1000 + 1:] = tail
    return ir / np.sqrt((ir ** 2).sum())


def people() -> list[np.ndarray]:
    """Real speech starting at a known onset: the librivox clips (.lab) and AMI segments that begin after a
    second in which nobody spoke (.rttm)."""
    out = []
    for wav in sorted((SPEECH / "librivox").glob("*.wav")):
        onset = float(wav.with_suffix(".lab").read_text().split()[0])
        out.append(load_speech(wav)[int(onset * RATE):][:int(PERSON_S * RATE)])
    for rttm in sorted((SPEECH / "ami").glob("*.rttm")):
        segments = sorted((float(f[3]), float(f[3]) + float(f[4])) for f in map(str.split, rttm.read_text().splitlines()))
        audio = load_speech(rttm.with_suffix(".wav"))
        for i, (start, end) in enumerate(segments):
            quiet_before = all(e <= start - 1.0 for _, e in segments[:i])
            if quiet_before and end - start >= 1.0 and start >= 1.0:
                out.append(audio[int(start * RATE):][:int(PERSON_S * RATE)])
                break
    return out


async def speak(text: str) -> np.ndarray:
    from inference.engines.espeak import EspeakTts
    from runtime.pcm import Resampler

    tts = EspeakTts()
    await tts.warm()
    resampler, out = Resampler(tts.sample_rate, RATE), b""
    async for piece in tts.stream(text):
        out += resampler.push(piece)
    out += resampler.flush()
    return np.frombuffer(out, dtype=np.int16)


@dataclass
class Trial:
    barge_in_s: float | None  # from the reply's start, or None
    onset_s: float | None  # the person's onset from the reply's start (None: echo only)
    played_s: float  # reply audio played


def run_trial(listener: Listener, config: Config, reply: np.ndarray, first: np.ndarray | None,
              person: np.ndarray | None, onset_s: float | None, rng: np.random.Generator) -> Trial:
    """One session: [first reply, 1 s pause], 0.5 s of silence, the reply, 1 s of silence."""
    ir = room(config.delay_ms) * 10 ** (config.echo_db / 20)
    lead = [] if first is None else [first, np.zeros(RATE)]
    agent = np.concatenate([*lead, np.zeros(RATE // 2)])
    reply_at = len(agent) // FRAME_SAMPLES
    agent = np.concatenate([agent, reply, np.zeros(RATE)])
    n = len(agent) // FRAME_SAMPLES
    reply_frames = range(reply_at, reply_at + -(-len(reply) // FRAME_SAMPLES))
    mic = rng.standard_normal(n * FRAME_SAMPLES) * 32768 * 10 ** (NOISE_DBFS / 20)
    if person is not None and onset_s is not None:
        at = reply_at * FRAME_SAMPLES + int(onset_s * RATE)
        mic[at:at + len(person)] += person[:len(mic) - at]
    played = np.zeros(n * FRAME_SAMPLES + len(ir))
    stopped, barge_in, played_frames = False, None, 0
    for k in range(n):
        frame = agent[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]
        in_reply = k in reply_frames
        if stopped and in_reply:
            frame = np.zeros(FRAME_SAMPLES)
        far = np.clip(np.round(frame), -32768, 32767).astype(np.int16)
        listener.far(far)
        played_frames += in_reply and not stopped
        played[k * FRAME_SAMPLES:k * FRAME_SAMPLES + len(ir) + FRAME_SAMPLES - 1] += np.convolve(far, ir)
        near = np.clip(np.round(mic[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]
                                + played[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]), -32768, 32767).astype(np.int16)
        if listener.near(near, k * NS_PER_FRAME, in_reply and not stopped) and in_reply and not stopped:
            stopped, barge_in = True, (k + 1 - reply_at) * FRAME_MS / 1000
    return Trial(barge_in, onset_s, played_frames * FRAME_MS / 1000)


def trials(make: Callable[[], Listener], config: Config, replies: list[np.ndarray], first: np.ndarray,
           persons: list[np.ndarray], onsets: tuple[float, ...]) -> Iterator[Trial]:
    rng = np.random.default_rng(1)
    lead = first if config.later else None
    for reply in replies:
        for _ in range(ECHO_RUNS):  # each with its own microphone noise
            yield run_trial(make(), config, reply, lead, None, None, rng)
    for i, person in enumerate(persons):
        for onset in onsets:
            yield run_trial(make(), config, replies[i % len(replies)], lead, person, onset, rng)


def summarise(config: Config, results: list[Trial]) -> dict[str, float]:
    talk = [t for t in results if t.onset_s is not None]
    echo = [t for t in results if t.onset_s is None]
    early = [t for t in talk if t.barge_in_s is not None and t.barge_in_s < t.onset_s]  # type: ignore[operator]
    heard = [t for t in talk if t.barge_in_s is not None and t.onset_s <= t.barge_in_s <= t.onset_s + LATE_S]  # type: ignore[operator]
    reactions = sorted((t.barge_in_s - t.onset_s) * 1000 for t in heard)  # type: ignore[operator]
    echo_minutes = sum(t.played_s for t in echo) / 60
    return {"recall": len(heard) / len(talk), "heard": len(heard), "talks": len(talk), "early": len(early),
            "false_per_min": sum(t.barge_in_s is not None for t in echo) / echo_minutes,
            "reaction_p50": statistics.median(reactions) if reactions else float("nan"),
            "reaction_p95": reactions[min(len(reactions) - 1, int(0.95 * len(reactions)))] if reactions else float("nan")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer onsets (0.2, 0.6, 1.0)")
    args = parser.parse_args(argv)
    replies = [level(asyncio.run(speak(text)), REPLY_DBFS) for text in REPLIES]
    first = level(asyncio.run(speak(FIRST_REPLY)), REPLY_DBFS)
    persons = [level(p, PERSON_DBFS) for p in people()]
    onsets = (0.2, 0.6, 1.0) if args.quick else ONSETS_S
    print(f"{len(persons)} people x {len(onsets)} onsets per configuration; echo alone: "
          f"{ECHO_RUNS * sum(len(r) for r in replies) / RATE:.0f} s of reply per configuration")
    print(f"{'configuration':28} {'recall':>12} {'early':>6} {'false/min':>10} {'react p50':>10} {'react p95':>10}")
    for delay in (40, 120):
        for echo_db in (-6.0, -12.0):
            for later in (False, True):
                config = Config(delay, echo_db, later)
                s = summarise(config, list(trials(edge_listener, config, replies, first, persons, onsets)))
                print(f"{config!s:28} {s['heard']:>3}/{s['talks']:<3} {s['recall']:>4.0%} {s['early']:>6} "
                      f"{s['false_per_min']:>10.2f} {s['reaction_p50']:>8.0f} ms {s['reaction_p95']:>7.0f} ms")


if __name__ == "__main__":
    main()
