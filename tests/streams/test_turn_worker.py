"""The turn processor on the real broker, as a separate process: a scripted conversation, and a crash.

Few tests on purpose: a Faust worker takes seconds to join its group.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from bench.endpointing_events import Conversation
from runtime.kafka import make_consumer, make_producer
from schemas.base import Event
from schemas.telemetry import StageStamped
from schemas.topics import (
    DLQ,
    PLAYOUT,
    REGISTRY,
    SESSIONS,
    TELEMETRY,
    TRANSCRIPTS,
    TURN_STATE_CHANGELOG,
    TURNS,
    VAD,
)
from streams.turns.core import SOURCES, Context, initial, step
from streams.turns.policy import Policy
from streams.turns.replay import outcome, policy_for
from streams.turns.replay_source import read_inputs
from tests.conftest import free_port
from tests.metrics import histogram_is_whole, scrape

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOPIC_OF = {"vad": VAD, "asr": TRANSCRIPTS, "playout": PLAYOUT, "sessions": SESSIONS}
S1, S2 = "a" * 32, "b" * 32


class Worker:
    """`voicebus streams` in its own process, on the test's topic prefix."""

    def __init__(self, topics: Any, tmp_path: Path, name: str) -> None:
        self.log_path = tmp_path / f"{name}.log"
        self.env = {**os.environ, "VOICEBUS_KAFKA_BOOTSTRAP": topics.settings.kafka_bootstrap,
                    "VOICEBUS_TOPIC_PREFIX": topics.prefix, "VOICEBUS_DATA_DIR": str(tmp_path / "data"),
                    "VOICEBUS_TURN_COMMIT_INTERVAL_S": "0.2", "VOICEBUS_LOG_LEVEL": "INFO",
                    # The broker's smallest: a killed worker's partitions move on after this long.
                    "VOICEBUS_TURN_SESSION_TIMEOUT_S": "6"}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "voicebus.cli", "streams"], cwd=REPO,
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


