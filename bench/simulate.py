"""`voicebus simulate`: real WebRTC callers speak recordings to an edge, listen to the agent, maybe barge in.

Prints progress while it runs, then a table per utterance and a summary.

How a reply is paired with what was said: the edge tells the client on the data channel when a reply starts
playing, for which turn, and which span of the person's speech that turn covers (edge media time: 0 at the
session's first audio frame, 20 ms per frame; the edge counts the frames the client's microphone sent, so media
time = microphone frame x 20 ms). The client knows at which microphone frame each recording started and where
the speech is in the recording, so an utterance is answered by the replies whose turn spans overlap it. A
recording with pauses may become several turns; the utterance is answered when a reply to the turn that covers
its end is heard.

Client-side voice-to-voice is measured from the audio itself: from the end of speech in the recording (its
``.lab`` labels, else the last speech frame found in it) at the moment the microphone captured that frame, to
the first loud reply audio heard for the answering turn. The server-side breakdown (endpointing, model time,
platform overhead) is read back from ClickHouse and paired by turn id.

Every wait is bounded: a caller whose edge dies (its microphone is no longer taken, the connection fails) ends
with ``CallerFailed`` naming what it waited for, and the run prints the table of what was said until then.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from bench.utterances import FRAME_S, Utterance, explain, playing, recording, replies_of, settle
from ingest.client import EdgeClient
from ingest.ice import use_host_addresses
from schemas.audio import FRAME_MS

log = logging.getLogger(__name__)
T = TypeVar("T")

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
DEFAULT_AUDIO = [SPEECH / "misc" / name for name in ("goforward.wav", "jfk.wav")]


@dataclass(frozen=True)
class Script:
    audio: list[Path]
    turns: int  # utterances per caller
    pause_s: float  # after a reply, before the next utterance (at least)
    reply_timeout_s: float
    barge_in_every: int  # 0: never; k: every k-th reply is interrupted by the next utterance
    pause_max_s: float | None = None  # pause drawn uniformly from [pause_s, pause_max_s] when set
    seed: int | None = None  # None: recordings in rotation; else each caller's order is drawn with this seed
    # The edge took no microphone audio (or did not connect) for this long: the caller fails. An overloaded
    # client process runs seconds late (the reference sweep's 10 callers), a dropped connection never catches up.
    stall_s: float = 30.0

    def plan(self, caller: int) -> list[tuple[Path, float]]:
        """(recording, pause after its reply) for each utterance of caller number ``caller``."""
        rng = random.Random(None if self.seed is None else self.seed * 1_000_003 + caller)
        out = []
        for n in range(self.turns):
            audio = (self.audio[(n + caller) % len(self.audio)] if self.seed is None else rng.choice(self.audio))
            pause = self.pause_s if self.pause_max_s is None else rng.uniform(self.pause_s, self.pause_max_s)
            out.append((audio, pause))
        return out


class CallerFailed(RuntimeError):
    """A caller could not go on (its edge died, refused it or stopped taking its audio)."""


async def bounded(aw: Awaitable[T], seconds: float, what: str, client: EdgeClient) -> T:
    """``aw``, or CallerFailed after ``seconds`` saying what was awaited and the state of the connection."""
    try:
        return await asyncio.wait_for(aw, seconds)
    except TimeoutError:
        raise CallerFailed(f"{what}: nothing for {seconds:.0f} s (WebRTC connection "
                           f"{client.pc.connectionState}): is the edge alive?") from None


async def converse(url: str, token: str, script: Script, index: int,
                   progress: Callable[[Utterance], None], heard: list[Utterance] | None = None,
                   client: EdgeClient | None = None) -> list[Utterance]:
    """Caller ``index`` speaks its plan and listens; ``heard`` (if given) gets each utterance as it is said, so
    a caller that fails (CallerFailed, every wait being bounded) leaves what it heard until then. ``client``:
    the caller's own (to read what the edge told it afterwards), else a new one."""
    client = client or EdgeClient(url, token)
    utterances: list[Utterance] = [] if heard is None else heard
    try:
        session_id = await bounded(client.connect(), script.stall_s + 15, "connecting to the edge", client)
    except BaseException:
        await asyncio.wait_for(client.close(delete=False), 10)
        raise
    plan = script.plan(index)
    mic, hearing = client.mic, client.hearing
    stall = script.stall_s
    try:
        for n, (path, pause_s) in enumerate(plan):
            rec = recording(path)
            spoken_s = len(rec.clip.frames) * FRAME_S  # the mic is taken at 20 ms a frame while the edge lives
            first_frame, _ = await bounded(mic.say(rec.clip), stall, "waiting to speak", client)
            over = utterances[-1] if utterances and utterances[-1].barged_in else None
            if over is not None and over.answer_turn is not None:
                over.barge_in_reaction_ms = await reaction(client, over.answer_turn, first_frame + int(
                    rec.speech_start_s / FRAME_S), script.reply_timeout_s)
            last_speech = max(0, int(np.ceil(rec.speech_end_s / FRAME_S)) - 1)  # the frame holding the end
            end_frame = first_frame + min(len(rec.clip.frames) - 1, last_speech)
            speech_end_at = await bounded(mic.captured(end_frame), spoken_s + stall, "speaking", client)
            u = Utterance(session_id, n, rec.name, first_frame,
                          first_frame * FRAME_MS + round(rec.speech_start_s * 1000),
                          first_frame * FRAME_MS + round(rec.speech_end_s * 1000), speech_end_at)
            utterances.append(u)
            await bounded(mic.captured(first_frame + len(rec.clip.frames) - 1), spoken_s + stall, "speaking",
                          client)  # the whole recording is spoken
            try:
                await hearing.wait_for(lambda: settle(u, client), script.reply_timeout_s)
            except TimeoutError:
                pass
            if u.reply_onset is None:
                u.note = explain(u, client, script.reply_timeout_s)
            if u.answered and script.barge_in_every and (n + 1) % script.barge_in_every == 0 and n + 1 < len(plan):
                u.barged_in = True  # the next utterance starts while the agent talks
                await asyncio.sleep(0.5)  # the script's own timing: half a second into the reply
            else:
                try:  # the caller lets the agent finish (its reply, or one that answers something else)
                    await hearing.wait_for(lambda: not playing(client), script.reply_timeout_s + 30)
                except TimeoutError:
                    u.note = ", ".join(filter(None, [u.note, "a reply did not end"]))
                if u.answer_turn is not None:
                    ended = replies_of(client.told)[u.answer_turn]
                    u.reply_end = ended.ended_at
                    u.interrupted_ms = ended.played_ms if ended.interrupted else None
                await asyncio.sleep(pause_s)  # the caller's own pause between turns
            if u.turns and len(u.turns) > 1 and not u.note:
                u.note = f"{len(u.turns)} turns"
            if u.interrupted_ms is not None and not u.barged_in:
                u.note = ", ".join(filter(None, [u.note, f"reply interrupted after {u.interrupted_ms} ms"]))
            progress(u)
    finally:
        try:
            await asyncio.wait_for(client.close(), 10)
        except TimeoutError:
            log.warning("session %s: closing took over 10 s", session_id)
    return utterances


