"""The edge's VAD on real speech: per-frame F1 against the hand labels, and the cost of one batched call.

F1, side by side on the same recordings (``../shared/data/speech``: librivox ``.lab`` speech spans, the same clips
with the word timings of ``.words.json`` as finer labels, AMI meetings' ``.rttm`` speaker turns inside ``.uem``):

- the model's own windows: each 32 ms window's probability against the label at its centre (the model's ceiling);
- frame, last window: each 20 ms frame with the last window complete when the frame arrived (the edge until now,
  ``SileroVad().stream()``);
- frame, window at its centre: each frame with the window holding its centre (the edge now: ``NearEnd``, batched).

A frame is speech when its probability reaches the threshold (0.5); its label is the label at its centre. Also
per configuration: the speech start and stop the segmenter decides, against the ``.lab`` onset and offset (median
signed error, ms; the start includes the segmenter's onset pad), when each was decided (the arrival of the frame
that made the decision, ms after the labelled onset or offset: what a listener waits), and how long a frame waits
for its probability after it arrived (mean and worst, ms).

Then the batch: µs per stream for one window of B streams in one ONNX call, against B calls of one.

    .venv/bin/python -m bench.vad_frames
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ingest.client import load_speech
from ingest.engines.vad import SileroVad
from ingest.engines.vad_batch import CONTEXT, WINDOW
from ingest.near_end import Heard, NearEnd
from ingest.speech import Segmenter, SpeechStart, SpeechStop, VadParams
from schemas.audio import FRAME_SAMPLES, NS_PER_FRAME, RATE

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
THRESHOLD = 0.5
Spans = list[tuple[float, float]]


@dataclass
class Clip:
    name: str
    pcm: np.ndarray
    spans: Spans  # labelled speech, seconds
    scored: tuple[float, float]  # the region labels cover, seconds
    lab: tuple[float, float] | None  # .lab onset and offset, seconds


def lab_spans(path: Path) -> Spans:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    spans, start = [], None
    for t, _, state in rows:
        if state == "speech":
            start = float(t)
        elif start is not None:
            spans.append((start, float(t)))
            start = None
    return spans


def data_sets(root: Path) -> dict[str, list[Clip]]:
    librivox, words, ami = [], [], []
    for wav in sorted((root / "librivox").glob("*.wav")):
        # A second of silence after each clip (they end with the speech): the segmenter's stop needs it.
        pcm, spans = np.concatenate([load_speech(wav), np.zeros(RATE, np.int16)]), lab_spans(wav.with_suffix(".lab"))
        librivox.append(Clip(wav.stem, pcm, spans, (0.0, 1e9), (spans[0][0], spans[-1][1])))
        timed = json.loads((wav.parent / f"{wav.stem}.words.json").read_text())["w"]
        words.append(Clip(wav.stem, pcm, [(w["b"], w["b"] + w["d"]) for w in timed if w["t"] != "<sil>"],
                          (0.0, 1e9), None))
    for wav in sorted((root / "ami").glob("*.wav")):
        spans = []
        for line in wav.with_suffix(".rttm").read_text().splitlines():
            f = line.split()
            spans.append((float(f[3]), float(f[3]) + float(f[4])))
        uem = wav.with_suffix(".uem").read_text().split()
        ami.append(Clip(wav.stem, load_speech(wav), spans, (float(uem[2]), float(uem[3])), None))
    return {"librivox (.lab)": librivox, "librivox (word timings)": words, "AMI (.rttm)": ami}


def labelled(spans: Spans, times: np.ndarray) -> np.ndarray:
    out = np.zeros(len(times), dtype=bool)
    for a, b in spans:
        out |= (times >= a) & (times < b)
    return out


def model_windows(vad: SileroVad, pcm: np.ndarray) -> np.ndarray:
    x = np.concatenate([np.zeros(CONTEXT, np.float32), pcm.astype(np.float32) / 32768.0])
    state, out = np.zeros((2, 1, 128), np.float32), []
    for i in range((len(x) - CONTEXT) // WINDOW):
        p, state = vad.session.run(None, {"input": x[None, i * WINDOW:(i + 1) * WINDOW + CONTEXT], "state": state,
                                          "sr": np.array(RATE, np.int64)})
        out.append(float(p[0, 0]))
    return np.array(out)


# per frame: probabilities, decisions with the frame whose arrival made them, frames each one waited
Run = tuple[np.ndarray, list[tuple[object, int]], list[int]]


def last_window(vad: SileroVad, pcm: np.ndarray, params: VadParams) -> Run:
    # with its own onset pad: a whole window (this path's probabilities lag the frame by about one)
    stream, segmenter = vad.stream(), Segmenter(replace(params, onset_pad_ms=32))
    probs, decisions = [], []
    for k in range(len(pcm) // FRAME_SAMPLES):
        p = stream.probability(pcm[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES])
        probs.append(p)
        decisions += [(d, k) for d in segmenter.push(k * NS_PER_FRAME, k * NS_PER_FRAME, p)]
    return np.array(probs), decisions, [0] * len(probs)


def at_centre(vad: SileroVad, pcm: np.ndarray, params: VadParams) -> Run:
    """Through the edge's own path (NearEnd without echo cancellation), recording how many frames later each frame
    was heard (a frame arrives as one packet: it waits a whole packet or none)."""
    heard: list[Heard] = []
    near_end = NearEnd(vad, params, sink=heard.append)
    decisions: list[tuple[object, int]] = []
    waited: list[int] = []
    n = len(pcm) // FRAME_SAMPLES
    for k in range(n):
        before = len(heard)
        near_end.process(pcm[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES], k * NS_PER_FRAME, k * NS_PER_FRAME, k)
        waited += [k - h.tag for h in heard[before:]]
        decisions += [(d, k) for h in heard[before:] for d in h.decisions]
    near_end.flush()
    waited += [n - h.tag for h in heard[len(waited):]]
    return np.array([h.probability for h in heard]), decisions, waited


def f1(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    return int(np.sum(pred & truth)), int(np.sum(pred & ~truth)), int(np.sum(~pred & truth))


def score(counts: np.ndarray) -> str:
    tp, fp, fn = counts
    return f"{2 * tp / (2 * tp + fp + fn):.4f} | {tp / (tp + fp):.3f} | {tp / (tp + fn):.3f}"


def _med(values: list[float]) -> str:
    return f"{np.median(values):+.0f}" if values else "-"


def quality(root: Path, params: VadParams) -> None:
    vad = SileroVad()
    paths: dict[str, Callable[..., tuple[np.ndarray, list[object], list[int]]]] = {
        "frame, last window (before)": last_window, "frame, window at its centre (now)": at_centre}
    print("| labels | VAD per | F1 | precision | recall | start err ms | stop err ms | start decided ms | "
          "stop decided ms | frame waits ms mean/max |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, clips in data_sets(root).items():
        counts = {"model's own windows": np.zeros(3, int), **{p: np.zeros(3, int) for p in paths}}
        errors: dict[str, tuple[list[float], list[float]]] = {p: ([], []) for p in paths}
        decided: dict[str, tuple[list[float], list[float]]] = {p: ([], []) for p in paths}
        waits: dict[str, list[int]] = {p: [] for p in paths}
        for clip in clips:
            w = model_windows(vad, clip.pcm)
            centres = (np.arange(len(w)) * WINDOW + WINDOW / 2) / RATE
            inside = (centres >= clip.scored[0]) & (centres < clip.scored[1])
            counts["model's own windows"] += f1((w >= THRESHOLD)[inside], labelled(clip.spans, centres)[inside])
            for path, run in paths.items():
                probs, decisions, waited = run(vad, clip.pcm, params)
                centres = (np.arange(len(probs)) * FRAME_SAMPLES + FRAME_SAMPLES / 2) / RATE
                inside = (centres >= clip.scored[0]) & (centres < clip.scored[1])
                counts[path] += f1((probs >= THRESHOLD)[inside], labelled(clip.spans, centres)[inside])
                waits[path] += waited
                starts = [(d.start_media_ns / 1e9, k) for d, k in decisions if isinstance(d, SpeechStart)]
                stops = [(d.end_media_ns / 1e9, k) for d, k in decisions if isinstance(d, SpeechStop)]
                if clip.lab and starts and stops:
                    start, stop = errors[path], decided[path]
                    start[0].append((starts[0][0] - clip.lab[0]) * 1000)
                    start[1].append((stops[-1][0] + 0.02 - clip.lab[1]) * 1000)  # the last voiced frame's end
                    stop[0].append((starts[0][1] + 1) * 20 - clip.lab[0] * 1000)  # when the frame deciding it arrived
                    stop[1].append((stops[-1][1] + 1) * 20 - clip.lab[1] * 1000)
        for path, c in counts.items():
            start, stop = errors.get(path, ([], []))
            start_at, stop_at = decided.get(path, ([], []))
            wait = waits.get(path)
            print(f"| {name} | {path} | {score(c)} | {_med(start)} | {_med(stop)} | {_med(start_at)} | "
                  f"{_med(stop_at)} | {f'{20 * np.mean(wait):.1f}/{20 * max(wait)}' if wait else '-'} |")


def batching(sizes: list[int], rounds: int = 200) -> None:
    vad = SileroVad()
    rng = np.random.default_rng(3)
    speech = load_speech(SPEECH / "misc" / "jfk.wav").astype(np.float32) / 32768.0
    print("\n| streams B | B calls of 1: µs/stream | 1 call of B: µs/stream | ratio |")
    print("|---|---|---|---|")
    sr = np.array(RATE, np.int64)
    for b in sizes:
        starts = rng.integers(0, len(speech) - (rounds + 1) * WINDOW, b)
        windows = [[speech[s + r * WINDOW:s + r * WINDOW + WINDOW + CONTEXT] for s in starts] for r in range(rounds)]
        states = [np.zeros((2, 1, 128), np.float32) for _ in range(b)]
        t = time.perf_counter()
        for r in range(rounds):
            for i in range(b):
                _, states[i] = vad.session.run(None, {"input": windows[r][i][None], "state": states[i], "sr": sr})
        single = (time.perf_counter() - t) / rounds / b * 1e6
        state = np.zeros((2, b, 128), np.float32)
        t = time.perf_counter()
        for r in range(rounds):
            _, state = vad.session.run(None, {"input": np.stack(windows[r]), "state": state, "sr": sr})
        batched = (time.perf_counter() - t) / rounds / b * 1e6
        print(f"| {b} | {single:.1f} | {batched:.1f} | {single / batched:.2f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", type=Path, default=SPEECH)
    parser.add_argument("--batch", type=int, nargs="*", default=[1, 2, 10, 25, 50])
    args = parser.parse_args(argv)
    quality(args.speech, VadParams())
    if args.batch:
        batching(args.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
