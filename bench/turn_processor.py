"""The turn processor's per-event work, old way against new way, on one core; and the ASR's VAD-topic work.

    .venv/bin/python -m bench.turn_processor [--sessions 4] [--turns 12] [--runs 9]

The stream is what the processor reads for a few concurrent conversations, as the edge and the ASR publish
them (bench.endpointing_events.Conversation): person turns with mid-sentence pauses (bench.endpointing_data
.synthetic), each answered by the agent (playout started, then finished, or interrupted by a barge-in),
sessions interleaved by media time, every event encoded with its topic's codec. Per event, what
``TurnProcessor.handle`` does except Kafka itself (decode, step, encode the decisions, write the table):

- old: the table holds each state as JSON bytes: parse it, step, re-serialise, write (one changelog record
  per state change);
- objects: the table holds the TurnState (``StateCodec`` only on the changelog), one record per change;
- new: objects, and a step that only moved the clock is not written (``needs_write``).

Prints the median events per CPU second over the runs [min .. max], the ratio to the old way, and the
changelog records each way writes (Faust's and Kafka's cost per record is not in these numbers). Then the ASR
worker's VAD-topic loop: decode every record, against passing over the ones whose type header says
vad_progress.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.endpointing_data import synthetic
from bench.endpointing_events import FRAME_MS, Conversation
from inference.asr_worker import IGNORED_TYPES, _type_header
from schemas.base import Event
from schemas.conversation import TurnCommitted
from schemas.telemetry import StageStamped
from schemas.topics import PLAYOUT, SESSIONS, TELEMETRY, TRANSCRIPTS, TURNS, TYPE_HEADER, VAD
from streams.turns.agent import StateCodec, needs_write
from streams.turns.core import SOURCES, Context, initial, step
from streams.turns.policy import Policy
from streams.turns.state import TurnState

TOPIC_OF = {"vad": VAD, "asr": TRANSCRIPTS, "playout": PLAYOUT, "sessions": SESSIONS}
Record = tuple[Any, bytes, bytes, list[tuple[str, bytes]]]  # topic spec, key, value, headers


def conversation(session_id: str, turns: int, seed: int) -> list[Event]:
    """A session: the person's turns, each answered by the agent, a third of the answers interrupted."""
    rng = random.Random(seed)
    conv = Conversation(session_id)
    state, applied = initial(session_id), 0

    def committed() -> str | None:
        """The last turn the core committed so far (the responder would answer it)."""
        nonlocal state, applied
        last = None
        for e in conv.events[applied:]:
            state, out = step(state, e, Context(Policy(), 0))  # type: ignore[arg-type]
            last = next((d.turn_id for d in out if isinstance(d, TurnCommitted)), last)
        applied = len(conv.events)
        return last

    t = 300 + rng.randrange(0, 2000)
    for turn in synthetic(turns, seed=seed)[0]:
        shift = t - turn[0].start_ms
        for u in turn:
            conv.say(u.start_ms + shift, u.end_ms + shift, u.text)
        conv.wait(conv.t_ms + 1600)  # the longest silence a turn waits for
        turn_id = committed()
        t = conv.t_ms + 300
        if turn_id is None:
            continue
        conv.wait(t).playout_started(turn_id)
        reply_ms = rng.randrange(1500, 6000)
        if rng.random() < 0.3:  # the person talks over the reply
            played = rng.randrange(400, reply_ms)
            start = (conv.t_ms + played) // FRAME_MS * FRAME_MS
            conv.say(start, start + rng.randrange(400, 1500), "wait no", barge_in=(turn_id, played))
            conv.wait(conv.t_ms + 1600)
            committed()
        else:
            conv.wait(conv.t_ms + reply_ms).playout_finished(turn_id, reply_ms)
        t = conv.t_ms + rng.randrange(300, 1500)
    conv.wait(t).end()
    return conv.events


def recorded(sessions: int, turns: int) -> list[Record]:
    """The sessions' events as the processor's consumer would get them: by media time, encoded."""
    events = [e for i in range(sessions) for e in conversation(f"{i:032x}", turns, seed=11 + i)]
    events.sort(key=lambda e: e.media_ns)  # stable: each session's own order is kept
    out = []
    for e in events:
        spec = TOPIC_OF[SOURCES[type(e)]]
        out.append((spec, e.session_id.encode(), spec.codec.encode(e), [(TYPE_HEADER, e.type.encode())]))
    return out


def _publish(decisions: tuple[Event, ...]) -> None:
    for d in decisions:  # what _publish encodes (the send itself is Kafka's cost, the same both ways)
        (TELEMETRY if isinstance(d, StageStamped) else TURNS).codec.encode(d)


