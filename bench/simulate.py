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
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingest.client import Clip, EdgeClient, Told, frames_of, load_speech
from ingest.ice import use_host_addresses

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
DEFAULT_AUDIO = [SPEECH / "misc" / name for name in ("goforward.wav", "jfk.wav")]

FRAME_S = 0.02
FRAME_MS = 20
SPAN_SLACK_MS = 400  # how far an edge span may sit outside the recording's speech and still belong to it
END_SLACK_MS = 600  # a turn whose span ends this close to the utterance's end covers its end
ONSET_SLACK_S = 0.1  # reply audio may arrive this much before the data channel says the reply started


# -- where the speech is in a recording --


@dataclass(frozen=True)
class Recording:
    path: Path
    clip: Clip
    speech_start_s: float
    speech_end_s: float
    source: str  # how the speech span was found: "labels", "vad" or "energy"

    @property
    def name(self) -> str:
        return self.path.name


def label_span(path: Path) -> tuple[float, float] | None:
    """Speech from the first onset to the last offset in a ``.lab`` file (``start end state`` lines)."""
    try:
        lines = path.read_text().split("\n")
    except OSError:
        return None
    starts, ends = [], []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[2] in ("speech", "silence"):
            (starts if parts[2] == "speech" else ends).append(float(parts[0]))
    if not starts:
        return None
    end = max((e for e in ends if e > starts[-1]), default=None)
    return (starts[0], end) if end is not None else None


def speech_frames(pcm: np.ndarray) -> tuple[np.ndarray, str]:
    """Which 20 ms frames of a recording are speech: loud ones (well above the recording's noise floor); when the
    project's VAD model is installed, only loud frames within 100 ms of a run of VAD speech (so a recording's
    trailing noise, e.g. applause, does not count as speech, but a soft final consonant does)."""
    frames = frames_of(pcm)
    rms = np.array([np.sqrt(np.mean(f.astype(np.float32) ** 2)) for f in frames])
    loud = rms > max(3 * float(np.percentile(rms, 10)), 0.05 * float(rms.max()), 1.0)
    try:
        from ingest.engines.vad import SileroVad

        stream = SileroVad().stream()
        voiced = np.array([stream.probability(f) >= 0.5 for f in frames])
    except ImportError:
        return loud, "energy"
    keep = np.zeros(len(frames), dtype=bool)
    i = 0
    while i < len(voiced):  # runs of at least 3 voiced frames (60 ms, as the edge's VAD), widened by 5 frames
        j = i
        while j < len(voiced) and voiced[j]:
            j += 1
        if j - i >= 3:
            keep[max(0, i - 5):j + 5] = True
        i = j + 1 if j == i else j
    return (loud & keep) if (loud & keep).any() else loud, "vad"


@functools.cache
def recording(path: Path) -> Recording:
    pcm = load_speech(path)
    clip = Clip.of(pcm)
    span = label_span(path.with_suffix(".lab"))
    if span is not None:
        return Recording(path, clip, span[0], span[1], "labels")
    speech, source = speech_frames(pcm)
    where = np.nonzero(speech)[0]
    if not len(where):
        return Recording(path, clip, 0.0, len(pcm) / 16000, source)
    return Recording(path, clip, float(where[0]) * FRAME_S, float(where[-1] + 1) * FRAME_S, source)


# -- what the edge said --


@dataclass
class ReplyHeard:
    turn_id: str
    speech_start_ms: int | None
    speech_end_ms: int | None
    started_at: float | None = None  # arrival of reply_started
    ended_at: float | None = None  # arrival of reply_ended
    played_ms: int | None = None
    interrupted: bool = False
    cancelled: bool = False


def replies_of(told: Sequence[Told]) -> dict[str, ReplyHeard]:
    out: dict[str, ReplyHeard] = {}
    for t in told:
        m = t.message
        if t.type not in ("reply_started", "reply_ended", "reply_cancelled") or "turn_id" not in m:
            continue
        reply = out.get(m["turn_id"])
        if reply is None:
            reply = ReplyHeard(m["turn_id"], m.get("speech_start_ms"), m.get("speech_end_ms"))
            out[m["turn_id"]] = reply
        if reply.speech_start_ms is None and "speech_start_ms" in m:
            reply.speech_start_ms, reply.speech_end_ms = m["speech_start_ms"], m.get("speech_end_ms")
        if t.type == "reply_started":
            reply.started_at = t.at
        elif t.type == "reply_ended":
            reply.ended_at, reply.played_ms = t.at, m.get("played_ms")
            reply.interrupted = bool(m.get("interrupted"))
        else:
            reply.cancelled = True
    return out


def speech_heard(told: Sequence[Told]) -> list[tuple[int, int | None]]:
    """The utterances the edge's VAD heard, as media ms spans (end None while still speaking)."""
    spans: list[tuple[int, int | None]] = []
    for t in told:
        if t.type != "speech" or "speech_start_ms" not in t.message:
            continue
        start = int(t.message["speech_start_ms"])
        if t.message.get("speaking"):
            spans.append((start, None))
        else:
            spans = [s for s in spans if s != (start, None)]
            spans.append((start, int(t.message.get("speech_end_ms", start))))
    return spans


