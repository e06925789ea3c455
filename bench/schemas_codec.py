"""Encode + decode throughput of the event contract on one core: the binary audio frame, a JSON+base64 variant of
the same frame (what the binary layout saves), and one JSON event through its topic codec.

    .venv/bin/python -m bench.schemas_codec [--frames 50000] [--runs 7]

Prints the median over the runs of encode+decode per second (and the spread), side by side.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from schemas.audio import AudioFrame, decode_frame, encode_frame
from schemas.edge import SpeechStopped
from schemas.topics import AUDIO, VAD

GOAL_FRAMES_PER_S = 200_000
SESSION = "0123456789abcdef0123456789abcdef"


def _frame(seq: int) -> AudioFrame:
    pcm = (np.sin(np.arange(320) / 7.0) * 8000).astype("<i2").tobytes()  # 20 ms at 16 kHz
    return AudioFrame(SESSION, seq, 1_700_000_000_000_000_000 + seq * 20_000_000, seq * 20_000_000, 16000, pcm, 1)


def _json_b64_encode(f: AudioFrame) -> bytes:
    return json.dumps({"type": "audio_frame", "schema_version": 1, "session_id": f.session_id, "seq": f.seq,
                       "capture_wall_ns": f.capture_wall_ns, "media_ns": f.media_ns, "sample_rate": f.sample_rate,
                       "flags": f.flags, "pcm": base64.b64encode(f.pcm).decode()}).encode()


def _json_b64_decode(data: bytes) -> AudioFrame:
    d = json.loads(data)
    return AudioFrame(d["session_id"], d["seq"], d["capture_wall_ns"], d["media_ns"], d["sample_rate"],
                      base64.b64decode(d["pcm"]), d["flags"])


def _per_second(round_trip: Callable[[int], object], n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        round_trip(i)
    return n / (time.perf_counter() - t0)


def measure(name: str, round_trip: Callable[[int], object], n: int, runs: int) -> tuple[str, float, float, float]:
    round_trip(0)  # warm up (first-call caches)
    rates = [_per_second(round_trip, n) for _ in range(runs)]
    return name, statistics.median(rates), min(rates), max(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=50_000, help="round trips per run")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)

    frames = [_frame(i) for i in range(256)]
    stopped = SpeechStopped(session_id=SESSION, seq=3, media_ns=2_340_000_000, wall_ns=1_700_000_000_000_000_000,
                            node_id="edge-1", speech_start_media_ns=10**9, speech_end_media_ns=2_100_000_000,
                            speech_end_wall_ns=1_699_999_999_760_000_000)
    codec = AUDIO.codec
    variants = [
        ("audio frame, binary (encode_frame/decode_frame)", lambda i: decode_frame(encode_frame(frames[i & 255]))),
        ("audio frame, binary via the topic codec", lambda i: codec.decode(codec.encode(frames[i & 255]))),
        ("audio frame, JSON + base64 (for comparison)", lambda i: _json_b64_decode(_json_b64_encode(frames[i & 255]))),
        ("speech_stopped event, JSON via the topic codec", lambda i: VAD.codec.decode(VAD.codec.encode(stopped))),
    ]
    sizes = [len(encode_frame(frames[0])), len(encode_frame(frames[0])), len(_json_b64_encode(frames[0])),
             len(VAD.codec.encode(stopped))]
    results = [measure(name, fn, args.frames if "JSON via" not in name else args.frames // 5, args.runs)
               for name, fn in variants]

    base = results[0][1]
    print(f"encode + decode round trips per second, one core; median of {args.runs} runs "
          f"({args.frames} frames per run; JSON event: {args.frames // 5}) [min .. max]")
    for (name, median, low, high), size in zip(results, sizes, strict=True):
        print(f"  {name:50} {median:>10,.0f}/s  [{low:,.0f} .. {high:,.0f}]  {size:>5} B  "
              f"{median / base:5.2f}x binary")
    verdict = "meets" if base >= GOAL_FRAMES_PER_S else "MISSES"
    print(f"binary audio frame: {base:,.0f} frames/s {verdict} the goal of {GOAL_FRAMES_PER_S:,} frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
