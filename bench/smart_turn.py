"""Smart Turn cost on this machine: features and inference per item, at batch 1 and batched, through the
engine's own code (one onnxruntime thread), on the turns of real recordings.

Also the throughput check that decides the batch size: N requests made at once, scored in batches of up to B,
and the time until the last and the mean time until each is answered. Run: .venv/bin/python -m bench.smart_turn
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from inference.engines.smart_turn import SmartTurn
from inference.engines.whisper_features import WINDOW_SAMPLES, log_mel
from runtime.pcm import read_wav

SPEECH = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "speech"


def clips(speech: Path) -> list[np.ndarray]:
    """8 s windows ending at several points of the librivox and jfk recordings."""
    out = []
    for wav in [speech / "misc" / "jfk.wav", *sorted((speech / "librivox").glob("*.wav"))]:
        samples, _ = read_wav(wav)
        for end in range(16000, samples.size, 16000):  # every second
            out.append(samples[max(0, end - WINDOW_SAMPLES):end])
    return out


def timed(fn, repeat: int) -> float:
    """The fastest of ``repeat`` runs, in ms: the machine is shared, the slower runs measure the neighbours."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


async def concurrent(engine: SmartTurn, items: list[np.ndarray]) -> tuple[float, float]:
    """N requests at once: ms until the last answer, mean ms until each answer."""
    t0 = time.perf_counter()
    done: list[float] = []

    async def one(x: np.ndarray) -> None:
        await engine.score(x.tobytes())
        done.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(one(x) for x in items))
    return max(done), statistics.mean(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech", type=Path, default=SPEECH)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    items = clips(args.speech)
    engine = SmartTurn()
    engine.predict(items[:1])  # load and warm
    features = statistics.median(timed(lambda x=x: log_mel(x), 3) for x in items)
    print(f"{len(items)} windows of 8 s from real speech")
    print(f"features: {features:.1f} ms per item (median)")
    feats = np.stack([log_mel(x) for x in items[:8]])
    session = engine._load()
    for b in (1, 2, 4, 8):
        ms = timed(lambda b=b: session.run(None, {"input_features": feats[:b]}), args.repeat)
        print(f"inference at batch {b}: {ms:6.1f} ms per batch, {ms / b:5.1f} ms per item")
    for b in (1, 4, 8):
        scorer = SmartTurn(max_batch=b)
        scorer.predict(items[:1])
        runs = [asyncio.run(concurrent(scorer, items[:8])) for _ in range(args.repeat)]
        last, mean = min(runs)
        print(f"8 sessions at once, max batch {b}: last answer after {last:5.0f} ms, mean {mean:5.0f} ms")


if __name__ == "__main__":
    main()