def overlaps(a0: float, a1: float | None, b0: float, b1: float, slack: float) -> bool:
    return a0 <= b1 + slack and (a1 is None or a1 >= b0 - slack)


# -- one utterance --


@dataclass
class Utterance:
    session_id: str
    index: int
    audio: str
    first_frame: int  # microphone frame the recording started at
    speech_start_ms: int  # where the edge should see the speech (media ms = microphone frame x 20)
    speech_end_ms: int
    speech_end_at: float  # wall time the microphone captured the frame where the speech ends
    turns: list[str] = field(default_factory=list)  # turns whose replies answered (part of) it, in order
    answer_turn: str | None = None  # the turn covering the end of the utterance, whose reply was heard
    answer_span_ms: tuple[int, int] | None = None  # that turn's speech span, as the edge said
    reply_onset: float | None = None  # wall time the first loud audio of that reply arrived
    reply_end: float | None = None
    barged_in: bool = False  # the script interrupted the reply with its next utterance
    interrupted_ms: int | None = None  # the answering reply was cut off after this much
    edge_speech_ms: list[tuple[int, int | None]] = field(default_factory=list)
    note: str = ""

    @property
    def client_v2v_ms(self) -> float | None:
        return None if self.reply_onset is None else (self.reply_onset - self.speech_end_at) * 1000

    @property
    def answered(self) -> bool:
        return self.reply_onset is not None

    def report(self) -> dict[str, Any]:
        return asdict(self) | {"client_v2v_ms": self.client_v2v_ms}


def answering(u: Utterance, replies: dict[str, ReplyHeard]) -> list[ReplyHeard]:
    """Replies whose turn spans overlap the utterance, in the order they started playing."""
    found = [r for r in replies.values() if r.speech_start_ms is not None and r.speech_end_ms is not None
             and overlaps(r.speech_start_ms, r.speech_end_ms, u.speech_start_ms, u.speech_end_ms, SPAN_SLACK_MS)]
    return sorted(found, key=lambda r: (r.started_at is None, r.started_at or 0.0, r.speech_end_ms or 0))


def covers_end(u: Utterance, r: ReplyHeard) -> bool:
    return r.speech_end_ms is not None and r.speech_end_ms >= u.speech_end_ms - END_SLACK_MS


def reply_onset(client: EdgeClient, reply: ReplyHeard, replies: dict[str, ReplyHeard]) -> int | None:
    """Index of the first loud frame heard of this reply: after the data channel said it started (less a margin
    for audio overtaking the message) but not before the reply playing before it ended, and before it ended."""
    if reply.started_at is None:
        return None
    lo = reply.started_at - ONSET_SLACK_S
    for other in replies.values():
        if other is not reply and other.ended_at is not None and other.ended_at <= reply.started_at:
            lo = max(lo, other.ended_at - 0.01)
    hi = None if reply.ended_at is None else reply.ended_at + ONSET_SLACK_S
    hearing = client.hearing
    for i in range(len(hearing.arrivals) - 1, -1, -1):  # the recent past: replies are heard in order
        if hearing.arrivals[i] < lo:
            break
    else:
        i = -1
    for j in range(i + 1, len(hearing.arrivals)):
        if hi is not None and hearing.arrivals[j] > hi:
            return None
        if hearing.loud[j]:
            return j
    return None


def playing(client: EdgeClient) -> bool:
    """Whether a reply is playing now, as far as the data channel says."""
    return any(r.started_at is not None and r.ended_at is None for r in replies_of(client.told).values())


def settle(u: Utterance, client: EdgeClient) -> bool:
    """Update the utterance from what was heard; True once the reply covering its end was heard (or is over)."""
    replies = replies_of(client.told)
    found = answering(u, replies)
    u.turns = [r.turn_id for r in found if r.started_at is not None]
    u.edge_speech_ms = [s for s in speech_heard(client.told)
                        if overlaps(s[0], s[1], u.speech_start_ms, u.speech_end_ms, SPAN_SLACK_MS)]
    last = next((r for r in reversed(found) if r.started_at is not None and covers_end(u, r)), None)
    if last is None:
        return False
    u.answer_turn = last.turn_id
    if last.speech_start_ms is not None and last.speech_end_ms is not None:
        u.answer_span_ms = (last.speech_start_ms, last.speech_end_ms)
    onset = reply_onset(client, last, replies)
    if onset is not None:
        u.reply_onset = client.hearing.arrivals[onset]
    u.interrupted_ms = last.played_ms if last.interrupted else None
    return u.reply_onset is not None or last.ended_at is not None


