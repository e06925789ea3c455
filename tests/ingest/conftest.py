from __future__ import annotations

from pathlib import Path

import pytest

from ingest.client import load_speech  # noqa: F401 -- one WAV reader for tests and tools

SPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "speech"




def lab_span(path: Path) -> tuple[float, float]:
    """(speech onset, speech offset) in seconds from a .lab file."""
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    start = next(float(r[0]) for r in rows if r[2] == "speech")
    end = next(float(r[0]) for r in rows if r[2] == "silence" and float(r[0]) > start)
    return start, end


@pytest.fixture(scope="session")
def speech() -> Path:
    if not SPEECH.is_dir():
        pytest.skip(f"speech data not found at {SPEECH}")
    return SPEECH


# -- a running edge on the real broker, and reading what it published --

import asyncio  # noqa: E402
from collections.abc import AsyncIterator, Callable  # noqa: E402
from typing import Any  # noqa: E402

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

import tests.conftest as root  # noqa: E402
from ingest.server import EdgeNode, running_edge  # noqa: E402
from ingest.settings import IngestSettings  # noqa: E402
from schemas.topics import spec_for  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def edge_settings(topics: root.TestTopics, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = dict(kafka_bootstrap=topics.settings.kafka_bootstrap, topic_prefix=topics.prefix,
                                  node_id="edge-test", ingest_port=free_port(), ice_host_addresses=["127.0.0.1"])
    values.update(overrides)
    return IngestSettings(**values)


@pytest.fixture
async def edge(topics: root.TestTopics) -> AsyncIterator[tuple[EdgeNode, str]]:
    await topics.create_all(("edge-test",))
    settings = edge_settings(topics)
    async with running_edge(settings) as node:
        yield node, f"http://127.0.0.1:{settings.ingest_port}"


class TopicReader:
    """Everything on one topic from the beginning, decoded, for one session."""

    def __init__(self, topics: root.TestTopics, name: str, session_id: str) -> None:
        self.name, self.session_id = name, session_id
        self.items: list[Any] = []
        self._codec = spec_for(name).codec
        self._consumer = AIOKafkaConsumer(topics.name(name), bootstrap_servers=topics.settings.kafka_bootstrap,
                                          auto_offset_reset="earliest", fetch_max_wait_ms=20)

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def until(self, done: Callable[[list[Any]], bool], timeout: float = 15.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while not done(self.items):
                batches = await self._consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    self.items += [self._codec.decode(r.value) for r in records
                                   if r.key == self.session_id.encode()]
        return self.items


async def send_replies(topics: root.TestTopics, node_id: str, events: list[Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=topics.settings.kafka_bootstrap, linger_ms=0)
    await producer.start()
    try:
        topic = topics.name(f"voice.replies.{node_id}")
        codec = spec_for(topic.removeprefix(topics.prefix)).codec
        for event in events:
            await producer.send_and_wait(topic, codec.encode(event), key=event.session_id.encode())
    finally:
        await producer.stop()
