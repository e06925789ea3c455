"""`voicebus replay`: re-run the turn policy on recorded traffic, with today's settings and with others.

    voicebus replay --session ID [--set VOICEBUS_TURN_SILENCE_MS=300 ...] [--settings FILE] [--json] [--png FILE]
    voicebus replay --since 1h ...

Reads the sessions' voice.vad, voice.transcripts, voice.playout and voice.sessions from Kafka (no consumer group:
the live consumers do not notice), folds them through the turn core under the settings of this environment
("current": what the live processor runs with, if it shares this environment) and under those settings with the
ones given on top ("given"), and prints per turn what changed and a summary side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import cache, partial
from pathlib import Path
from typing import Any

from runtime.optional import optional_import
from runtime.settings import CommonSettings
from schemas.edge import SessionStarted
from schemas.topics import SESSIONS
from streams.turns.policy import Policy
from streams.turns.replay import (
    Change,
    Outcome,
    Summary,
    Turn,
    compare,
    outcome,
    policy_for,
    read_settings_file,
    summary,
)
from streams.turns.replay_source import Raw, decoded, read_records

_SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_ms(text: str, now_s: float) -> int:
    """``90s``, ``15m``, ``1h``, ``2d`` before ``now_s``, as Unix ms."""
    m = _SINCE.match(text.strip())
    if not m:
        raise ValueError(f"--since {text!r}: a number and s, m, h or d (e.g. 1h)")
    return int((now_s - float(m.group(1)) * _UNIT_S[m.group(2)]) * 1000)


def replay_session(records: list[Raw], given: dict[str, str]) -> tuple[Outcome, Outcome, list[Change]]:
    """One session under both policies and what changed (the outcomes without their decisions: they may cross
    processes)."""
    events = decoded(records)
    a = outcome(events, _policy(()))
    b = outcome(events, _policy(tuple(sorted(given.items()))),
                [(t.speech_start_ns, t.speech_end_ns) for t in a.turns if t.barged_in])
    return replace(a, decisions=()), replace(b, decisions=()), compare(a.turns, b.turns)


@cache
def _policy(given: tuple[tuple[str, str], ...]) -> Policy:
    return policy_for(dict(given))


_SHARED: list[list[Raw]] = []  # the sessions, for forked workers to read (not pickled over to them)


def _replay_shared(i: int, given: dict[str, str]) -> tuple[Outcome, Outcome, list[Change]]:
    return replay_session(_SHARED[i], given)


def run(sessions: dict[str, list[Raw]], given: dict[str, str], jobs: int = 1) -> dict[str, Any]:
    """Both runs of every session (over ``jobs`` processes): the outcomes, what changed, and the summaries."""
    if jobs > 1 and len(sessions) > 1:
        _SHARED[:] = sessions.values()  # forked workers inherit it: only indices and outcomes cross
        try:
            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
                rows = list(pool.map(partial(_replay_shared, given=given), range(len(_SHARED)),
                                     chunksize=max(1, len(_SHARED) // (4 * jobs))))
        finally:
            _SHARED.clear()
    else:
        rows = [replay_session(records, given) for records in sessions.values()]
    changes = [c for _, _, cs in rows for c in cs]
    return {"rows": rows, "current": summary(a for a, _, _ in rows),
            "given": summary((b for _, b, _ in rows), changes)}


# -- output --------------------------------------------------------------------------------------------------------


def _turn(t: Turn) -> dict[str, Any]:
    return {"turn_id": t.turn_id, "text": t.text, "speech_start_ms": t.speech_start_ns / 1e6,
            "speech_end_ms": t.speech_end_ns / 1e6, "committed_ms": t.committed_ns / 1e6,
            "endpointing_ms": t.endpointing_ms, "speculative": t.speculative, "premature": t.premature,
            "barged_in": t.barged_in}


def as_json(result: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    return {
        "settings": {"given": given},
        "sessions": [{"session_id": a.session_id, "changes": [
            {"kind": c.kind, "commit_delta_ms": c.commit_delta_ms, "current": [_turn(t) for t in c.before],
             "given": [_turn(t) for t in c.after]} for c in changes]} for a, _, changes in result["rows"]],
        "summary": {"current": result["current"].as_dict(), "given": result["given"].as_dict()},
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _flags(t: Turn) -> str:
    return "".join(f for f, on in (("S", t.speculative), ("P", t.premature), ("B", t.barged_in)) if on) or "-"


def _side(turns: tuple[Turn, ...]) -> str:
    return "; ".join(f"{t.committed_ns / 1e9:.2f} s ({_ms(t.endpointing_ms)}, {_flags(t)})" for t in turns) or "none"


def as_text(result: dict[str, Any], given: dict[str, str]) -> str:
    label = " ".join(f"{k}={v}" for k, v in given.items()) or "(nothing given: the same settings)"
    out = [f"given: {label}", "flags: S offered speculatively, P premature (the person went on within 1 s), "
           "B barged into", ""]
    for a, b, changes in result["rows"]:
        same = sum(c.kind == "same" for c in changes)
        out.append(f"session {a.session_id}: {len(a.turns)} turns with the current settings, {len(b.turns)} "
                   f"with the given; {same} the same")
        for c in changes:
            if c.kind == "same":
                continue
            text = " / ".join(t.text for t in (c.before or c.after))
            start = min(t.speech_start_ns for t in c.before + c.after) / 1e9
            delta = "" if c.commit_delta_ms is None else f" ({c.commit_delta_ms:+.0f} ms)"
            out.append(f"  {start:7.2f} s {c.kind:9}{delta:12} current {_side(c.before)} | given {_side(c.after)}"
                       f"  {text[:60]!r}")
        out.append("")
    cur, giv = result["current"], result["given"]
    lines: list[tuple[str, str, str]] = [
        ("sessions", str(cur.sessions), str(giv.sessions)), ("turns", str(cur.turns), str(giv.turns)),
        ("endpointing p50", _ms(cur.endpointing_p50_ms), _ms(giv.endpointing_p50_ms)),
        ("endpointing p95", _ms(cur.endpointing_p95_ms), _ms(giv.endpointing_p95_ms)),
        ("premature", _rate(cur), _rate(giv)),
        ("speculative offers", str(cur.speculative), str(giv.speculative)),
        ("  withdrawn", str(cur.withdrawn), str(giv.withdrawn)),
        ("barge-ins (recorded)", str(cur.barge_ins), str(giv.barge_ins)),
        ("asr timeouts", str(cur.asr_timeouts), str(giv.asr_timeouts)),
        ("turns changed", "", ", ".join(f"{n} {k}" for k, n in sorted(giv.changes.items()) if k != "same") or "none"),
    ]
    out.append(f"{'summary':22} {'current':>14} {'given':>14}")
    out += [f"{name:22} {a:>14} {b:>14}" for name, a, b in lines]
    return "\n".join(out)


def _rate(s: Summary) -> str:
    return "-" if s.premature_rate is None else f"{s.premature} ({100 * s.premature_rate:.0f} %)"


def plot(result: dict[str, Any], path: Path, max_sessions: int = 8) -> None:
    """Two timelines per session: the person's turns (their speech) and the commits, current above given."""
    matplotlib = optional_import("matplotlib", "ops")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"][:max_sessions]
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.6 * len(rows) + 0.6), squeeze=False)
    for ax, (a, b, _) in zip(axes[:, 0], rows, strict=True):
        for y, run, colour in ((1, a, "tab:blue"), (0, b, "tab:orange")):
            for t in run.turns:
                ax.broken_barh([(t.speech_start_ns / 1e9, (t.speech_end_ns - t.speech_start_ns) / 1e9)],
                               (y - 0.3, 0.6), facecolors=colour, alpha=0.5)
                ax.plot([t.committed_ns / 1e9] * 2, [y - 0.4, y + 0.4], color="red" if t.premature else "black")
        ax.set_yticks([0, 1], ["given", "current"])
        ax.set_title(f"session {a.session_id}", fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("media time (s): bars are committed turns' speech, lines their commits (red: premature)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- the command ---------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicebus replay", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--session", help="one session id")
    which.add_argument("--since", help="every session that started within this long ago (30m, 1h, 2d)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a turn setting to change (VOICEBUS_TURN_*), repeatable")
    parser.add_argument("--settings", type=Path, metavar="FILE", help="turn settings to change, NAME=VALUE lines")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    parser.add_argument("--png", type=Path, metavar="FILE", help="also plot the two timelines (extra `ops`)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="replay the sessions in N processes")
    args = parser.parse_args(argv)
    try:
        given = read_settings_file(args.settings.read_text()) if args.settings else {}
        given.update(read_settings_file("\n".join(args.set)))
        policy_for(given)  # refuse a bad name or value before reading anything
        since = since_ms(args.since, time.time()) if args.since else None
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = CommonSettings()
    sessions = asyncio.run(read_records(settings, args.session, since))
    if since is not None:  # a session begun before the window would replay from its middle: left out
        sessions = {k: v for k, v in sessions.items()
                    if any(isinstance(e, SessionStarted) for e in decoded(r for r in v if r[0] == SESSIONS.name))}
    if not sessions:
        print(f"no recorded inputs for {'session ' + args.session if args.session else 'that window'} on "
              f"{settings.kafka_bootstrap}", file=sys.stderr)
        return 1
    result = run(sessions, given, max(1, args.jobs))
    print(json.dumps(as_json(result, given), indent=2) if args.json else as_text(result, given))
    if args.png:
        try:
            plot(result, args.png)
        except ImportError as exc:
            print(f"error: no plot: {exc}", file=sys.stderr)
            return 1
    return 0
