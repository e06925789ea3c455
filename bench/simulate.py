"""`voicebus simulate`: real WebRTC callers speak recordings to an edge, listen to the agent, maybe barge in.

Prints progress while it runs, then a table per turn and a summary. Client-side times are measured here; the
server-side latency breakdown (endpointing, model time, platform overhead) is read back from ClickHouse.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.edge_client import Clip, EdgeClient, read_wav
from ingest.ice import use_host_addresses

DEFAULT_AUDIO = [
    Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "misc" / name
    for name in ("goforward.wav", "jfk.wav")
]


FRAME_S = 0.02
REPLY_GAP_FRAMES = 30  # 600 ms of quiet after agent audio ends a reply


@dataclass
class ClientTurn:
    session_id: str
    index: int
    audio: str
    speech_end: float  # wall time the utterance's last frame was captured
    reply_onset: float | None = None  # wall time the agent's first loud packet arrived
    reply_end: float | None = None
    barged_in: bool = False

    @property
    def client_v2v_ms(self) -> float | None:
        return None if self.reply_onset is None else (self.reply_onset - self.speech_end) * 1000


@dataclass(frozen=True)
class Script:
    audio: list[Path]
    turns: int
    pause_s: float
    reply_timeout_s: float
    barge_in_every: int  # 0: never; k: every k-th reply is interrupted by the next utterance


def _reply_end(loud: list[bool], onset: int) -> int | None:
    """Index of the last loud frame of the reply starting at ``onset``, once REPLY_GAP_FRAMES quiet ones follow."""
    last = onset
    for i in range(onset, len(loud)):
        if loud[i]:
            last = i
        elif i - last >= REPLY_GAP_FRAMES:
            return last
    return None


async def converse(url: str, token: str, script: Script, index: int, progress) -> list[ClientTurn]:  # type: ignore[no-untyped-def]
    client = EdgeClient(url, token)
    session_id = await client.connect()
    clips = [Clip.of(read_wav(p)) for p in script.audio]
    mic, hearing = client.mic, client.hearing
    turns: list[ClientTurn] = []
    try:
        for n in range(script.turns):
            k = (n + index) % len(clips)
            first_frame, _ = await mic.say(clips[k])
            last_frame = first_frame + len(clips[k].frames) - 1
            async with asyncio.timeout(len(clips[k].frames) * FRAME_S + 5):
                while mic.n <= last_frame:
                    await asyncio.sleep(FRAME_S)  # the microphone's own 20 ms clock; bounded above
            turn = ClientTurn(session_id, n, script.audio[k].name, mic.capture_times[last_frame])
            turns.append(turn)
            heard_from = len(hearing.loud)
            try:
                await hearing.wait_for(lambda: hearing.first_loud(heard_from) is not None, script.reply_timeout_s)
                onset = hearing.first_loud(heard_from)
                assert onset is not None
                turn.reply_onset = hearing.arrivals[onset]
                if script.barge_in_every and (n + 1) % script.barge_in_every == 0 and n + 1 < script.turns:
                    turn.barged_in = True  # the next utterance starts while the agent talks
                    await asyncio.sleep(0.5)
                else:
                    await hearing.wait_for(lambda: _reply_end(hearing.loud, onset) is not None,
                                           script.reply_timeout_s + 30)
                    end = _reply_end(hearing.loud, onset)
                    assert end is not None
                    turn.reply_end = hearing.arrivals[end]
                    await asyncio.sleep(script.pause_s)  # the caller's own pause between turns
            except TimeoutError:
                pass
            progress(turn)
    finally:
        await client.close()
    return turns


SERVER_COLUMNS = ("endpointing_ms", "voice_to_voice_ms", "model_ms", "platform_overhead_ms", "barge_in_reaction_ms")


async def server_turns(session_ids: list[str], expected: int, timeout_s: float) -> list[dict[str, Any]]:
    """Each turn's latency breakdown from ClickHouse (through the telemetry sink when it runs)."""
    from streams.telemetry.backend import open_backend
    from streams.telemetry.settings import TelemetrySettings

    backend = open_backend(TelemetrySettings())
    rows: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                result = await asyncio.to_thread(backend.run, "session_turns", {"session_ids": session_ids})
                rows = result.records()
                if sum(r["voice_to_voice_ms"] is not None for r in rows) >= expected:
                    break
                await asyncio.sleep(0.5)  # the sink writes in batches
    except TimeoutError:
        pass
    return rows


def summarize(turns: list[ClientTurn], rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"turns": len(turns), "answered": sum(t.reply_onset is not None for t in turns),
                           "turns_in_clickhouse": len(rows)}
    client = [t.client_v2v_ms for t in turns if t.client_v2v_ms is not None]
    series = {"client_v2v_ms": client, **{c: [r[c] for r in rows if r[c] is not None] for c in SERVER_COLUMNS}}
    for name, values in series.items():
        out[f"{name}_p50"] = round(float(np.percentile(values, 50)), 1) if values else None
        out[f"{name}_p95"] = round(float(np.percentile(values, 95)), 1) if values else None
    return out


async def run(args: argparse.Namespace) -> int:
    use_host_addresses([args.ice_host] if args.ice_host else [])
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
    print("reading the turns back from ClickHouse ...", file=sys.stderr, flush=True)
    rows = await server_turns(sorted({t.session_id for t in turns}), len(turns), args.telemetry_timeout) \
        if turns else []
    report = {"sessions": args.sessions, "seconds": round(time.monotonic() - t0, 1),
              "failed_sessions": [repr(f) for f in failures], "summary": summarize(turns, rows),
              "client_turns": [asdict(t) | {"client_v2v_ms": t.client_v2v_ms} for t in turns],
              "server_turns": rows}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render_table(turns, rows))
        print()
        print("summary (ms): " + ", ".join(f"{k} {v}" for k, v in report["summary"].items()))
    return 1 if failures or not turns else 0


def render_table(turns: list[ClientTurn], rows: list[dict[str, Any]]) -> str:
    heads = ("session", "turn", "audio", "client v2v", "v2v", "endpointing", "model", "overhead", "barge-in")
    lines = [" ".join(f"{h:>11}" for h in heads)]
    by_session: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_session.setdefault(row["session_id"], []).append(row)

    def ms(value: Any) -> str:
        return "-" if value is None else f"{value:.0f}"

    for t in turns:
        server = by_session.get(t.session_id, [])
        row = server[t.index] if t.index < len(server) else {}
        cells = (t.session_id[:8], t.index, t.audio[:11], ms(t.client_v2v_ms), ms(row.get("voice_to_voice_ms")),
                 ms(row.get("endpointing_ms")), ms(row.get("model_ms")), ms(row.get("platform_overhead_ms")),
                 ms(row.get("barge_in_reaction_ms")))
        lines.append(" ".join(f"{c!s:>11}" for c in cells))
    return "\n".join(lines)


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
    parser.add_argument("--ice-host", default="", help="gather ICE candidates on this address only (e.g. 127.0.0.1)")
    parser.add_argument("--telemetry-timeout", type=float, default=20.0,
                        help="seconds to wait for the turns to land in ClickHouse")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return asyncio.run(run(parser.parse_args(argv)))