async def produce(settings: Any, events: list[Event], raw: list[tuple[str, bytes]] = ()) -> None:  # type: ignore[assignment]
    producer = make_producer(settings)
    await producer.start()
    try:
        for topic, value in raw:
            await producer.send_and_wait(settings.topic(topic), value, key=S1.encode())
        for e in events:
            spec = TOPIC_OF[SOURCES[type(e)]]
            await producer.send(settings.topic(spec.name), spec.codec.encode(e), key=e.session_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


class Outputs:
    """Everything the processor published on voice.turns, voice.telemetry and voice.dlq, read from the start."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.turns: list[Event] = []
        self.stamps: list[StageStamped] = []
        self.dead: list[Any] = []
        self._consumer = make_consumer(settings, *(settings.topic(t.name) for t in (TURNS, TELEMETRY, DLQ)),
                                       group_id=None)

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def until(self, done: Callable[[Outputs], bool], worker: Worker, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not done(self):
            assert time.monotonic() < deadline, (f"timed out with {decisions_of(self.turns)}, "
                                                 f"{len(self.dead)} dead letters; worker log:\n{worker.log()}")
            assert worker.proc is not None and worker.proc.poll() is None, f"worker died:\n{worker.log()}"
            await self._read()

    async def drain(self, worker: Worker, timeout_s: float = 30.0) -> None:
        """Read up to the current end of the output topics."""
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
        deadline = time.monotonic() + timeout_s
        while [tp for tp, end in ends.items() if await self._consumer.position(tp) < end]:
            assert time.monotonic() < deadline, f"could not read to the end; worker log:\n{worker.log()}"
            await self._read()

    async def _read(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=200)
        for tp, records in batches.items():
            for r in records:
                name = tp.topic.removeprefix(self.settings.topic_prefix)
                if name == TURNS.name:
                    self.turns.append(TURNS.codec.decode(r.value))
                elif name == TELEMETRY.name:
                    self.stamps.append(TELEMETRY.codec.decode(r.value))
                else:
                    self.dead.append(DLQ.codec.decode(r.value))

    def committed(self, session_id: str) -> list[tuple[str, str]]:
        return [(e.turn_id, e.text) for e in self.turns if e.type == "turn_committed" and e.session_id == session_id]


def expected(events: list[Event]) -> dict[str, list[Event]]:
    """What the pure core decides on the same events, per session."""
    states: dict[str, Any] = {}
    out: dict[str, list[Event]] = {}
    for e in events:
        states[e.session_id], decisions = step(states.get(e.session_id) or initial(e.session_id), e,
                                               Context(Policy(), 0))
        out.setdefault(e.session_id, []).extend(d for d in decisions if not isinstance(d, StageStamped))
    return out


def changelog_bound(events: list[Event]) -> int:
    """The most table writes the events may cause: one per event that, by the pure core in this order, decides
    something or changes a session's state beyond its media clock and watermarks (``now_ns``, ``seen``), plus
    one per second of each session's media clock. Slack for the worker's own interleaving of the topics."""
    states: dict[str, Any] = {}
    changes = 0
    for e in events:
        old = states.get(e.session_id)
        states[e.session_id], decisions = step(old or initial(e.session_id), e, Context(Policy(), 0))
        clockless = {"now_ns", "seen"}
        if old is None or decisions or (states[e.session_id].model_dump(exclude=clockless)
                                        != old.model_dump(exclude=clockless)):
            changes += 1
    return changes + sum(s.now_ns // 1_000_000_000 for s in states.values()) + 10


async def changelog_records(topics: Any) -> int:
    """Records ever written to the table's changelog (end offsets: compaction does not lower them)."""
    consumer = make_consumer(topics.settings, group_id=None)
    await consumer.start()
    try:
        changelog = [TopicPartition(topics.name(TURN_STATE_CHANGELOG.name), p) for p in range(8)]
        return sum((await consumer.end_offsets(changelog)).values())
    finally:
        await consumer.stop()


def decisions_of(turns: list[Event]) -> list[tuple[Any, ...]]:
    """Decisions without their clocks; speculative offers left out (they depend on how topics interleave)."""
    return [(e.type, e.turn_id, getattr(e, "text", None), getattr(e, "reason", None), getattr(e, "played_ms", None),
             getattr(e, "outcome", None)) for e in turns if e.type != "turn_speculative"]


async def wait_for_offsets(settings: Any, group: str, worker: Worker, timeout_s: float = 30.0) -> None:
    """Until the worker's group has committed offsets up to the end of every source partition it read."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = make_consumer(settings, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic(s.name), p) for s in TOPIC_OF.values() for p in range(8)]
        ends = {tp: end for tp, end in (await consumer.end_offsets(tps)).items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            if all(tp in committed and committed[tp].offset >= end for tp, end in ends.items()):
                return
            assert time.monotonic() < deadline, f"{ends} {committed}; worker log:\n{worker.log()}"
            await asyncio.sleep(0.1)  # polling the broker's committed offsets, bounded by the deadline
    finally:
        await consumer.stop()
        await admin.close()


async def assert_topics_are_the_registry_s(topics: Any) -> None:
    """The table's changelog is the registry's topic (it holds the state); Faust added only its leader topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=topics.settings.kafka_bootstrap)
    await admin.start()
    try:
        ours = {t for t in await admin.list_topics() if t.startswith(topics.prefix)}
    finally:
        await admin.close()
    registry = {topics.name(spec.name) for spec in REGISTRY}
    assert {t.removeprefix(topics.prefix) for t in ours - registry} == {"voicebus-turns-__assignor-__leader"}
    consumer = make_consumer(topics.settings, group_id=None)
    await consumer.start()
    try:
        changelog = [TopicPartition(topics.name(TURN_STATE_CHANGELOG.name), p) for p in range(8)]
        assert sum((await consumer.end_offsets(changelog)).values()) > 0
    finally:
        await consumer.stop()