def old_way(records: list[Record], ctx: Context, decided: list[Event]) -> int:
    table: dict[bytes, bytes] = {}
    writes = 0
    for spec, key, value, _ in records:
        event = spec.codec.decode(value)
        stored = table.get(key)
        state = TurnState.from_json(stored) if stored else initial(event.session_id)
        new, decisions = step(state, event, ctx)
        if new is state:
            continue
        _publish(decisions)
        decided.extend(decisions)
        table[key] = new.to_json()
        writes += 1
    return writes


def objects_way(records: list[Record], ctx: Context, decided: list[Event], skip: bool = False) -> int:
    table: dict[bytes, TurnState] = {}
    codec = StateCodec()
    writes = 0
    for spec, key, value, _ in records:
        event = spec.codec.decode(value)
        stored = table.get(key)
        state = stored if stored is not None else initial(event.session_id)
        new, decisions = step(state, event, ctx)
        if new is state:
            continue
        _publish(decisions)
        decided.extend(decisions)
        table[key] = new
        if not skip or needs_write(stored, new, decisions):
            codec.dumps(new)  # the changelog record
            writes += 1
    return writes


def new_way(records: list[Record], ctx: Context, decided: list[Event]) -> int:
    return objects_way(records, ctx, decided, skip=True)


def asr_decode_all(records: list[Record]) -> int:
    return sum(spec.codec.decode(value) is not None for spec, _, value, _ in records)


def asr_skip_by_header(records: list[Record]) -> int:
    return sum(spec.codec.decode(value) is not None for spec, _, value, headers in records
               if _type_header(_Headers(headers)) not in IGNORED_TYPES)


class _Headers:
    """A consumed record as far as the header lookup goes."""

    __slots__ = ("headers",)

    def __init__(self, headers: list[tuple[str, bytes]]) -> None:
        self.headers = headers


def timed(fns: dict[str, Callable[[], int]], n: int, runs: int) -> dict[str, tuple[float, float, float, int]]:
    """Median, min and max items per CPU second of each function, and what it returned. The functions take
    turns within each run, so a busy moment of the machine does not land on one of them only."""
    results = {name: fn() for name, fn in fns.items()}  # warm up
    rates: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.thread_time()  # CPU time: other processes on the machine do not count
            fn()
            rates[name].append(n / (time.thread_time() - t0))
    return {name: (statistics.median(r), min(r), max(r), results[name]) for name, r in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--turns", type=int, default=12, help="person turns per session")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)

    records = recorded(args.sessions, args.turns)
    n = len(records)
    progress = sum(h[0][1] == b"vad_progress" for *_, h in records)
    media_s = max(VAD.codec.decode(v).media_ns for spec, _, v, _ in records if spec is VAD) / 1e9
    print(f"{args.sessions} sessions, {media_s:.0f} s of media each at most, {n} events "
          f"({progress} VadProgress, {progress / n:.0%}); median of {args.runs} runs [min .. max], one core")

    ctx = Context(Policy(), 0)
    ways = {"old: JSON state in the table": old_way, "objects: TurnState in the table": objects_way,
            "new: objects, clock-only steps not written": new_way}
    decisions: dict[str, list[Event]] = {name: [] for name in ways}

    def run(way: Callable[[list[Record], Context, list[Event]], int], out: list[Event]) -> int:
        out.clear()
        return way(records, ctx, out)

    fns = {name: (lambda w=way, o=decisions[name]: run(w, o)) for name, way in ways.items()}
    results = timed(fns, n, args.runs)  # type: ignore[arg-type]
    old_rate, _, _, old_writes = results[next(iter(ways))]
    commits = sum(isinstance(d, TurnCommitted) for d in decisions[next(iter(ways))])
    print(f"turn processor ({commits} turns committed), events per second through decode + step + encode "
          f"decisions + table write:")
    for name, (median, low, high, writes) in results.items():
        print(f"  {name:45} {median:>9,.0f}/s  [{low:,.0f} .. {high:,.0f}]  {median / old_rate:5.2f}x old   "
              f"changelog records {writes:>6,} ({1 - writes / old_writes:.0%} skipped)")
    same = all(d == decisions[next(iter(ways))] for d in decisions.values())
    print(f"  same decisions every way: {'yes' if same else 'NO'}")

    vad = [r for r in records if r[0] is VAD or r[0] is SESSIONS]
    asr = timed({"decode every record": lambda: asr_decode_all(vad),
                 "pass over vad_progress by its header": lambda: asr_skip_by_header(vad)},
                len(vad), args.runs)
    base = asr["decode every record"][0]
    print(f"ASR worker, voice.vad + voice.sessions records per second ({len(vad)} records, "
          f"{asr['pass over vad_progress by its header'][3]} decoded with the header):")
    for name, (median, low, high, _) in asr.items():
        print(f"  {name:45} {median:>9,.0f}/s  [{low:,.0f} .. {high:,.0f}]  {median / base:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
