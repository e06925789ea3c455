"""Endpointing benchmark: the pure turn core on edge/ASR event streams built from speech timings.

Side by side: silence-and-text rules (three settings), Smart Turn with the default rules, and Smart Turn
without the text signal. The Smart Turn columns need audio: they run on the real recordings with the edge's VAD,
the embedded recogniser and Smart Turn in the loop (bench.endpointing_audio); "-" where a data set has no audio.
Per data set and setting: endpointing delay p50/p95 (commit - speech end, in media time:
the decision alone, without transport), when the responder can start (a speculative offer that was not
withdrawn, otherwise the commit) and the head start that gives its model time, the premature-commit rate (commits made while the person had not
finished the turn, over all commits) and withdrawn speculative offers per turn. Delays are the decision on the media clock; with Smart Turn the score
and the final come SCORE_MS later (the scorer's measured time per item).

    .venv/bin/python -m bench.endpointing [--speech ../shared/data/speech]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.endpointing_audio import ami_scored, single_speaker
from bench.endpointing_data import Track, ami, librivox, synthetic
from bench.endpointing_events import FRAME_MS, MS, Conversation
from inference.engines.smart_turn import SmartTurn
from schemas.base import Event
from schemas.conversation import TurnCancelled, TurnCommitted, TurnSpeculative
from streams.turns.core import Context, initial, step
from streams.turns.policy import Policy

SID = "e" * 32
# Features and inference of one score at batch 1 (bench.smart_turn: 45-65 ms here): the score and the final
# it goes out before come this much later than without a scorer (pocketsphinx's final alone takes ~5 ms).
SCORE_MS = 60
GAP_BETWEEN_TURNS_MS = 4000  # silence after each turn: the agent's side, long enough for any threshold
REPO = Path(__file__).resolve().parent.parent

NO_TEXT = Policy(complete_silence_ns=500 * MS, incomplete_silence_ns=500 * MS)
FAST = Policy(silence_ns=300 * MS, complete_silence_ns=240 * MS, incomplete_silence_ns=1000 * MS)
# name: (policy, whether the end-of-turn scores are sent)
SETTINGS = {
    "rules (500/300/1200)": (Policy(), False),
    "fast (300/240/1000)": (FAST, False),
    "no text signal (500)": (NO_TEXT, False),
    "Smart Turn + rules": (Policy(), True),
    "Smart Turn + fast": (FAST, True),
    "Smart Turn, no text": (NO_TEXT, True),
}


@dataclass
class Result:
    delays: list[int] = field(default_factory=list)  # ms, end-of-turn commits
    starts: list[int] = field(default_factory=list)  # ms, when the responder could start (offer or commit)
    head_starts: list[int] = field(default_factory=list)  # ms, commit - offer, turns that had an offer
    premature: int = 0
    withdrawn: int = 0
    turns: int = 0
    pauses: int = 0
    events: int = 0
    seconds: float = 0.0


def simulate(track: Track, policy: Policy, result: Result, scores: bool = False) -> None:
    """One speaker's turns, one after another with the agent's silence between them, through the core."""
    conv = Conversation(SID, final_delay_ms=SCORE_MS if scores else 0)
    spans: list[tuple[int, int]] = []  # per turn: media start, end of its last utterance
    offset = 500
    for turn in track:
        shift = offset - turn[0].start_ms
        for u in turn:
            conv.say(u.start_ms + shift, u.end_ms + shift, u.text, p_complete=u.p_complete if scores else None)
        last_end = (turn[-1].end_ms + shift) // FRAME_MS * FRAME_MS
        spans.append((turn[0].start_ms + shift, last_end))
        offset = last_end + GAP_BETWEEN_TURNS_MS
    conv.wait(offset)
    state, decisions = initial(SID), list[Event]()
    started = time.perf_counter()
    for e in conv.events:
        state, out = step(state, e, Context(policy, 0))  # type: ignore[arg-type]
        decisions.extend(out)
    result.seconds += time.perf_counter() - started
    result.events += len(conv.events)
    result.turns += len(track)
    result.pauses += sum(len(turn) - 1 for turn in track)
    score(decisions, spans, result)


def score(decisions: list[Event], spans: list[tuple[int, int]], result: Result) -> None:
    offered = {d.turn_id: d.media_ns // MS for d in decisions if isinstance(d, TurnSpeculative)}
    result.withdrawn += sum(1 for d in decisions if isinstance(d, TurnCancelled) and d.reason == "withdrawn")
    for d in decisions:
        if not isinstance(d, TurnCommitted):
            continue
        at = d.media_ns // MS
        _, last_end = next(span for span in reversed(spans) if span[0] <= at)
        if at < last_end:
            result.premature += 1
        else:
            result.delays.append(at - last_end)
            result.starts.append(offered.get(d.turn_id, at) - last_end)
            if d.turn_id in offered:
                result.head_starts.append(at - offered[d.turn_id])


def row(name: str, measured: list[Result | None]) -> None:
    def pct(values: list[int], q: int) -> str:
        return f"{np.percentile(values, q):.0f}" if values else "-"

    results = [r or Result() for r in measured]

    lines = {
        "turns / pauses inside turns": [f"{r.turns} / {r.pauses}" for r in results],
        "endpointing p50 / p95 ms": [f"{pct(r.delays, 50)} / {pct(r.delays, 95)}" for r in results],
        "responder starts (offer) p50 / p95 ms": [f"{pct(r.starts, 50)} / {pct(r.starts, 95)}" for r in results],
        "head start of offered turns p50 ms (n)": [f"{pct(r.head_starts, 50)} ({len(r.head_starts)})"
                                                   for r in results],
        "premature commits": [f"{r.premature / max(1, r.premature + len(r.delays)):.1%} ({r.premature})"
                              for r in results],
        "withdrawn offers per turn": [f"{r.withdrawn / max(1, r.turns):.2f}" for r in results],
        "core µs per event": [f"{1e6 * r.seconds / max(1, r.events):.0f}" for r in results],
    }
    print(f"\n{name}")
    for label, cells in lines.items():
        cells = [c if r is not None else "-" for c, r in zip(cells, measured, strict=True)]
        print(f"  {label:<42}" + "".join(f"{c:>22}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech", type=Path, default=REPO.parent / "shared" / "data" / "speech")
    parser.add_argument("--synthetic-turns", type=int, default=400)
    args = parser.parse_args(argv)
    scorer = SmartTurn()
    t0 = time.perf_counter()
    single = [*sorted((args.speech / "librivox").glob("*.wav")), args.speech / "misc" / "jfk.wav"]
    # name: (tracks, whether they carry Smart Turn scores)
    datasets: dict[str, tuple[list[Track], bool]] = {
        "librivox + jfk, one turn per recording (edge VAD, pocketsphinx, Smart Turn)": (
            single_speaker(single, scorer), True),
        "the same with Whisper tiny.en (punctuated finals)": (single_speaker(single, scorer, "whisper"), True),
        "AMI meetings (.rttm turns; no words; Smart Turn on the mix)": (ami_scored(args.speech / "ami", scorer), True),
        "the same with Whisper's words (of the mix)": (ami_scored(args.speech / "ami", scorer, "whisper"), True),
        "librivox (.lab + word alignment; one read sentence per clip)": (librivox(args.speech / "librivox"), False),
        "AMI meetings (.rttm; no words: thresholds only)": (ami(args.speech / "ami"), False),
        "synthetic conversations with mid-sentence pauses": (synthetic(args.synthetic_turns), False),
        "the same, transcribed by a punctuating ASR": (synthetic(args.synthetic_turns, punctuated=True), False),
    }
    print(f"(real recordings through the VAD, recogniser and Smart Turn in {time.perf_counter() - t0:.0f} s)")
    print(f"  {'':<42}" + "".join(f"{name:>22}" for name in SETTINGS))
    for name, (tracks, has_scores) in datasets.items():
        results: list[Result | None] = []
        for policy, scores in SETTINGS.values():
            if scores and not has_scores:
                results.append(None)
                continue
            result = Result()
            for track in tracks:
                simulate(track, policy, result, scores)
            results.append(result)
        row(name, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