async def reaction(client: EdgeClient, turn_id: str, onset_frame: int, timeout_s: float) -> float | None:
    """Barge-in reaction as the person lives it: from the microphone frame where their speech begins to the
    arrival of the reply's last loud frame (the edge paused or ended it). None if the reply went on."""
    onset_at = await bounded(client.mic.captured(onset_frame), timeout_s, "speaking over the reply", client)
    hearing = client.hearing

    def stopped() -> bool:
        reply = replies_of(client.told).get(turn_id)
        return reply is not None and (reply.paused or reply.ended_at is not None)

    try:
        await hearing.wait_for(stopped, timeout_s)
        heard = len(hearing.loud)
        await hearing.wait_for(lambda: len(hearing.loud) > heard + 10, 5.0)  # frames still on their way
    except TimeoutError:
        return None
    last = hearing.last_loud()
    return None if last is None else max(0.0, (hearing.arrivals[last] - onset_at) * 1000)


async def warm_up(url: str, timeout_s: float) -> None:
    """One short conversation until it is answered: the turn processor and the workers have joined their groups
    and the first turn's one-off costs (connections, topic metadata) are paid before anything is measured."""
    script = Script([SPEECH / "misc" / "goforward.wav"], 1, pause_s=0.0, reply_timeout_s=15.0, barge_in_every=0)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        [u] = await converse(url, "", script, 0, lambda u: None)
        if u.answered:
            print(f"warm-up answered (client voice-to-voice {u.client_v2v_ms} ms)", file=sys.stderr, flush=True)
            return
        print(f"warm-up not answered yet ({u.note}); again", file=sys.stderr, flush=True)
    raise RuntimeError(f"the platform answered no warm-up utterance within {timeout_s:.0f} s")


