"""Shared fixtures: one real Kafka broker per test run, per-test topic names, per-test chDB directories."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.settings import CommonSettings, KafkaBrokerSettings

REPO = Path(__file__).resolve().parent.parent
SPEECH = REPO.parent / "shared" / "data" / "speech"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class RunningKafka:
    bootstrap: str
    start_seconds: float
    pid: int


_BROKERS: list[RunningKafka] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for b in _BROKERS:
        terminalreporter.write_line(f"integration tests ran against a real Kafka broker started by the project "
                                    f"(runtime.broker) at {b.bootstrap}, pid {b.pid}, "
                                    f"ready in {b.start_seconds:.1f} s")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningKafka]:
    """A real single-node KRaft broker started by the project's own `voicebus kafka start` code."""
    from runtime.broker import LocalKafka

    port = free_port()
    settings = KafkaBrokerSettings(kafka_port=port, kafka_controller_port=free_port())
    broker = LocalKafka(settings, state_dir=tmp_path_factory.mktemp("kafka"))
    started = broker.start()
    running = RunningKafka(started.bootstrap, started.seconds, started.pid)
    _BROKERS.append(running)
    try:
        yield running
    finally:
        broker.stop()


class TestTopics:
    """Unique topic names for one test: every registry topic under a fresh prefix."""

    def __init__(self, bootstrap: str) -> None:
        self.prefix = f"t{uuid.uuid4().hex[:10]}."
        self.settings = CommonSettings(kafka_bootstrap=bootstrap, topic_prefix=self.prefix)

    def name(self, topic: str) -> str:
        return self.settings.topic(topic)

    async def create_all(self, node_ids: tuple[str, ...] = ()) -> None:
        from runtime.provisioning import create_topics

        results = await create_topics(self.settings, node_ids)
        bad = [r for r in results if r.status == "mismatch"]
        assert not bad, bad


@pytest.fixture
def topics(kafka: RunningKafka) -> TestTopics:
    return TestTopics(kafka.bootstrap)


@pytest.fixture
def chdb_dsn(tmp_path: Path) -> str:
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    if not SPEECH.is_dir():
        pytest.skip(f"speech data not found at {SPEECH}")
    return SPEECH
