"""How fast `voicebus replay` re-runs recorded sessions: events per second through the turn core.

    .venv/bin/python -m bench.replay [--sessions 1000] [--turns 6]

The sessions are what the edge and the ASR publish for conversations with turns, pauses, replies and barge-ins
(bench.turn_processor.conversation), every event encoded with its topic's codec as it lies on Kafka, with its
type header. Timed, on one core: decoding them (streams.turns.replay_source.decode, what the reader does after
Kafka hands over the bytes), and folding each session
through the core twice, with the current settings and with others (streams.turns.replay.outcome, what the
command does per session). Kafka's own read is not in it (a local broker hands over far more than this).
"""

from __future__ import annotations

import argparse
import time

from bench.turn_processor import TOPIC_OF, conversation
from streams.turns.core import SOURCES
from streams.turns.replay import compare, outcome, policy_for
from streams.turns.replay_source import decode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=6)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    sessions = [conversation(f"{i:032x}", args.turns, seed=11 + i) for i in range(args.sessions)]
    encoded = [[(TOPIC_OF[SOURCES[type(e)]].codec, TOPIC_OF[SOURCES[type(e)]].codec.encode(e), e.type.encode())
                for e in events] for events in sessions]
    events = sum(map(len, sessions))
    print(f"{args.sessions} sessions, {events} events ({events / args.sessions:.0f} a session), made in "
          f"{time.perf_counter() - t0:.1f} s")

    current, given = policy_for(), policy_for({"VOICEBUS_TURN_SILENCE_MS": "300"})
    c0 = time.process_time()
    decoded = [[decode(codec, raw, kind) for codec, raw, kind in session] for session in encoded]
    decode_s = time.process_time() - c0
    c0 = time.process_time()
    turns = changed = 0
    for session in decoded:
        a = outcome(session, current)
        b = outcome(session, given, [(t.speech_start_ns, t.speech_end_ns) for t in a.turns if t.barged_in])
        turns += len(a.turns)
        changed += sum(c.kind != "same" for c in compare(a.turns, b.turns))
    fold_s = time.process_time() - c0
    print(f"decode: {decode_s:.2f} s CPU, {events / decode_s:,.0f} events/s")
    print(f"fold twice (current and VOICEBUS_TURN_SILENCE_MS=300) and compare: {fold_s:.2f} s CPU, "
          f"{2 * events / fold_s:,.0f} events/s through the core")
    print(f"replay of {args.sessions} sessions: {decode_s + fold_s:.1f} s CPU in all, "
          f"{events / (decode_s + fold_s):,.0f} recorded events/s; {turns} turns, {changed} changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
