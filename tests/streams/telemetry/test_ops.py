"""`voicebus ops` on a seeded chDB database: numbers match numpy's, directly and through the sink."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streams.telemetry import queries
from streams.telemetry.backend import Direct, ThroughSink, open_backend
from streams.telemetry.ops import build_parser, run
from streams.telemetry.report import gather
from streams.telemetry.server import serve
from streams.telemetry.settings import TelemetrySettings
from streams.telemetry.writer import ClickHouse
from tests.conftest import REPO, free_port
from tests.streams.telemetry.synthetic import Turn, make_turns, seed

pytestmark = pytest.mark.integration

NOW = time.time_ns()
# Recent turns (1..50 min old) and older ones (2..3 h), none near the 1 h boundary of --since 1h.
RECENT = make_turns(300, NOW, np.random.default_rng(11), age_s=(60, 3000))
OLD = [
    Turn(f"old-{t.turn_id}", t.session_id, t.node_id, t.llm_engine, t.stages, t.decisions)
    for t in make_turns(100, NOW - 2 * 3600 * 10**9, np.random.default_rng(12), age_s=(0, 3600))
]



def ops(backend, *argv: str) -> list[dict]:
    return json.loads(run(build_parser().parse_args([*argv, "--format", "json"]), backend))


def expected_latency(turns: list[Turn]) -> dict[str, tuple[int, list[float]]]:
    out = {}
    for name in queries.LATENCIES:
        values = np.array([v for t in turns if (v := t.latencies()[name]) is not None])
        out[name.removesuffix("_ms")] = (
            len(values),
            list(np.percentile(values, [50, 95, 99])) if len(values) else [],
        )
    return out


def check_latency(rows: list[dict], turns: list[Turn]) -> None:
    expected = expected_latency(turns)
    assert {r["latency"] for r in rows} == set(expected)
    for r in rows:
        count, percentiles = expected[r["latency"]]
        assert r["count"] == count, r
        assert [r["p50_ms"], r["p95_ms"], r["p99_ms"]] == pytest.approx(percentiles, rel=1e-9, abs=1e-6), r


async def test_latency_percentiles_match_numpy_overall_by_node_and_by_window(chdb_dsn):
    await seed(chdb_dsn, RECENT + OLD)
    backend = Direct(chdb_dsn)
    check_latency(ops(backend, "latency", "--since", "1h"), RECENT)
    check_latency(ops(backend, "latency", "--since", "all"), RECENT + OLD)
    by_node = ops(backend, "latency", "--by", "node", "--since", "4h")
    for node in ("edge-0", "edge-1"):
        check_latency(
            [r for r in by_node if r["group"] == node], [t for t in RECENT + OLD if t.node_id == node]
        )
    engines = {r["group"] for r in ops(backend, "latency", "--by", "engine")}
    assert engines == {"sphinx/echo/espeak", "sphinx/vllm/espeak"}


async def test_slowest_turns_and_their_waterfall(chdb_dsn):
    await seed(chdb_dsn, RECENT + OLD)
    rows = ops(Direct(chdb_dsn), "turns", "--slowest", "7", "--since", "1h")
    ranked = sorted(
        (t for t in RECENT if t.latencies()["voice_to_voice_ms"] is not None),
        key=lambda t: -t.latencies()["voice_to_voice_ms"],
    )[:7]
    assert [r["turn_id"] for r in rows] == [t.turn_id for t in ranked]
    for row, turn in zip(rows, ranked, strict=True):
        assert row["voice_to_voice_ms"] == pytest.approx(turn.latencies()["voice_to_voice_ms"])
        offsets = {s: turn.ms("speech_end", s) for s in queries.WATERFALL}
        assert [row[f"{s}_ms"] for s in queries.WATERFALL] == pytest.approx(
            list(queries.waterfall(offsets).values())
        )


async def test_turn_taking_counts(chdb_dsn):
    await seed(chdb_dsn, RECENT)
    rates = {r["event"]: r for r in ops(Direct(chdb_dsn), "taking")}

    def having(*kinds: str, without: str = "") -> int:
        return sum(all(k in t.decisions for k in kinds) and without not in t.decisions for t in RECENT)

    assert rates["barge_ins"]["turns"] == having("barge_in") and rates["barge_ins"]["of"] == having(
        "committed"
    )
    assert rates["false_interruptions"]["turns"] == having("false_interruption")
    assert rates["speculative_withdrawn"]["of"] == having("speculative")
    assert rates["speculative_withdrawn"]["turns"] == 0  # every synthetic speculative turn was committed
    assert rates["premature_commits"]["turns"] == having("committed", "withdrawn") > 0


async def test_report_draws_the_slowest_turns_and_the_percentiles_over_time(chdb_dsn, tmp_path):
    await seed(chdb_dsn, RECENT + OLD)
    report = gather(Direct(chdb_dsn), 3600, slowest=5)
    ranked = sorted((t for t in RECENT if t.latencies()["voice_to_voice_ms"] is not None),
                    key=lambda t: -t.latencies()["voice_to_voice_ms"])[:5]
    assert [t["turn_id"] for t in report.slowest] == [t.turn_id for t in ranked]
    offsets = {s: ranked[0].ms("speech_end", s) for s in queries.WATERFALL}
    assert [report.slowest[0][s] for s in queries.WATERFALL] == pytest.approx(
        list(queries.waterfall(offsets).values()))
    # Each bucket's percentiles are those of the turns that started in it (a turn's time: its speech end).
    assert report.bucket_s == 60 and report.turns == len(RECENT)
    for start, levels in zip(report.times, report.percentiles["voice_to_voice_ms"], strict=True):
        inside = [v for t in RECENT if start <= t.stages["speech_end"] // 10**9 < start + 60
                  and (v := t.latencies()["voice_to_voice_ms"]) is not None]
        assert levels == pytest.approx(list(np.percentile(inside, [50, 95, 99])) if inside else [None] * 3)
    png = tmp_path / "report.png"
    ops(Direct(chdb_dsn), "report", "--png", str(png), "--since", "1h")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_ops_goes_through_the_sink_while_it_holds_the_directory(chdb_dsn, tmp_path):
    await seed(chdb_dsn, RECENT)
    port = free_port()
    settings = TelemetrySettings(clickhouse_dsn=chdb_dsn, telemetry_query_port=port)
    clickhouse = ClickHouse(chdb_dsn)
    await clickhouse.open()
    runner = await serve(clickhouse, "127.0.0.1", port)
    try:
        # ops blocks on HTTP: run it off this event loop, which serves the endpoint.
        backend = await asyncio.to_thread(open_backend, settings)
        assert isinstance(backend, ThroughSink)
        check_latency(await asyncio.to_thread(ops, backend, "latency"), RECENT)
        # Another process cannot open the directory this one holds: `voicebus ops` there uses the endpoint.
        env = {**os.environ, "VOICEBUS_CLICKHOUSE_DSN": chdb_dsn, "VOICEBUS_TELEMETRY_QUERY_PORT": str(port)}
        cmd = [sys.executable, "-m", "voicebus.cli", "ops", "latency", "--format", "json"]
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        check_latency(json.loads(out), RECENT)
    finally:
        await runner.cleanup()
        await clickhouse.close()


def test_a_different_directory_is_not_served_by_the_sink(tmp_path):
    settings = TelemetrySettings(
        clickhouse_dsn=f"chdb://{Path(tmp_path) / 'other'}", telemetry_query_port=free_port()
    )
    assert isinstance(open_backend(settings), Direct)
