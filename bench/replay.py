"""How fast `voicebus replay` re-runs recorded sessions: events per second through the turn core.

    .venv/bin/python -m bench.replay [--sessions 1000] [--turns 6] [--jobs 2]

The sessions are what the edge and the ASR publish for conversations with turns, pauses, replies and barge-ins
(bench.turn_processor.conversation), every event encoded as it lies on its topic, with its type header. Timed,
on one core: decoding them (streams.turns.replay_source.decoded, what the reader does once Kafka has handed over
the bytes), and folding each session through the core twice, with the current settings and with others, and
comparing the two (streams.turns.replay.outcome and compare, what the command does per session). Then the whole
of it as the command runs it with ``--jobs`` processes, in wall time. Kafka's own read is not in it.
"""

from __future__ import annotations

import argparse
import time

from bench.turn_processor import conversation
from streams.turns.replay import compare, outcome, policy_for
from streams.turns.replay_cli import run
from streams.turns.replay_source import decoded, encoded

GIVEN = {"VOICEBUS_TURN_SILENCE_MS": "300"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    records = {f"{i:032x}": encoded(conversation(f"{i:032x}", args.turns, seed=11 + i))
               for i in range(args.sessions)}
    events = sum(map(len, records.values()))
    print(f"{args.sessions} sessions, {events} events ({events / args.sessions:.0f} a session), made in "
          f"{time.perf_counter() - t0:.1f} s")

    current, given = policy_for(), policy_for(GIVEN)
    c0 = time.process_time()
    sessions = [decoded(r) for r in records.values()]
    decode_s = time.process_time() - c0
    c0 = time.process_time()
    turns = changed = 0
    for session in sessions:
        a = outcome(session, current)
        b = outcome(session, given, [(t.speech_start_ns, t.speech_end_ns) for t in a.turns if t.barged_in])
        turns += len(a.turns)
        changed += sum(c.kind != "same" for c in compare(a.turns, b.turns))
    fold_s = time.process_time() - c0
    print(f"decode: {decode_s:.2f} s CPU, {events / decode_s:,.0f} events/s")
    print(f"fold twice (current and {' '.join(f'{k}={v}' for k, v in GIVEN.items())}) and compare: {fold_s:.2f} s "
          f"CPU, {2 * events / fold_s:,.0f} events/s through the core")
    print(f"one core: {decode_s + fold_s:.1f} s CPU, {events / (decode_s + fold_s):,.0f} recorded events/s; "
          f"{turns} turns, {changed} changed")
    w0 = time.perf_counter()
    run(records, GIVEN, args.jobs)
    wall = time.perf_counter() - w0
    print(f"`voicebus replay --jobs {args.jobs}` on them: {wall:.1f} s, {events / wall:,.0f} recorded events/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
