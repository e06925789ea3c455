"""`voicebus simulate`: real WebRTC callers speak recordings to an edge, listen to the agent, maybe barge in.

Prints progress while it runs, then a table per turn and a summary. Client-side times are measured here; the
server-side latency breakdown (endpointing, model time, platform overhead) is read back from ClickHouse.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.caller import Caller, read_wav_16k

DEFAULT_AUDIO = [
    Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "misc" / name
    for name in ("goforward.wav", "jfk.wav")
]


@dataclass
class ClientTurn:
    session_id: str
    index: int
    audio: str
    speech_end: float  # wall time the last sample of the utterance was sent
    reply_onset: float | None  # wall time the agent's first loud frame arrived
    reply_end: float | None
    barged_in: bool

    @property
    def client_v2v_ms(self) -> float | None:
        return None if self.reply_onset is None else (self.reply_onset - self.speech_end) * 1000


@dataclass(frozen=True)
class Script:
    audio: list[Path]
    turns: int
    pause_s: float
    reply_timeout_s: float
    barge_in_every: int  # 0: never; k: every k-th turn interrupts the reply


async def converse(url: str, token: str, script: Script, index: int, progress) -> list[ClientTurn]:  # type: ignore[no-untyped-def]
    caller = Caller(url, token)
    session_id = await caller.connect()
    clips = [read_wav_16k(p) for p in script.audio]
    listener = caller.listener
    turns: list[ClientTurn] = []
    try:
        for n in range(script.turns):
            clip = (n + index) % len(clips)
            heard_before = len(listener.replies)
            _, speech_end = await caller.mic.say(clips[clip])
            turn = ClientTurn(session_id, n, script.audio[clip].name, speech_end, None, None, False)
            turns.append(turn)
            try:
                await listener.wait(lambda: len(listener.replies) > heard_before, script.reply_timeout_s)
                reply = listener.replies[heard_before]
                turn.reply_onset = reply.onset
                barge = script.barge_in_every and (n + 1) % script.barge_in_every == 0 and n + 1 < script.turns
                if barge:
                    turn.barged_in = True  # the next utterance starts while the agent talks
                else:
                    await listener.wait(lambda: reply.end is not None, script.reply_timeout_s)
                    turn.reply_end = reply.end
                    await asyncio.sleep(script.pause_s)  # the caller's own pause between turns
            except TimeoutError:
                pass
            progress(turn)
    finally:
        await caller.close()
    return turns


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(turns: list[ClientTurn]) -> dict[str, object]:
    v2v = [t.client_v2v_ms for t in turns if t.client_v2v_ms is not None]
    return {
        "turns": len(turns),
        "answered": len(v2v),
        "client_v2v_ms_p50": _median(v2v),
        "client_v2v_ms_max": max(v2v) if v2v else None,
    }


async def run(args: argparse.Namespace) -> int:
    script = Script([Path(p) for p in args.audio] or DEFAULT_AUDIO, args.turns, args.pause,
                    args.reply_timeout, args.barge_in_every)
    done = 0

    def progress(turn: ClientTurn) -> None:
        nonlocal done
        done += 1
        got = f"reply after {turn.client_v2v_ms:.0f} ms" if turn.client_v2v_ms is not None else "NO REPLY"
        print(f"[{done}/{args.sessions * args.turns}] session {turn.session_id[:8]} turn {turn.index}: {got}",
              file=sys.stderr, flush=True)

    t0 = time.monotonic()
    results = await asyncio.gather(*(converse(args.url, args.token, script, i, progress)
                                     for i in range(args.sessions)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    turns = [t for r in results if not isinstance(r, BaseException) for t in r]
    report = {"sessions": args.sessions, "seconds": round(time.monotonic() - t0, 1),
              "failed_sessions": [repr(f) for f in failures], "summary": summarize(turns),
              "turns": [asdict(t) | {"client_v2v_ms": t.client_v2v_ms} for t in turns]}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'session':10} {'turn':>4} {'audio':16} {'client v2v ms':>14} {'barge-in':>8}")
        for t in turns:
            v2v = f"{t.client_v2v_ms:.0f}" if t.client_v2v_ms is not None else "-"
            print(f"{t.session_id[:8]:10} {t.index:>4} {t.audio[:16]:16} {v2v:>14} {'yes' if t.barged_in else '':>8}")
        print(json.dumps(report["summary"]))
    return 1 if failures or not turns else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicebus simulate", description=__doc__)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--audio", nargs="*", default=[], help="16 kHz mono WAV files to speak, in turn")
    parser.add_argument("--turns", type=int, default=3, help="utterances per session")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between a reply and the next utterance")
    parser.add_argument("--barge-in-every", type=int, default=0, help="interrupt every k-th reply (0: never)")
    parser.add_argument("--reply-timeout", type=float, default=20.0)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", default="")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return asyncio.run(run(parser.parse_args(argv)))
