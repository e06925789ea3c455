"""`python -m bench.chaos`: faults injected into a running platform during simulated conversations, and what
became of every turn. Used by tests/chaos (which asserts on the outcomes) and printable on its own.

One platform (a broker this process owns + `voicebus up`, see bench.running) serves every fault in turn, so each
fault also shows that the platform recovered without a restart of `up`. Per fault, two callers speak
``turns`` utterances each; when the ``trigger``-th turn of theirs is committed the fault is injected (a moment
later, so a reply is being made or played). Then, per fault:

- committed: turns the turn processor committed for the two sessions (distinct TurnCommitted turn ids);
- answered: committed turns whose reply the callers heard start (the edge's `reply_started`);
- reported: committed turns not answered but ended with a reason (TurnCancelled, TurnEnded not completed,
  ReplyCancelled), with the reasons;
- lost: committed turns neither answered nor reported (must be 0);
- twice: turns whose reply a caller heard start more than once (must be 0);
- in ClickHouse: committed turns with their row in the turns table (all, once: it is keyed by turn id);
- recovered: every service runs again and each caller's last utterance was answered.

More faults: add an entry to FAULTS (a name and an async function of the platform returning what it did); the
edge worker kill and the partition-leader broker kill belong there once the edge runs workers and the broker a
cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.running import REPLY_TOPICS, SERVICES, Platform, platform
from bench.simulate import SPEECH, Script, converse, server_turns
from bench.utterances import Utterance
from inference.responder import WORKER_HEADER
from ingest.client import EdgeClient
from ingest.ice import use_host_addresses
from schemas.topics import REPLIES, TRANSCRIPTS, TURNS

GO_FORWARD = SPEECH / "misc" / "goforward.wav"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


# -- faults --

Fault = Callable[[Platform], Awaitable[str]]


OUTPUT = {"streams": (TURNS.name,), "responder": REPLY_TOPICS, "asr": (TRANSCRIPTS.name,)}  # what each makes


def kill(service: str) -> Fault:
    async def inject(p: Platform) -> str:
        pid = p.services()[service]
        os.kill(pid, signal.SIGKILL)
        inject.victim, inject.killed_at = pid, time.time()  # type: ignore[attr-defined]
        seconds = await p.restarted(service, pid, 60)
        return f"SIGKILL pid {pid}; up restarted it in {seconds:.1f} s"
    inject.output = OUTPUT.get(service)  # type: ignore[attr-defined]
    return inject


def broker_outage(seconds: float) -> Fault:
    async def inject(p: Platform) -> str:
        t0 = time.monotonic()
        await p.stop_broker()
        stopped = time.monotonic() - t0
        await asyncio.sleep(seconds)  # the fault itself: the broker stays away this long
        t1 = time.monotonic()
        await p.start_broker()
        return f"broker stopped in {stopped:.1f} s, away {seconds:.0f} s, back in {time.monotonic() - t1:.1f} s"
    return inject


FAULTS: dict[str, Fault] = {
    "kill turn processor": kill("streams"),
    "kill responder": kill("responder"),
    "kill ASR worker": kill("asr"),
    "kill telemetry sink": kill("telemetry"),
    "broker away 15 s": broker_outage(15.0),
    # "kill edge worker": from the edge-workers branch (the edge as worker processes)
    # "kill voice.turns leader": from the cluster branch (three brokers)
}


# -- what the platform said about the turns --


@dataclass
class Watcher:
    """Every event on voice.turns and the edge's reply topic, by session (from the beginning: the broker is
    this run's own)."""

    bootstrap: str
    events: dict[str, list[Any]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # topic -> (create time in s, the responder process that made it, if the record says) of every record
    produced: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def first_after(self, topics: tuple[str, ...], t: float, by_other_than: int | None = None) -> float | None:
        """Seconds from ``t`` (wall clock) to the first record made on ``topics`` after it (only those a responder
        process other than ``by_other_than`` made, if given: the ASR worker writes on the reply topics too)."""
        made = sorted(m for topic in topics for m in self.produced.get(topic, []))
        return next((at - t for at, by in made if at > t and (
            by_other_than is None or (by and not by.endswith(f":{by_other_than}")))), None)

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(TURNS.name, *REPLY_TOPICS, TRANSCRIPTS.name,
                                    bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    self.produced.setdefault(tp.topic, []).extend(
                        (r.timestamp / 1000, dict(r.headers).get(WORKER_HEADER, b"").decode()) for r in records)
                    if tp.topic == TRANSCRIPTS.name:
                        continue
                    codec = TURNS.codec if tp.topic == TURNS.name else REPLIES.codec
                    for record in records:
                        try:
                            event = codec.decode(record.value)
                        except Exception:  # noqa: BLE001 - a dead letter's business, not the watcher's
                            continue
                        if event.type != "reply_audio_chunk":
                            self.events.setdefault(event.session_id, []).append(event)
                if batch:
                    self.changed.set()
        finally:
            await consumer.stop()

    def of(self, sessions: list[str]) -> list[Any]:
        return [e for s in sessions for e in self.events.get(s, [])]

    async def until_committed(self, sessions: list[str], count: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len({e.turn_id for e in self.of(sessions) if e.type == "turn_committed"}) < count:
                self.changed.clear()
                await self.changed.wait()


@dataclass
class Outcome:
    fault: str
    utterances: int
    utterances_answered: int
    committed: int
    answered: int
    reported: int
    lost: int
    twice: int
    in_clickhouse: int
    recovered: bool
    reasons: str = ""
    did: str = ""
    notes: str = ""
    lost_turns: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.twice == 0 and self.in_clickhouse == self.committed and self.recovered
                and self.committed > 0)


def judge(fault: str, events: list[Any], started: Counter[str], ch_turns: set[str], utterances: list[Utterance],
          last_answered: bool, services_up: bool, did: str = "", notes: str = "") -> Outcome:
    """The outcome of one fault from what was recorded (pure)."""
    committed = {e.turn_id for e in events if e.type == "turn_committed"}
    reasons: dict[str, str] = {}
    for e in events:
        if e.type == "turn_cancelled":
            reasons.setdefault(e.turn_id, e.reason)
        elif e.type == "turn_ended" and e.outcome != "completed":
            reasons.setdefault(e.turn_id, e.outcome)
        elif e.type == "reply_cancelled":
            reasons.setdefault(e.turn_id, "reply_cancelled")
    answered = {t for t in committed if started[t] > 0}
    reported = {t for t in committed - answered if t in reasons}
    lost = sorted(committed - answered - reported)
    every_reason = Counter(reasons[t] for t in reasons)
    return Outcome(fault, len(utterances), sum(u.answered for u in utterances), len(committed), len(answered),
                   len(reported), len(lost), sum(1 for n in started.values() if n > 1),
                   len(committed & ch_turns), last_answered and services_up,
                   ", ".join(f"{r} {n}" for r, n in sorted(every_reason.items())), did, notes, lost)


HEADS = ("fault", "utt answered", "committed", "answered", "reported", "lost", "twice", "in CH", "recovered",
         "ok", "cancel reasons", "what happened")


def render(outcomes: list[Outcome]) -> str:
    rows = [HEADS] + [(o.fault, f"{o.utterances_answered}/{o.utterances}", o.committed, o.answered, o.reported,
                       o.lost, o.twice, f"{o.in_clickhouse}/{o.committed}", "yes" if o.recovered else "NO",
                       "ok" if o.ok else "FAIL", o.reasons or "-", "; ".join(filter(None, [o.did, o.notes])))
                      for o in outcomes]
    cells = [[str(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("---" for _ in HEADS) + "|")
    return "\n".join(lines)


# -- one fault during one conversation --


async def clickhouse_turns(sessions: list[str], wanted: set[str], timeout: float) -> set[str]:
    rows: dict[str, Any] = {}
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            rows = await server_turns(sessions, set(), 5)
        except Exception:  # noqa: BLE001 - the sink may be restarting: ask again
            rows = {}
        if wanted <= set(rows):
            break
        await asyncio.sleep(1.0)  # the sink writes in batches
    return set(rows)


async def run_fault(p: Platform, watcher: Watcher, name: str, fault: Fault, turns: int = 4, trigger: int = 3,
                    say: Callable[[str], None] = print) -> Outcome:
    script = Script([GO_FORWARD], turns=turns, pause_s=1.0, reply_timeout_s=30.0, barge_in_every=0, stall_s=30.0)
    clients = [EdgeClient(p.url) for _ in range(2)]
    heard: list[list[Utterance]] = [[], []]

    async def caller(i: int) -> None:
        await asyncio.sleep(1.5 * i)  # the callers do not speak in lockstep
        await converse(p.url, "", script, i, lambda u: None, heard[i], clients[i])

    say(f"== {name}")
    tasks = [asyncio.create_task(caller(i)) for i in range(2)]
    notes: list[str] = []
    at = 0.0
    did = ""
    try:
        async with asyncio.timeout(60):
            while not all(c.session_id for c in clients):
                await asyncio.sleep(0.1)  # both callers connected (bounded)
        sessions = [c.session_id for c in clients]
        await watcher.until_committed(sessions, trigger, 90)
        await asyncio.sleep(0.3)  # into the reply being made for it
        at = time.time()
        did = await fault(p)
        say(f"   {did}")
    except TimeoutError:
        notes.append(f"the {trigger}th turn was never committed: fault not injected")
    for task, result in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True):
        if isinstance(result, BaseException):
            notes.append(f"a caller failed: {result}")
    sessions = [c.session_id for c in clients if c.session_id]
    try:
        async with asyncio.timeout(60):
            while set(p.services()) != set(SERVICES):
                await asyncio.sleep(0.2)  # the supervisor restarting what died (bounded)
        services_up = True
    except TimeoutError:
        services_up = False
        notes.append(f"services running: {sorted(p.services())}")
    await asyncio.sleep(2.0)  # the last events on their way to the watcher (what happened, not a goal)
    if (topics := getattr(fault, "output", None)) and did:  # an upper bound: nobody may have spoken at once
        gap = watcher.first_after(topics, getattr(fault, "killed_at", at),
                                  getattr(fault, "victim", None) if topics == REPLY_TOPICS else None)
        did += f"; its first output {gap:.1f} s after the kill" if gap is not None else "; no output after it"
    events = watcher.of(sessions)
    committed = {e.turn_id for e in events if e.type == "turn_committed"}
    ch = await clickhouse_turns(sessions, committed, 45)
    started: Counter[str] = Counter(t.message["turn_id"] for c in clients for t in c.told
                                    if t.type == "reply_started" and "turn_id" in t.message)
    utterances = [u for h in heard for u in h]
    last_answered = all(h and h[-1].answered for h in heard) and all(len(h) == turns for h in heard)
    if not last_answered:
        notes.append("unanswered: " + ", ".join(f"caller {i} utt {u.index} ({u.note or 'no reply'})"
                                                for i, h in enumerate(heard) for u in h if not u.answered))
    outcome = judge(name, events, started, ch, utterances, last_answered, services_up, did, "; ".join(notes))
    say(f"   {outcome}")
    return outcome


async def run_chaos(work: Path, faults: list[str] | None = None, turns: int = 4,
                    say: Callable[[str], None] = print,
                    then: Callable[[Platform], Awaitable[None]] | None = None,
                    env: dict[str, str] | None = None) -> list[Outcome]:
    """Every fault (or those named) in turn on one platform (``env``: settings for its services); ``then``: more
    to do on it afterwards."""
    use_host_addresses(["127.0.0.1"])
    outcomes: list[Outcome] = []
    async with platform(work, env) as p:
        watcher = Watcher(p.bootstrap)
        watching = asyncio.create_task(watcher.run())
        try:
            for name in faults or list(FAULTS):
                outcomes.append(await run_fault(p, watcher, name, FAULTS[name], turns=turns, say=say))
            if then is not None:
                await then(p)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            errors = [line for line in p.log_path.read_text(errors="replace").splitlines() if " ERROR " in line]
            say(f"{len(errors)} ERROR lines in {p.log_path}")
    return outcomes


def write_table(outcomes: list[Outcome], path: Path = ARTIFACTS / "chaos.md") -> str:
    table = render(outcomes)
    path.parent.mkdir(parents=True, exist_ok=True)
    lost = [f"- {o.fault}: lost {', '.join(o.lost_turns)}" for o in outcomes if o.lost_turns]
    path.write_text("# Faults x outcomes\n\n" + table + "\n" + ("\n" + "\n".join(lost) + "\n" if lost else ""))
    return table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/voicebus-chaos", help="directory for the broker and chDB")
    parser.add_argument("--fault", action="append", choices=list(FAULTS), help="only these (default: all)")
    parser.add_argument("--turns", type=int, default=4, help="utterances per caller per fault (the fault comes at "
                        "the third turn committed; the last ones show the recovery)")
    parser.add_argument("--env", action="append", default=[], metavar="VOICEBUS_X=VALUE",
                        help="a setting for the platform's services (e.g. a session timeout to compare)")
    args = parser.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the watcher's reconnects while the broker is away
    env = dict(item.split("=", 1) for item in args.env)
    outcomes = asyncio.run(run_chaos(Path(args.work), args.fault, args.turns,
                                     say=lambda s: print(s, file=sys.stderr, flush=True), env=env))
    print(write_table(outcomes))
    print(f"(also in {ARTIFACTS / 'chaos.md'}; details: {[asdict(o) for o in outcomes if not o.ok]})")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
