"""What the echo canceller costs per 20 ms frame, and what it does, through two bindings of WebRTC's APM side by side:
livekit's ``rtc.AudioProcessingModule`` (the edge's, ``ingest.engines.apm``: an FFI call per 10 ms chunk and
direction, four per frame) and ``pywebrtc-audio`` (pybind11, one call per frame with near and far together).

Cost: µs per frame with AEC3 + noise suppression + high-pass on speech, and with nothing enabled (the binding's
own overhead), median of several runs, pinned to one core if there are two. Quality, on the same signal for both:
real speech played through a simulated loudspeaker path (bench.double_talk's room, 40 ms, -6 dB) with -60 dBFS
noise; echo alone for 12 s, then a person (librivox) talks over it for 4 s. Reported: echo return loss enhancement
over the last 6 s of echo alone (dB, higher is better) and the person's level after processing during double talk
relative to the person alone at the microphone (dB; near 0 keeps the person).

    .venv/bin/python -m bench.aec_cost     (pywebrtc-audio is needed for its column: pip install pywebrtc-audio)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.double_talk import level, room
from ingest.client import load_speech
from ingest.engines.apm import Apm
from schemas.audio import FRAME_SAMPLES, RATE

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
Process = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (near, far) of one frame -> cleaned near


def livekit(aec: bool, ns: bool) -> Process:
    apm = Apm(echo_cancellation=aec, noise_suppression=ns)

    def process(near: np.ndarray, far: np.ndarray) -> np.ndarray:
        apm.reverse(far)
        return apm.forward(near)

    return process


def pywebrtc(aec: bool, ns: bool) -> Process:
    from pywebrtc_audio import AudioProcessor

    ap = AudioProcessor(sample_rate=RATE, echo_cancellation=aec, noise_suppression=ns, high_pass_filter=True)
    return lambda near, far: ap.process(near, far)


def signal() -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, slice, slice]:
    far = level(np.tile(load_speech(SPEECH / "misc" / "jfk.wav"), 2)[:RATE * 16], -20.0)
    person = level(load_speech(next(iter(sorted((SPEECH / "librivox").glob("*.wav")))))[RATE // 4:RATE * 17 // 4],
                   -26.0)
    echo = np.convolve(far, room(40) * 10 ** (-6 / 20))[:len(far)]
    noise = np.random.default_rng(1).standard_normal(len(far)) * 32768 * 10 ** (-60 / 20)
    talk = slice(RATE * 12, RATE * 16)
    near = echo + noise
    near[talk] += person
    clean = np.zeros(len(far))
    clean[talk] = person
    to16 = lambda x: np.clip(np.round(x), -32768, 32767).astype(np.int16)  # noqa: E731
    n = len(far) // FRAME_SAMPLES
    return ([to16(far[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]) for k in range(n)],
            [to16(near[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]) for k in range(n)], clean,
            slice(RATE * 6, RATE * 12), talk)


def cost(make: Callable[[bool, bool], Process], on: bool, far: list[np.ndarray], near: list[np.ndarray]) -> float:
    runs = []
    for _ in range(5):
        process = make(on, on)
        t = time.perf_counter()
        for f, m in zip(far, near, strict=True):
            process(m, f)
        runs.append((time.perf_counter() - t) / len(far) * 1e6)
    return statistics.median(runs)


def quality(make: Callable[[bool, bool], Process], far: list[np.ndarray], near: list[np.ndarray],
            clean: np.ndarray, echo_only: slice, talk: slice) -> tuple[float, float]:
    process = make(True, True)
    out = np.concatenate([process(m, f) for f, m in zip(far, near, strict=True)]).astype(np.float64)
    mic = np.concatenate(near).astype(np.float64)
    erle = 10 * np.log10(np.mean(mic[echo_only] ** 2) / np.mean(out[echo_only] ** 2))
    kept = 10 * np.log10(np.mean(out[talk] ** 2) / np.mean(clean[talk] ** 2))
    return erle, kept


def main() -> int:
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {0})
    far, near, clean, echo_only, talk = signal()
    engines: dict[str, Callable[[bool, bool], Process]] = {"livekit rtc.AudioProcessingModule": livekit}
    try:
        import pywebrtc_audio  # noqa: F401

        engines["pywebrtc-audio AudioProcessor"] = pywebrtc
    except ImportError:
        print("pywebrtc-audio is not installed: its column is left out")
    print(f"load average {os.getloadavg()[0]:.2f}")
    print("| binding | µs/frame AEC3+NS+HPF | µs/frame nothing on | ERLE echo alone dB | person kept in double talk dB |")
    print("|---|---|---|---|---|")
    for name, make in engines.items():
        erle, kept = quality(make, far, near, clean, echo_only, talk)
        print(f"| {name} | {cost(make, True, far, near):.1f} | {cost(make, False, far, near):.1f} | {erle:.1f} | "
              f"{kept:+.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
