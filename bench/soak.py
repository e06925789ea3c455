"""`python -m bench.soak`: N callers talk to the platform for a long time (default 30 minutes), with the embedded
engines, run the way `voicebus up` runs them (a local broker and `up`, see bench.running).

Each caller makes calls back to back (``--turns`` utterances each, then hangs up and calls again). Every
``--every`` seconds it prints, per service, resident memory (MB) and open file descriptors from /proc, the
utterances said and answered so far and the dead letters on voice.dlq; at the end a table of every sample and
each service's growth from the first sample after warm-up to the last. They should stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from bench.running import SERVICES, Platform, children_of, platform, usage
from bench.simulate import SPEECH, Script, converse
from bench.utterances import Utterance
from ingest.ice import use_host_addresses
from schemas.topics import DLQ

AUDIO = [SPEECH / "misc" / "goforward.wav"]  # jfk (11 s) is cut into turns the caller talks over: barge-ins, not load
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@dataclass
class Tally:
    said: int = 0
    answered: int = 0
    calls: int = 0
    failed_calls: int = 0
    dead_letters: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sample:
    minute: float
    usage: dict[str, tuple[float, int] | None]  # service -> (RSS MB, fds)
    said: int
    answered: int
    dead_letters: int


async def caller(p: Platform, index: int, script: Script, until: float, tally: Tally) -> None:
    def progress(u: Utterance) -> None:
        tally.said += 1
        tally.answered += u.answered

    call = 0
    while time.monotonic() < until:
        tally.calls += 1
        try:
            await converse(p.url, "", script, index * 1000 + call, progress)
        except Exception as exc:  # noqa: BLE001 - counted and shown; the soak goes on
            tally.failed_calls += 1
            tally.errors.append(repr(exc))
            print(f"call failed: {exc!r}", file=sys.stderr, flush=True)
            await asyncio.sleep(1.0)
        call += 1


async def count_dead_letters(bootstrap: str, tally: Tally) -> None:
    consumer = AIOKafkaConsumer(DLQ.name, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            tally.dead_letters += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()


def sample(p: Platform, t0: float, tally: Tally) -> Sample:
    pids = p.services()
    found = {name: usage(pid) if (pid := pids.get(name)) is not None else None for name in SERVICES}
    edge = pids.get("ingest")  # the signaling front; the edge workers hold the media, each its own process
    for n, worker in enumerate(sorted(children_of(edge)) if edge is not None else [], 1):
        found[f"edge worker {n}"] = usage(worker)
    broker = p.broker.pid()
    found["kafka"] = usage(broker) if broker is not None else None
    return Sample((time.monotonic() - t0) / 60, found, tally.said, tally.answered, tally.dead_letters)


def render(samples: list[Sample]) -> str:
    names = list(samples[0].usage) if samples else []
    heads = ["min", *[f"{n} MB/fd" for n in names], "answered/said", "DLQ"]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    for s in samples:
        cells = [f"{s.minute:.0f}"]
        for n in names:
            u = s.usage[n]
            cells.append("-" if u is None else f"{u[0]:.0f}/{u[1]}")
        cells += [f"{s.answered}/{s.said}", str(s.dead_letters)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def growth(samples: list[Sample], warm: int = 2) -> str:
    """Each service's RSS and fd change from sample ``warm`` (after warm-up) to the last."""
    if len(samples) <= warm:
        return "too few samples for growth"
    first, last = samples[warm], samples[-1]
    out = []
    for name in first.usage:
        a, b = first.usage[name], last.usage[name]
        if a and b:
            out.append(f"{name} {b[0] - a[0]:+.0f} MB, {b[1] - a[1]:+d} fds")
    return f"from minute {first.minute:.0f} to {last.minute:.0f}: " + ", ".join(out)


async def run(args: argparse.Namespace) -> int:
    use_host_addresses(["127.0.0.1"])
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    script = Script(AUDIO, args.turns, pause_s=1.0, reply_timeout_s=30.0, barge_in_every=0, pause_max_s=2.0,
                    seed=7, stall_s=30.0)
    tally = Tally()
    samples: list[Sample] = []
    async with platform(Path(args.work)) as p:
        t0 = time.monotonic()
        until = t0 + args.minutes * 60
        dlq = asyncio.create_task(count_dead_letters(p.bootstrap, tally))
        callers = [asyncio.create_task(caller(p, i, script, until, tally)) for i in range(args.sessions)]
        samples.append(sample(p, t0, tally))
        while time.monotonic() < until:
            await asyncio.sleep(min(args.every, max(0.0, until - time.monotonic())))  # the sampling period
            samples.append(s := sample(p, t0, tally))
            print(f"[{s.minute:5.1f} min] answered {s.answered}/{s.said}, DLQ {s.dead_letters}, calls {tally.calls} "
                  f"({tally.failed_calls} failed): " + ", ".join(
                      f"{n} {u[0]:.0f} MB {u[1]} fds" if u else f"{n} -" for n, u in s.usage.items()),
                  file=sys.stderr, flush=True)
        _, late = await asyncio.wait(callers, timeout=180)  # the calls in progress finish (their waits are bounded)
        for task in late:
            task.cancel()
            tally.errors.append("a call still going 180 s after the end: cancelled")
        await asyncio.gather(*callers, return_exceptions=True)
        samples.append(sample(p, t0, tally))
        dlq.cancel()
        await asyncio.gather(dlq, return_exceptions=True)
        restarts = sum(" exited with " in line for line in p.log_path.read_text(errors="replace").splitlines())
    table = render(samples)
    summary = (f"{args.sessions} callers, {args.minutes:.0f} min: answered {tally.answered}/{tally.said} "
               f"utterances in {tally.calls} calls ({tally.failed_calls} failed), {tally.dead_letters} dead "
               f"letters, {restarts} service restarts by up\n{growth(samples)}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "soak.md").write_text(f"# Soak\n\n{summary}\n\n{table}\n")
    print(table)
    print(summary)
    for error in tally.errors[:10]:
        print(f"failed call: {error}")
    return 0 if tally.said and tally.answered == tally.said and not tally.failed_calls else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2, help="callers at once")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--turns", type=int, default=10, help="utterances per call")
    parser.add_argument("--work", default="/tmp/voicebus-soak", help="directory for the broker and chDB")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