def explain(u: Utterance, client: EdgeClient, timeout_s: float) -> str:
    """Why an utterance got no reply heard, from what the edge said."""
    replies = answering(u, replies_of(client.told))
    if u.answer_turn is not None:
        return "reply to its turn started, no loud audio heard"
    if not u.edge_speech_ms:
        return "no reply: the edge heard no speech"
    played = [r for r in replies if r.started_at is not None]
    if played:
        seconds = (u.speech_end_ms - u.speech_start_ms) / 1000
        upto = (max(r.speech_end_ms or 0 for r in played) - u.speech_start_ms) / 1000
        why = [f"no reply to its end within {timeout_s:.0f} s: {len(played)} turn(s) answered its speech to "
               f"{upto:.1f} of {seconds:.1f} s"]
        heard_to = max((s[1] if s[1] is not None else u.speech_end_ms) for s in u.edge_speech_ms)
        if heard_to < u.speech_end_ms - END_SLACK_MS:
            why.append(f"the edge heard no speech after {(heard_to - u.speech_start_ms) / 1000:.1f} s")
        early = [r for r in played if r.started_at is not None and r.started_at < u.speech_end_at]
        if early:
            why.append(f"a reply started {(u.speech_end_at - early[-1].started_at) * 1000:.0f} ms before the "
                       "speech ended")
        return "; ".join(why)
    if any(r.cancelled for r in replies):
        return "no reply: reply cancelled before it played"
    return f"no reply within {timeout_s:.0f} s: edge heard speech, no turn answered it"


@dataclass(frozen=True)
class Script:
    audio: list[Path]
    turns: int  # utterances per caller
    pause_s: float  # after a reply, before the next utterance (at least)
    reply_timeout_s: float
    barge_in_every: int  # 0: never; k: every k-th reply is interrupted by the next utterance
    pause_max_s: float | None = None  # pause drawn uniformly from [pause_s, pause_max_s] when set
    seed: int | None = None  # None: recordings in rotation; else each caller's order is drawn with this seed

    def plan(self, caller: int) -> list[tuple[Path, float]]:
        """(recording, pause after its reply) for each utterance of caller number ``caller``."""
        rng = random.Random(None if self.seed is None else self.seed * 1_000_003 + caller)
        out = []
        for n in range(self.turns):
            audio = (self.audio[(n + caller) % len(self.audio)] if self.seed is None else rng.choice(self.audio))
            pause = self.pause_s if self.pause_max_s is None else rng.uniform(self.pause_s, self.pause_max_s)
            out.append((audio, pause))
        return out


async def converse(url: str, token: str, script: Script, index: int,
                   progress: Callable[[Utterance], None]) -> list[Utterance]:
    client = EdgeClient(url, token)
    session_id = await client.connect()
    plan = script.plan(index)
    mic, hearing = client.mic, client.hearing
    utterances: list[Utterance] = []
    try:
        for n, (path, pause_s) in enumerate(plan):
            rec = recording(path)
            first_frame, _ = await mic.say(rec.clip)
            last_speech = max(0, int(np.ceil(rec.speech_end_s / FRAME_S)) - 1)  # the frame holding the end
            end_frame = first_frame + min(len(rec.clip.frames) - 1, last_speech)
            speech_end_at = await mic.captured(end_frame)
            u = Utterance(session_id, n, rec.name, first_frame,
                          first_frame * FRAME_MS + round(rec.speech_start_s * 1000),
                          first_frame * FRAME_MS + round(rec.speech_end_s * 1000), speech_end_at)
            utterances.append(u)
            await mic.captured(first_frame + len(rec.clip.frames) - 1)  # the whole recording is spoken
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
        await client.close()
    return utterances


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
                    args.reply_timeout, args.barge_in_every)
    done = 0

    def progress(u: Utterance) -> None:
        nonlocal done
        done += 1
        print(f"[{done}/{args.sessions * args.turns}] session {u.session_id[:8]} utterance {u.index} ({u.audio}): "
              f"{describe(u)}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    results = await asyncio.gather(*(converse(args.url, args.token, script, i, progress)
                                     for i in range(args.sessions)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    utterances = [u for r in results if not isinstance(r, BaseException) for u in r]
    print("reading the turns back from ClickHouse ...", file=sys.stderr, flush=True)
    rows = await server_turns(sorted({u.session_id for u in utterances}),
                              {t for u in utterances for t in u.turns}, args.telemetry_timeout)
    report = {"sessions": args.sessions, "seconds": round(time.monotonic() - t0, 1),
              "failed_sessions": [repr(f) for f in failures], "summary": summarize(utterances, rows),
              "utterances": [u.report() for u in utterances], "server_turns": list(rows.values())}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render_table(utterances, rows))
        print()
        print("summary (ms): " + ", ".join(f"{k} {v}" for k, v in report["summary"].items()))
        for failure in failures:
            print(f"failed session: {failure!r}")
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
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", default="")
    parser.add_argument("--ice-host", default="", help="gather ICE candidates on this address only (e.g. 127.0.0.1)")
    parser.add_argument("--telemetry-timeout", type=float, default=20.0,
                        help="seconds to wait for the turns to land in ClickHouse")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return asyncio.run(run(parser.parse_args(argv)))