async def test_scripted_conversation(topics: Any, tmp_path: Path) -> None:
    await topics.create_all()
    story = (Conversation(S1).say(500, 1500, "tell me a story").wait(2200).playout_started(f"{S1}-1").wait(3000)
             .say(3000, 3800, "stop please", barge_in=(f"{S1}-1", 740)).wait(4600))
    cough = (Conversation(S2).say(400, 1200, "i want to").say(1600, 2400, "go home").wait(3200)
             .playout_started(f"{S2}-1").wait(3600).say(3600, 3800, "", barge_in=(f"{S2}-1", 300)).wait(5000)
             .playout_finished(f"{S2}-1", 1500).wait(5400))
    events = story.events + cough.events
    await produce(topics.settings, events, raw=[(VAD.name, b"{not json")])
    want = expected(events)
    assert decisions_of(want[S1]) == [
        ("turn_committed", f"{S1}-1", "tell me a story", None, None, None),
        ("barge_in", f"{S1}-1", None, None, 740, None),
        ("turn_cancelled", f"{S1}-1", None, "barge_in", None, None),
        ("turn_ended", f"{S1}-1", None, None, None, "interrupted"),
        ("turn_committed", f"{S1}-2", "stop please", None, None, None),
    ]
    with Worker(topics, tmp_path, "worker") as worker:
        async with Outputs(topics.settings) as out:
            await out.until(lambda o: len(decisions_of(o.turns)) >= len(decisions_of(want[S1] + want[S2]))
                            and len(o.dead) == 1, worker)
        await wait_for_offsets(topics.settings, f"{topics.prefix}voicebus-turns", worker)  # every event applied
    for sid in (S1, S2):
        assert decisions_of([e for e in out.turns if e.session_id == sid]) == decisions_of(want[sid])
    assert out.dead[0].source_topic == topics.name(VAD.name) and out.dead[0].value == b"{not json"
    await assert_topics_are_the_registry_s(topics)
    # Most of the events only move the clock (the VadProgress): those are not written to the table.
    records, bound = await changelog_records(topics), changelog_bound(events)
    assert records <= bound < sum(e.type == "vad_progress" for e in events) / 4, (records, bound)
    stamped = {(s.turn_id, s.stage) for s in out.stamps}
    for turn_id in (f"{S1}-1", f"{S1}-2", f"{S2}-1"):
        assert {(turn_id, stage) for stage in ("speech_end", "vad_end", "asr_final", "turn_committed")} <= stamped


async def test_crash_mid_turn_restores_the_table_and_commits_once(topics: Any, tmp_path: Path) -> None:
    await topics.create_all()
    script = Conversation(S1).say(500, 1500, "hello there").wait(2500).say(3000, 3800, "i would like to")
    before = list(script.events)
    script.wait(4100).say(4100, 4900, "book a table").wait(6000)
    after = script.events[len(before):]

    await produce(topics.settings, before)
    with Worker(topics, tmp_path, "first") as first:
        async with Outputs(topics.settings) as out:
            await out.until(lambda o: o.committed(S1) == [(f"{S1}-1", "hello there")], first)
            # The first worker has applied everything so far (its offsets are committed only after its
            # producer flushed the table's changelog): kill it in the middle of turn 2.
            await wait_for_offsets(topics.settings, f"{topics.prefix}voicebus-turns", first)
            first.kill()
    await produce(topics.settings, after)
    with Worker(topics, tmp_path, "second") as second:
        async with Outputs(topics.settings) as out:
            await out.until(lambda o: len(o.committed(S1)) >= 2, second)
            # A replayed turn 1 would have been decided before turn 2, which comes later in the partition.
            # (Not waiting for the second worker's offsets: right after a restart Faust sometimes stops
            # advancing them, a Faust issue; the events it would then redeliver are recognised by the state.)
            await out.drain(second)
    # Turn 2's first words were only in the restored table; the turn ids continue from it; nothing twice.
    assert out.committed(S1) == [(f"{S1}-1", "hello there"), (f"{S1}-2", "i would like to book a table")]


