"""`voicebus ops` at scale: seed N synthetic turns into chDB through the real schema (raw stage and decision
rows, aggregated by the materialized views, then each chunk's latency rows stored as the sink stores them after a
batch), then time `ops latency` and `ops turns --slowest 20`. A directory seeded by an older voicebus is
migrated when the schema is applied (the time is printed) and used as it is.

    python -m bench.telemetry_ops [--turns 10000000] [--days 7] [--dir PATH] [--repeat 5]

Timed: the query and the rendering of each command on an open connection (what `voicebus ops` does after it
has
opened chDB), as seeded (many parts) and after past days are merged (what min_age_to_force_merge_seconds does
an hour after each day ends); the current day's partition is left as inserted. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from runtime.clickhouse import connect
from streams.telemetry.backend import Direct
from streams.telemetry.ops import build_parser, run
from streams.telemetry.schema import apply_schema
from streams.telemetry.stored import STORE_SQL

STAGES = [
    "speech_end",
    "vad_end",
    "turn_committed",
    "asr_final",
    "llm_first_token",
    "tts_first_audio",
    "reply_first_at_edge",
    "reply_first_sent",
    "reply_last_sent",
    "barge_in_speech_start",
]
SERVICES = [
    "streams",
    "streams",
    "streams",
    "streams",
    "responder",
    "responder",
    "ingest",
    "ingest",
    "ingest",
    "ingest",
]


DECISIONS = ["speculative", "cancelled", "committed", "barge_in", "false_interruption", "cancelled", "ended"]


def _exp(mean_ms: int, salt: int) -> str:
    """Deterministic exponential draw per turn (a hash, so repeated draws are not merged into one)."""
    return f"(-log(1 - (cityHash64(number, {salt}) % 1000000 + 0.5) / 1e6) * {mean_ms})"


def _turns(lo: int, count: int, end_ns: int, span_ns: int) -> str:
    """One row per turn: ids, times (ns) of every stage, engines."""
    return f"""
        SELECT number, hex(cityHash64(number)) AS turn_id,
            lower(hex(cityHash64(intDiv(number, 20), 7))) AS session_id,
            concat('edge-', toString(number % 4)) AS node_id, ['echo', 'vllm'][number % 3 = 0 ? 2 : 1] AS llm,
            toInt64({end_ns} - cityHash64(number, 1) % {span_ns}) AS t0,
            toInt64(t0 + (100 + {_exp(30, 2)}) * 1e6) AS t_vad,
            toInt64(t_vad + (150 + {_exp(60, 3)}) * 1e6) AS t_commit,
            toInt64(t_commit + ({_exp(20, 4)} - 10) * 1e6) AS t_asr,
            toInt64(greatest(t_commit, t_asr) + (150 + {_exp(100, 5)}) * 1e6) AS t_llm,
            toInt64(t_llm + (50 + {_exp(40, 6)}) * 1e6) AS t_tts,
            toInt64(t_tts + (5 + {_exp(5, 8)}) * 1e6) AS t_edge,
            toInt64(t_edge + (10 + {_exp(10, 9)}) * 1e6) AS t_sent,
            toInt64(t_sent + (1000 + {_exp(2000, 10)}) * 1e6) AS t_last,
            toInt64(t_last - (50 + {_exp(100, 11)}) * 1e6) AS t_barge
        FROM numbers({lo}, {count})"""


def seed(client: object, turns: int, days: float, chunk: int = 1_000_000) -> None:
    end_ns, span_ns = time.time_ns(), int(days * 86400e9)
    for lo in range(0, turns, chunk):
        count = min(chunk, turns - lo)
        source = _turns(lo, count, end_ns, span_ns)
        client.command(
            f"""
            INSERT INTO stage_events
            SELECT toDate(fromUnixTimestamp64Nano(t0)), turn_id, stage, session_id, node_id,
                fromUnixTimestamp64Nano(at), NULL, service,
                multiIf(stage = 'asr_final', 'sphinx', stage = 'llm_first_token', llm,
                        stage = 'tts_first_audio', 'espeak', ''), fromUnixTimestamp64Nano(at), idx
            FROM ({source})
            ARRAY JOIN {STAGES} AS stage, {SERVICES} AS service, arrayEnumerate({STAGES}) AS idx,
                [t0, t_vad, t_commit, t_asr, t_llm, t_tts, t_edge, t_sent, t_last, t_barge] AS at
            WHERE stage != 'barge_in_speech_start' OR number % 10 = 0""",
            settings={"max_partitions_per_insert_block": 1000},
        )
        client.command(
            f"""
            INSERT INTO turn_decisions
            SELECT toDate(fromUnixTimestamp64Nano(t0)), turn_id, kind, detail, session_id, node_id,
                fromUnixTimestamp64Nano(t_commit), NULL, idx
            FROM ({source})
            ARRAY JOIN {DECISIONS} AS kind, ['', 'withdrawn', '', '', '', 'withdrawn', 'completed'] AS detail,
                [number % 4 = 0, number % 4 = 0 AND number % 33 = 0, number % 33 != 0 OR number % 4 != 0,
                 number % 10 = 0, number % 50 = 1, number % 97 = 2, 1] AS happened, range(7) AS idx
            WHERE happened""",
            settings={"max_partitions_per_insert_block": 1000},
        )
        client.command(
            f"{STORE_SQL} WHERE (turn_day, turn_id) IN "
            f"(SELECT toDate(fromUnixTimestamp64Nano(t0)), turn_id FROM ({source}))",
            settings={"max_partitions_per_insert_block": 1000},
        )
        print(f"  seeded {lo + count:,} turns", flush=True)


def time_command(backend: Direct, argv: list[str], repeat: int) -> float:
    args = build_parser().parse_args(argv)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run(args, backend)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


COMMANDS = [
    ["latency", "--since", "all"],
    ["latency", "--since", "all", "--by", "node"],
    ["latency", "--since", "1h"],
    ["turns", "--slowest", "20", "--since", "all"],
    ["turns", "--slowest", "20", "--since", "1h"],
    ["taking", "--since", "all"],
]


def parts(client: object) -> str:
    rows = client.query(
        "SELECT table, count(), uniqExact(partition) FROM system.parts WHERE active AND "  # type: ignore[attr-defined]
        "database = currentDatabase() AND table IN ('turns', 'stage_events', 'turn_latencies') GROUP BY table"
    ).result_rows
    return ", ".join(f"{t}: {n} parts in {p} days" for t, n, p in sorted(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=10_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument(
        "--dir", type=Path, default=None, help="chDB directory (default: a fresh temporary one)"
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="voicebus-bench-")) / "clickhouse"
    dsn = f"chdb://{directory}"
    client = connect(dsn)
    t0 = time.perf_counter()
    apply_schema(client)
    print(f"schema applied (an older layout migrated) in {time.perf_counter() - t0:.1f} s")
    have = client.query("SELECT count() FROM turns FINAL").result_rows[0][0]
    if have != args.turns:
        print(f"seeding {args.turns:,} turns over {args.days} days into {directory} (had {have:,})")
        client.command("TRUNCATE TABLE stage_events")
        client.command("TRUNCATE TABLE turn_decisions")
        client.command("TRUNCATE TABLE turns")
        client.command("TRUNCATE TABLE turn_latencies")
        t0 = time.perf_counter()
        seed(client, args.turns, args.days)
        print(f"seeded in {time.perf_counter() - t0:.0f} s")
    backend = Direct(dsn)
    print(run(build_parser().parse_args(["latency", "--since", "all"]), backend))
    results: dict[str, list[float]] = {}
    for state in ("as seeded", "past days merged"):
        if state == "past days merged":
            today = client.query("SELECT max(turn_day) FROM turns").result_rows[0][0]
            for table, day in client.query(
                f"SELECT DISTINCT table, partition FROM system.parts WHERE active AND "
                f"table IN ('turns', 'turn_latencies') AND partition != '{today}' AND database = currentDatabase()"
            ).result_rows:
                client.command(f"OPTIMIZE TABLE {table} PARTITION '{day}' FINAL")
        print(f"\n{state} ({parts(client)}); median of {args.repeat} runs:")
        for argv in COMMANDS:
            seconds = time_command(backend, argv, args.repeat)
            results.setdefault(" ".join(argv), []).append(seconds)
            print(f"  ops {' '.join(argv):42} {seconds * 1000:8.0f} ms")
    print("\nratio as seeded / merged:")
    for name, (seeded, merged) in results.items():
        print(f"  ops {name:42} {seeded / merged:5.2f}")
    client.close()


if __name__ == "__main__":
    main()
