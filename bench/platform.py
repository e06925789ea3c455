"""`voicebus bench`: the Kafka floor and the platform's own overhead side by side, at several session counts.

``--engines embedded`` (the default) runs against a platform that is already up (`voicebus up` in another shell,
with whatever engines it was given). ``--engines reference`` starts its own: the reference engines
(``bench.reference_server``: each recording's known transcript, a fixed reply and its pre-rendered audio after
fixed delays, no model CPU) and `voicebus up` pointed at them (``bench.reference_stack``), so what is measured is
the platform itself: transport, Kafka hops, turn decisions and playout. It sweeps the levels until one leaves an
utterance unanswered and reports the largest level at which every utterance was answered.

It measures the raw produce -> consume hop on the same broker, then at each level runs that many simulated
callers at once. Each caller says
``--turns`` recordings (goforward, jfk and the LibriVox clips, drawn with a fixed seed), waits for each reply to
end, pauses 1-2 s (drawn with the same seed) and speaks again. Progress goes to stderr as it runs.

Per level: utterances answered (a reply to the turn covering the utterance's end was heard), turns in
ClickHouse, client voice-to-voice measured from the audio (see `voicebus simulate`), and, for the turns that
answered the utterances (paired by turn id), server voice-to-voice, endpointing and platform overhead from
ClickHouse. Writes JSON and a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.kafka_floor import measure_hop
from bench.reference_stack import Delays, reference_stack
from bench.simulate import SPEECH, Script, converse, describe, pct, server_turns, summarize, warm_up
from bench.utterances import Utterance
from ingest.ice import use_host_addresses
from runtime.settings import CommonSettings

# Kafka hops on the path from the end of speech to the first reply audio: edge -> voice.vad -> turn processor,
# turn processor -> voice.turns -> responder, responder -> voice.replies.<node> -> edge.
CRITICAL_PATH_HOPS = 3
BENCH_AUDIO = [SPEECH / "misc" / "goforward.wav", SPEECH / "misc" / "jfk.wav",
               *sorted((SPEECH / "librivox").glob("*.wav"))]
SEED = 20240601
BARGE_IN_EVERY = 3  # every third reply is talked over by the caller's next utterance, half a second in


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run_level(url: str, sessions: int, turns: int, stagger_s: float, seed: int,
                    telemetry_timeout_s: float) -> dict[str, Any]:
    script = Script(BENCH_AUDIO, turns, pause_s=1.0, reply_timeout_s=20.0, barge_in_every=BARGE_IN_EVERY,
                    pause_max_s=2.0, seed=seed)
    total, done = sessions * turns, 0
    say(f"level {sessions} session(s): {total} utterances")
    t0 = time.monotonic()

    def progress(u: Utterance) -> None:
        nonlocal done
        done += 1
        say(f"  [{sessions} sessions] [{done}/{total}] {time.monotonic() - t0:5.1f} s session {u.session_id[:8]} "
            f"utterance {u.index} ({u.audio}): {describe(u)}")

    async def caller(i: int) -> list[Utterance]:
        await asyncio.sleep(i * stagger_s)  # the script's timing: callers do not all speak at the same instant
        return await converse(url, "", script, i, progress)

    results = await asyncio.gather(*(caller(i) for i in range(sessions)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        say(f"  a caller failed: {failure!r}")
    utterances = [u for r in results if not isinstance(r, BaseException) for u in r]
    say(f"  reading {sessions} session(s) back from ClickHouse ...")
    rows = await server_turns(sorted({u.session_id for u in utterances}), {t for u in utterances for t in u.turns},
                              telemetry_timeout_s)
    summary = summarize(utterances, rows)
    answered_rows = [rows[u.answer_turn] for u in utterances if u.answered and u.answer_turn in rows]
    server: dict[str, float | None] = {}
    for column in ("voice_to_voice_ms", "endpointing_ms", "model_ms", "platform_overhead_ms"):
        values = [r[column] for r in answered_rows if r[column] is not None]
        for q in (50, 95, 99):
            server[f"{column.removesuffix('_ms')}_ms_p{q}"] = pct(values, q)
    # Where the overhead goes: the responder -> voice.replies -> edge hop (first TTS audio to the first reply
    # chunk at the edge; a speculative reply held until its commit counts from the commit) and the edge's
    # playout start (reply at the edge to its first frame handed to the track).
    hop = [r["reply_first_at_edge_offset_ms"] - max(r["tts_first_audio_offset_ms"], r["turn_committed_offset_ms"])
           for r in answered_rows if r.get("reply_first_at_edge_offset_ms") is not None
           and r.get("tts_first_audio_offset_ms") is not None and r.get("turn_committed_offset_ms") is not None]
    start = [r["voice_to_voice_ms"] - r["reply_first_at_edge_offset_ms"] for r in answered_rows
             if r.get("voice_to_voice_ms") is not None and r.get("reply_first_at_edge_offset_ms") is not None]
    for name, values in (("reply_hop_ms", hop), ("playout_start_ms", start)):
        for q in (50, 99):
            server[f"{name}_p{q}"] = pct(values, q)
    client = [v for u in utterances if (v := u.client_v2v_ms) is not None]
    level = {"sessions": sessions, "utterances": len(utterances), "answered": summary["answered"],
             "turns_in_clickhouse": len(rows), "answering_turns_in_clickhouse": len(answered_rows),
             "failed_sessions": len(failures), "seconds": round(time.monotonic() - t0, 1),
             "client_v2v_ms_p50": pct(client, 50), "client_v2v_ms_p95": pct(client, 95), "server": server,
             "barge_ins": summary["barge_ins"],
             "barge_in_reaction_ms_p50": summary["client_barge_in_reaction_ms_p50"],
             "barge_in_reaction_ms_p95": summary["client_barge_in_reaction_ms_p95"],
             "unanswered": [f"{u.session_id[:8]}/{u.index} {u.audio}: {u.note}" for u in utterances
                            if not u.answered],
             "playout_lateness_ms": await playout_lateness(url)}
    level["all_answered"] = not failures and level["answered"] == level["utterances"] == total
    say(f"level {sessions} done in {level['seconds']} s: answered {level['answered']}/{level['utterances']}, "
        f"{len(rows)} turns in ClickHouse, client v2v p50 {level['client_v2v_ms_p50']} ms, "
        f"server v2v p50 {server['voice_to_voice_ms_p50']} ms, platform overhead p50/p99 "
        f"{server['platform_overhead_ms_p50']}/{server['platform_overhead_ms_p99']} ms")
    return level


async def playout_lateness(url: str) -> dict[str, float]:
    """The edge's playout lateness histogram (send time minus the 20 ms grid), as bucket -> cumulative count."""
    import aiohttp

    try:
        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
            text = await resp.text()
    except aiohttp.ClientError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("voicebus_ingest_playout_lateness_ms_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out[le] = out.get(le, 0.0) + float(line.rsplit(" ", 1)[1])  # summed over the edge workers
    return out


def markdown(report: dict[str, Any]) -> str:
    floor = report["floor"]
    lines = [f"engines: {report['engines']}"]
    if report.get("largest_all_answered") is not None or report["engines"] == "reference":
        lines.append(f"largest number of concurrent callers with every utterance answered: "
                     f"{report.get('largest_all_answered') or 'none'}")
    lines += [
        f"Kafka floor (one hop, p50/p99): {floor['p50_ms']:.2f} / {floor['p99_ms']:.2f} ms; "
        f"x{CRITICAL_PATH_HOPS} hops = {floor['p50_ms'] * CRITICAL_PATH_HOPS:.2f} ms",
        "",
        "| sessions | answered | turns in ClickHouse | client v2v p50 ms | client v2v p95 ms | server v2v p50 ms "
        "| server v2v p95 ms | endpointing p50 ms | model p50 ms | overhead p50 ms | overhead p99 ms "
        "| overhead p50 / (floor p50 x hops) | responder -> edge hop p50 / p99 ms | playout start p50 / p99 ms "
        "| barge-ins stopped | barge-in reaction p50 / p95 ms (from the person's onset) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lvl in report["levels"]:
        srv = lvl.get("server", {})
        overhead = srv.get("platform_overhead_ms_p50")
        ratio = None if overhead is None else overhead / max(1e-9, floor["p50_ms"] * CRITICAL_PATH_HOPS)
        cells = [lvl["sessions"], f"{lvl['answered']}/{lvl['utterances']}", lvl["turns_in_clickhouse"],
                 lvl["client_v2v_ms_p50"], lvl["client_v2v_ms_p95"], srv.get("voice_to_voice_ms_p50"),
                 srv.get("voice_to_voice_ms_p95"), srv.get("endpointing_ms_p50"), srv.get("model_ms_p50"), overhead,
                 srv.get("platform_overhead_ms_p99"), ratio,
                 f"{srv.get('reply_hop_ms_p50')} / {srv.get('reply_hop_ms_p99')}",
                 f"{srv.get('playout_start_ms_p50')} / {srv.get('playout_start_ms_p99')}",
                 lvl.get("barge_ins"), f"{lvl.get('barge_in_reaction_ms_p50')} / {lvl.get('barge_in_reaction_ms_p95')}"]
        lines.append("| " + " | ".join("-" if c is None else (f"{c:.1f}" if isinstance(c, float) else str(c))
                                       for c in cells) + " |")
    return "\n".join(lines)


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    say("measuring the Kafka floor (one produce -> consume hop) ...")
    floor = await measure_hop(CommonSettings())
    report: dict[str, Any] = {"engines": args.engines,
                              "floor": {"p50_ms": pct(list(floor), 50), "p99_ms": pct(list(floor), 99),
                                        "hops": CRITICAL_PATH_HOPS},
                              "script": {"turns": args.turns, "pause_s": [1.0, 2.0], "seed": args.seed,
                                         "audio": [p.name for p in BENCH_AUDIO]},
                              "levels": [], "largest_all_answered": None}
    say(f"Kafka floor p50 {report['floor']['p50_ms']} ms, p99 {report['floor']['p99_ms']} ms")
    for sessions in args.sessions:
        level = await run_level(url, sessions, args.turns, args.stagger, args.seed, args.telemetry_timeout)
        report["levels"].append(level)
        if level["all_answered"]:
            report["largest_all_answered"] = max(report["largest_all_answered"] or 0, sessions)
        elif args.engines == "reference" and not args.keep_going:
            say(f"level {sessions} left utterances unanswered: the sweep stops here")
            break
    return report


def run_reference(args: argparse.Namespace) -> dict[str, Any]:
    delays = Delays(args.asr_delay_ms, args.llm_first_token_ms, args.llm_token_ms, args.tts_first_audio_ms)
    say(f"starting the reference engines ({delays}) and voicebus up on them ...")
    with reference_stack(BENCH_AUDIO, delays, kafka=args.kafka, keep=args.keep_workdir) as stack:
        say(f"platform up at {stack.url} (logs in {stack.workdir})")

        async def warmed_up() -> dict[str, Any]:
            await warm_up(stack.url, 120.0)
            return await run(args, stack.url)

        report = asyncio.run(warmed_up())
        report["reference"] = {"delays_ms": delays.__dict__, **stack.reference_stats()}
    return report


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="voicebus bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", choices=["embedded", "reference"], default="embedded",
                        help="embedded: against the platform at --url as it runs; reference: start the reference "
                             "engines and `voicebus up` on them, and sweep the levels")
    parser.add_argument("--sessions", type=lambda s: [int(x) for x in s.split(",")], default=None,
                        help="session counts to run, comma separated (default 1,3,5; with reference engines "
                             "2,5,10,15,20,25, stopping after the first level that leaves an utterance unanswered)")
    parser.add_argument("--turns", type=int, default=5, help="utterances per caller (default 5)")
    parser.add_argument("--stagger", type=float, default=1.0, help="seconds between the starts of two callers")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the recordings' order and the pauses")
    parser.add_argument("--telemetry-timeout", type=float, default=30.0,
                        help="seconds to wait for a level's turns to land in ClickHouse")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the running platform (embedded engines)")
    reference = parser.add_argument_group("reference engines")
    reference.add_argument("--kafka", default=None,
                           help="use this running broker (default: `voicebus up` starts one of its own)")
    reference.add_argument("--keep-going", action="store_true", help="run every level even after one fails")
    reference.add_argument("--keep-workdir", action="store_true", help="keep the run's logs and chDB data")
    reference.add_argument("--asr-delay-ms", type=float, default=Delays.asr_ms)
    reference.add_argument("--llm-first-token-ms", type=float, default=Delays.llm_first_token_ms)
    reference.add_argument("--llm-token-ms", type=float, default=Delays.llm_token_ms)
    reference.add_argument("--tts-first-audio-ms", type=float, default=Delays.tts_first_audio_ms)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--ice-host", default="", help="gather ICE candidates on this address only (e.g. 127.0.0.1)")
    args = parser.parse_args(argv)
    if args.sessions is None:
        args.sessions = [2, 5, 10, 15, 20, 25] if args.engines == "reference" else [1, 3, 5]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.engines == "reference":
        use_host_addresses([args.ice_host or "127.0.0.1"])
        report = run_reference(args)
    else:
        use_host_addresses([args.ice_host] if args.ice_host else [])
        report = asyncio.run(run(args, args.url))
    table = markdown(report)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        args.json.with_suffix(".md").write_text(table + "\n")
    return 0