async def test_turn_processor_serves_metrics(topics: Any, tmp_path: Path) -> None:
    await topics.create_all()
    port = free_port()
    script = Conversation(S1).say(500, 1500, "hello there").wait(2500)
    # S2's recogniser never answers: after the ASR wait (8 s of media time) the turn ends with the reason.
    silent = Conversation(S2).say(500, 1500, None).wait(10_500)
    # The junk goes first on S1's VAD partition: the turn cannot be committed before it was dead-lettered.
    await produce(topics.settings, script.events + silent.events, raw=[(VAD.name, b"{not json")])
    worker = Worker(topics, tmp_path, "metrics")
    worker.env["VOICEBUS_TURN_METRICS_PORT"] = str(port)
    with worker:
        async with Outputs(topics.settings) as out:
            await out.until(lambda o: o.committed(S1) == [(f"{S1}-1", "hello there")]
                            and any(e.type == "turn_ended" and e.session_id == S2 for e in o.turns), worker)
            samples = await scrape(port)
    assert [(e.type, e.turn_id, getattr(e, "reason", getattr(e, "outcome", None))) for e in out.turns
            if e.session_id == S2] == [("turn_cancelled", f"{S2}-1", "asr_timeout"),
                                       ("turn_ended", f"{S2}-1", "cancelled")]
    assert samples["voicebus_streams_asr_timeouts_total"] == 1
    assert f"no final transcript within the ASR wait (8000 ms); is the ASR worker up? session_id={S2} " \
           f"turn_id={S2}-1" in worker.log()
    assert samples["voicebus_streams_dead_letters_total"] == 1
    assert samples["voicebus_streams_events_in_total"] >= 2
    assert samples["voicebus_streams_events_out_total"] >= len(out.turns) + len(out.stamps) >= 1
    assert samples["voicebus_streams_sessions"] == 2
    assert samples["voicebus_streams_consumer_lag"] >= 0
    histogram_is_whole(samples, "voicebus_streams_processing_ms")


def phases(events: list[Event]) -> list[list[Event]]:
    """The events cut before and after each final transcript and playout event. Produced one phase at a time,
    each applied before the next, the live processor reads such an event after the VAD events made before it and
    before those made after it, as it does live. (Produced at once, as a backlog, the topics are read in any
    interleaving: the turns are the same, but not the speculative offers nor the media time of a decision.)"""
    out: list[list[Event]] = [[]]
    for e in events:
        if SOURCES[type(e)] != "vad" and e.type != "transcript_partial":
            out += [[e], []]
        else:
            out[-1].append(e)
    return [p for p in out if p]


async def test_replay_with_the_live_settings_reproduces_the_live_decisions(topics: Any, tmp_path: Path) -> None:
    """`voicebus replay`'s fold of what is recorded on the input topics decides exactly what the live processor
    published on voice.turns (wall clocks aside), and the command runs on it with other settings."""
    await topics.create_all()
    story = (Conversation(S1).say(500, 1500, "tell me a story").wait(2200).playout_started(f"{S1}-1").wait(3000)
             .say(3000, 3800, "stop please", barge_in=(f"{S1}-1", 740)).wait(4600)
             .say(5000, 5600, "i want to").say(6300, 7000, "go home").wait(9000))
    cough = (Conversation(S2).say(400, 1200, "i want to").say(1600, 2400, "go home").wait(3200)
             .playout_started(f"{S2}-1").wait(3600).say(3600, 3800, "", barge_in=(f"{S2}-1", 300)).wait(5000)
             .playout_finished(f"{S2}-1", 1500).wait(5400))
    events = story.events + cough.events
    group = f"{topics.prefix}voicebus-turns"
    with Worker(topics, tmp_path, "worker") as worker:
        for phase in phases(events):
            await produce(topics.settings, phase)
            await wait_for_offsets(topics.settings, group, worker)  # the processor has applied it all
        async with Outputs(topics.settings) as out:
            await out.drain(worker)

    recorded = await read_inputs(topics.settings)  # every session, no consumer group
    assert set(recorded) == {S1, S2}
    assert recorded[S1] == (await read_inputs(topics.settings, S1))[S1]  # one session: its partitions only
    for sid in (S1, S2):
        live = [e.model_dump(exclude={"wall_ns"}) for e in out.turns if e.session_id == sid]
        replayed = [e.model_dump(exclude={"wall_ns"}) for e in outcome(recorded[sid], policy_for()).decisions]
        assert replayed == live and any(e["type"] == "turn_committed" for e in live)

    env = {**os.environ, "VOICEBUS_KAFKA_BOOTSTRAP": topics.settings.kafka_bootstrap,
           "VOICEBUS_TOPIC_PREFIX": topics.prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebus.cli", "replay", "--session", S1, "--json",
        "--set", "VOICEBUS_TURN_INCOMPLETE_SILENCE_MS=400", cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    doc = json.loads(stdout)
    commits = sum(e.type == "turn_committed" for e in out.turns if e.session_id == S1)
    assert doc["summary"]["current"]["turns"] == commits == 3  # "i want to" waits for "go home" ...
    assert doc["summary"]["given"]["changes"] == {"same": 2, "split": 1}  # ... not with 400 ms after "to"