# -- ClickHouse --


SERVER_COLUMNS = ("endpointing_ms", "voice_to_voice_ms", "model_ms", "platform_overhead_ms", "barge_in_reaction_ms")


async def server_turns(session_ids: list[str], turn_ids: set[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Every turn of these sessions from ClickHouse (through the telemetry sink when it runs), by turn id; waits
    until the turns in ``turn_ids`` are there with their voice-to-voice time, or ``timeout_s``."""
    from streams.telemetry.backend import open_backend
    from streams.telemetry.settings import TelemetrySettings

    if not session_ids:
        return {}
    backend = open_backend(TelemetrySettings())
    rows: dict[str, dict[str, Any]] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                result = await asyncio.to_thread(backend.run, "session_turns", {"session_ids": session_ids})
                rows = {r["turn_id"]: r for r in result.records()}
                if all(t in rows and rows[t]["voice_to_voice_ms"] is not None for t in turn_ids):
                    break
                await asyncio.sleep(0.5)  # the sink writes in batches
    except TimeoutError:
        pass
    return rows


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def summarize(utterances: list[Utterance], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Client voice-to-voice over answered utterances; the server columns over the turns that answered them."""
    answer_rows = [rows[u.answer_turn] for u in utterances if u.answered and u.answer_turn in rows]
    out: dict[str, Any] = {"utterances": len(utterances), "answered": sum(u.answered for u in utterances),
                           "turns_in_clickhouse": len(rows)}
    client = [v for u in utterances if (v := u.client_v2v_ms) is not None]
    series = {"client_v2v_ms": client,
              **{c: [r[c] for r in answer_rows if r[c] is not None] for c in SERVER_COLUMNS}}
    for name, values in series.items():
        out[f"{name}_p50"] = pct(values, 50)
        out[f"{name}_p95"] = pct(values, 95)
    reactions = [u.barge_in_reaction_ms for u in utterances if u.barge_in_reaction_ms is not None]
    out["client_barge_in_reaction_ms_p50"] = pct(reactions, 50)  # from the person's onset to the last audio heard
    out["client_barge_in_reaction_ms_p95"] = pct(reactions, 95)
    out["barge_ins"] = f"{len(reactions)}/{sum(u.barged_in for u in utterances)}"
    offsets = [s[0] - u.speech_start_ms for u in utterances for s in u.edge_speech_ms[:1]]
    out["edge_onset_minus_label_ms_p50"] = pct(offsets, 50)  # checks media time = microphone frame x 20 ms
    return out


def describe(u: Utterance) -> str:
    if u.answered and u.client_v2v_ms is not None:
        turns = f"{len(u.turns)} turns, " if len(u.turns) > 1 else ""
        return f"{turns}reply after {u.client_v2v_ms:.0f} ms"
    return u.note or "no reply"


def render_table(utterances: list[Utterance], rows: dict[str, dict[str, Any]]) -> str:
    heads = ("session", "utt", "audio", "turns", "client v2v", "v2v", "endpointing", "model", "overhead",
             "barge-in")
    widths = (8, 3, 13, 5, 10, 6, 11, 6, 8, 8)
    lines = [" ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True)) + "  note"]

    def ms(value: Any) -> str:
        return "-" if value is None else f"{value:.0f}"

    claimed: set[str] = set()
    for u in utterances:
        claimed.update(u.turns)
        row = rows.get(u.answer_turn or "", {}) if u.answered else {}
        note = u.note
        if u.barged_in:
            note = ", ".join(filter(None, [note, "barged in"]))
        if u.answered and u.answer_turn not in rows:
            note = ", ".join(filter(None, [note, "turn not in ClickHouse"]))
        cells = (u.session_id[:8], u.index, u.audio[:13], len(u.turns) or "-", ms(u.client_v2v_ms),
                 ms(row.get("voice_to_voice_ms")), ms(row.get("endpointing_ms")), ms(row.get("model_ms")),
                 ms(row.get("platform_overhead_ms")), ms(row.get("barge_in_reaction_ms")))
        lines.append(" ".join(f"{c!s:>{w}}" for c, w in zip(cells, widths, strict=True)) + f"  {note}".rstrip())
    # Turns the platform made that no utterance's reply was heard for: shown, so a lost or extra turn is seen.
    for turn_id, row in rows.items():
        if turn_id in claimed:
            continue
        cells = (row["session_id"][:8], "-", "", "", "-", ms(row.get("voice_to_voice_ms")),
                 ms(row.get("endpointing_ms")), ms(row.get("model_ms")), ms(row.get("platform_overhead_ms")),
                 ms(row.get("barge_in_reaction_ms")))
        lines.append(" ".join(f"{c!s:>{w}}" for c, w in zip(cells, widths, strict=True))
                     + f"  server turn {turn_id[:8]} no reply heard for (outcome {row.get('outcome') or '-'})")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    use_host_addresses([args.ice_host] if args.ice_host else [])
    script = Script([Path(p) for p in args.audio] or DEFAULT_AUDIO, args.turns, args.pause,
                    args.reply_timeout, args.barge_in_every, stall_s=args.stall)
    done = 0

    def progress(u: Utterance) -> None:
        nonlocal done
        done += 1
        print(f"[{done}/{args.sessions * args.turns}] session {u.session_id[:8]} utterance {u.index} ({u.audio}): "
              f"{describe(u)}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    heard: list[list[Utterance]] = [[] for _ in range(args.sessions)]
    callers = [asyncio.create_task(converse(args.url, args.token, script, i, progress, heard[i]))
               for i in range(args.sessions)]
    # Each caller bounds its own waits; this bounds the whole run too (a wait nobody thought of).
    per_caller = args.turns * (args.reply_timeout * 2 + 30 + 15 + args.pause) + 60
    done_tasks, late = await asyncio.wait(callers, timeout=per_caller)
    for task in late:
        task.cancel()
    failures: list[BaseException] = [TimeoutError(f"caller still running after {per_caller:.0f} s")
                                     for _ in late]
    failures += [exc for task in done_tasks if (exc := task.exception()) is not None]
    if late:
        await asyncio.wait(late, timeout=15)
    utterances = [u for said in heard for u in said]
    print("reading the turns back from ClickHouse ...", file=sys.stderr, flush=True)
    rows = await server_turns(sorted({u.session_id for u in utterances}),
                              {t for u in utterances for t in u.turns}, args.telemetry_timeout)
    report = {"sessions": args.sessions, "seconds": round(time.monotonic() - t0, 1),
              "failed_sessions": [repr(f) for f in failures], "summary": summarize(utterances, rows),
              "utterances": [u.report() for u in utterances], "server_turns": list(rows.values())}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        if failures:
            print(f"{len(failures)} of {args.sessions} callers failed: the table is what was said until then")
        print(render_table(utterances, rows))
        print()
        print("summary (ms): " + ", ".join(f"{k} {v}" for k, v in report["summary"].items()))
        for failure in failures:
            print(f"failed session: {failure}")
    return 1 if failures or not utterances else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicebus simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--audio", nargs="*", default=[], help="16 kHz mono WAV files to speak, in turn")
    parser.add_argument("--turns", type=int, default=3, help="utterances per session")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between a reply and the next utterance")
    parser.add_argument("--barge-in-every", type=int, default=0, help="interrupt every k-th reply (0: never)")
    parser.add_argument("--reply-timeout", type=float, default=20.0)
    parser.add_argument("--stall", type=float, default=Script.stall_s,
                        help="seconds without the edge taking the microphone's audio before a caller gives up")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", default="")
    parser.add_argument("--ice-host", default="", help="gather ICE candidates on this address only (e.g. 127.0.0.1)")
    parser.add_argument("--telemetry-timeout", type=float, default=20.0,
                        help="seconds to wait for the turns to land in ClickHouse")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--engines", choices=["embedded", "reference"], default="embedded",
                        help="embedded: the platform at --url as it runs; reference: start `voicebus up` on the "
                             "reference engines (as `voicebus bench --engines reference`) and talk to it")
    args = parser.parse_args(argv)
    if args.engines == "embedded":
        return asyncio.run(run(args))
    from bench.reference_stack import Delays, reference_stack

    audio = [Path(p) for p in args.audio] or DEFAULT_AUDIO
    with reference_stack(audio, Delays()) as stack:
        print(f"platform up at {stack.url} on reference engines (logs in {stack.workdir})", file=sys.stderr)
        args.url, args.ice_host = stack.url, args.ice_host or "127.0.0.1"
        use_host_addresses([args.ice_host])
        asyncio.run(warm_up(stack.url, 120.0))
        return asyncio.run(run(args))
