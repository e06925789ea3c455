"""`voicebus bench`: the Kafka floor and the platform's own overhead side by side, at several session counts.

Runs against a platform that is already up (`voicebus up` in another shell): measures the raw produce -> consume
hop on the same broker, then runs simulated conversations at each session count and reads each turn's latency
breakdown back from ClickHouse. Writes JSON and a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.kafka_floor import measure_hop
from ingest.ice import use_host_addresses
from bench.simulate import DEFAULT_AUDIO, SERVER_COLUMNS, Script, converse, server_turns
from voicebus.settings import CommonSettings

# Kafka hops on the path from the end of speech to the first reply audio: edge -> voice.vad -> turn processor,
# turn processor -> voice.turns -> responder, responder -> voice.replies.<node> -> edge.
CRITICAL_PATH_HOPS = 3


def pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


async def run_level(url: str, sessions: int, turns: int, stagger_s: float) -> dict[str, Any]:
    script = Script(DEFAULT_AUDIO, turns, pause_s=0.5, reply_timeout_s=30.0, barge_in_every=0)
    async def caller(i: int) -> list[Any]:
        await asyncio.sleep(i * stagger_s)  # callers do not all speak at the same instant
        return await converse(url, "", script, i, lambda t: None)

    results = await asyncio.gather(*(caller(i) for i in range(sessions)), return_exceptions=True)
    turns_out = [t for r in results if not isinstance(r, BaseException) for t in r]
    v2v = [t.client_v2v_ms for t in turns_out if t.client_v2v_ms is not None]
    rows = await server_turns(sorted({t.session_id for t in turns_out}), len(turns_out), 30.0) if turns_out else []
    server: dict[str, float | None] = {}
    for column in SERVER_COLUMNS:
        values = [r[column] for r in rows if r[column] is not None]
        for q in (50, 95, 99):
            server[f"{column.removesuffix('_ms')}_ms_p{q}"] = pct(values, q)
    return {"sessions": sessions, "turns": len(turns_out), "answered": len(v2v),
            "failed_sessions": sum(isinstance(r, BaseException) for r in results),
            "client_v2v_ms_p50": pct(v2v, 50), "client_v2v_ms_p99": pct(v2v, 99), "server": server,
            "playout_lateness_ms": await playout_lateness(url)}


async def playout_lateness(url: str) -> dict[str, float]:
    """The edge's playout lateness histogram (send time minus the 20 ms grid), as bucket -> cumulative count."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("voicebus_ingest_playout_lateness_ms_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    return out


def markdown(report: dict[str, Any]) -> str:
    floor = report["floor"]
    lines = [
        f"Kafka floor (one hop, p50/p99): {floor['p50_ms']:.2f} / {floor['p99_ms']:.2f} ms; "
        f"x{CRITICAL_PATH_HOPS} hops = {floor['p50_ms'] * CRITICAL_PATH_HOPS:.2f} ms",
        "",
        "| sessions | turns answered | v2v p50 ms | v2v p99 ms | endpointing p50 ms | model p50 ms "
        "| overhead p50 ms | overhead p99 ms | barge-in reaction p95 ms | overhead p50 / (floor p50 x hops) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lvl in report["levels"]:
        srv = lvl.get("server", {})
        overhead = srv.get("platform_overhead_ms_p50")
        ratio = None if overhead is None else overhead / max(1e-9, floor["p50_ms"] * CRITICAL_PATH_HOPS)
        cells = [lvl["sessions"], f"{lvl['answered']}/{lvl['turns']}", srv.get("voice_to_voice_ms_p50"),
                 srv.get("voice_to_voice_ms_p99"), srv.get("endpointing_ms_p50"), srv.get("model_ms_p50"),
                 overhead, srv.get("platform_overhead_ms_p99"), srv.get("barge_in_reaction_ms_p95"), ratio]
        lines.append("| " + " | ".join("-" if c is None else (f"{c:.1f}" if isinstance(c, float) else str(c))
                                       for c in cells) + " |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    floor = await measure_hop(CommonSettings())
    report: dict[str, Any] = {"floor": {"p50_ms": pct(list(floor), 50), "p99_ms": pct(list(floor), 99),
                                        "hops": CRITICAL_PATH_HOPS}, "levels": []}
    for sessions in args.sessions:
        level = await run_level(args.url, sessions, args.turns, args.stagger)
        report["levels"].append(level)
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicebus bench", description=__doc__)
    parser.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--stagger", type=float, default=1.0, help="seconds between the starts of two callers")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--ice-host", default="", help="gather ICE candidates on this address only (e.g. 127.0.0.1)")
    args = parser.parse_args(argv)
    use_host_addresses([args.ice_host] if args.ice_host else [])
    report = asyncio.run(run(args))
    table = markdown(report)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        args.json.with_suffix(".md").write_text(table + "\n")
    return 0
