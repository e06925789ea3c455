"""ASR benchmark: real-time factor, final-result lag and word error rate of the embedded recogniser.

Streams each real recording in 20 ms frames (as the ASR worker does), times every push and the final, and
scores the text against the reference transcript. Run: .venv/bin/python -m bench.inference_asr
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
import wave
from pathlib import Path

from inference.engines.sphinx import PocketSphinxAsr

SPEECH = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "speech"
FRAME = 640


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


async def run(clips: list[Path]) -> None:
    engine = PocketSphinxAsr()
    await engine.warm()
    total_err = total_ref = 0
    rtfs, lags = [], []
    print(f"{'clip':44} {'audio s':>7} {'RTF':>6} {'final ms':>8} {'WER':>6}")
    for wav in clips:
        with wave.open(str(wav)) as w:
            pcm = w.readframes(w.getnframes())
        ref = words(wav.with_suffix(".txt").read_text())
        stream = await engine.stream(16000)
        busy = 0.0
        for i in range(0, len(pcm), FRAME):
            t0 = time.perf_counter()
            await stream.push(pcm[i:i + FRAME])
            busy += time.perf_counter() - t0
        t0 = time.perf_counter()
        hyp = words(await stream.finish())
        lag = (time.perf_counter() - t0) * 1000
        await stream.aclose()
        seconds = len(pcm) / 32000
        errors = word_errors(ref, hyp)
        total_err, total_ref = total_err + errors, total_ref + len(ref)
        rtfs.append((busy + lag / 1000) / seconds)
        lags.append(lag)
        print(f"{wav.parent.name + '/' + wav.stem:44.44} {seconds:7.1f} {rtfs[-1]:6.3f} {lag:8.1f} "
              f"{errors / max(1, len(ref)):6.1%}")
    print(f"\nmedian RTF {statistics.median(rtfs):.3f}, median final lag {statistics.median(lags):.1f} ms, "
          f"WER over all clips {total_err / total_ref:.1%} ({total_err}/{total_ref} words)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speech", type=Path, default=SPEECH)
    args = parser.parse_args()
    clips = [args.speech / "misc" / "goforward.wav", *sorted((args.speech / "librivox").glob("*.wav"))]
    asyncio.run(run(clips))


if __name__ == "__main__":
    main()
