"""A local three-node KRaft cluster started by the project's code: topics replicated three times with two in sync,
acks=all producers, and the leader of voice.turns killed under a producer: nothing acknowledged is lost and the
producer goes on writing to the new leader."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from runtime.broker import LocalKafka
from runtime.kafka import make_admin, make_consumer, make_producer, read_to_end
from runtime.provisioning import create_topics
from runtime.settings import CommonSettings, KafkaBrokerSettings

pytestmark = pytest.mark.integration


def free_ports(n: int) -> list[int]:
    """n distinct free ports (held open together, so none is handed out twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    ports = free_ports(6)
    kafka = LocalKafka(KafkaBrokerSettings(), state_dir=tmp_path_factory.mktemp("cluster"),
                       ports=list(zip(ports[:3], ports[3:])))
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def _settings(cluster: LocalKafka, prefix: str) -> CommonSettings:
    return CommonSettings(kafka_bootstrap=cluster.bootstrap, topic_prefix=prefix)


async def _isr(settings: CommonSettings, topic: str, partition: int) -> list[int]:
    admin = make_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        return next(p["isr"] for p in described[0]["partitions"] if p["partition"] == partition)
    finally:
        await admin.close()


async def test_topics_get_three_replicas_two_in_sync(cluster):
    settings = _settings(cluster, "rf.")
    results = await create_topics(settings, ("edge-1",))
    assert {r.status for r in results} == {"created"}, results
    assert all("3 replicas" in r.detail for r in results)
    admin = make_admin(settings)
    await admin.start()
    try:
        # Asked of any broker, which may not have applied the new topic's metadata yet: polled, bounded.
        async with asyncio.timeout(30):
            while True:
                [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "rf.voice.turns")])
                entries = {key: value for key, value, *_ in response.resources[0][4]}
                if entries:
                    break
                await asyncio.sleep(0.1)
    finally:
        await admin.close()
    assert entries["min.insync.replicas"] == "2"
    assert sorted(await _isr(settings, "rf.voice.turns", 0)) == [1, 2, 3]


async def _produce(producer, topic: str, values: list[bytes], acked: list[bytes]) -> None:
    """Send each value until it is acknowledged: a send that fails while the cluster elects a new leader is
    sent again (the test's own retry, on top of the producer's), so the producer keeps going."""
    for value in values:
        while True:
            try:
                await producer.send_and_wait(topic, value, partition=0)
                break
            except KafkaError:
                await asyncio.sleep(0.2)  # back off before the next attempt; the outcome is checked, not timed
        acked.append(value)


async def test_killing_the_leader_of_voice_turns_loses_nothing_acknowledged(cluster):
    settings = _settings(cluster, "kill.")
    await create_topics(settings)
    topic = settings.topic("voice.turns")
    producer = make_producer(settings, request_timeout_ms=30_000)
    await producer.start()
    acked: list[bytes] = []
    killed = None
    try:
        await _produce(producer, topic, [f"before {i}".encode() for i in range(300)], acked)
        # Concurrently: the producer goes on while the leader of partition 0 is SIGKILLed under it.
        during = asyncio.create_task(_produce(producer, topic, [f"during {i}".encode() for i in range(300)], acked))
        killed = await cluster.kill_leader(topic, 0)
        acked_before_the_kill = len(acked)
        await during
        assert acked_before_the_kill < 600  # the kill did come while the producer was writing
        leader = await cluster.leader_of(topic, 0)
        assert leader != killed
        await _produce(producer, topic, [f"after {i}".encode() for i in range(100)], acked)
    finally:
        await producer.stop()
    # With a node down the cluster is still one of three: new topics get three copies too (the node that is down
    # holds one once it is back), not one.
    down = await create_topics(_settings(cluster, "down."))
    assert all(r.status == "created" and "3 replicas" in r.detail for r in down), down
    assert len(acked) == 700

    # Every acknowledged record is on the surviving replicas, in the order it was acknowledged.
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        got = [r.value async for r in read_to_end(consumer, [TopicPartition(topic, 0)])]
    finally:
        await consumer.stop()
    assert set(acked) <= set(got)
    position = {value: i for i, value in enumerate(got)}
    assert [position[v] for v in acked] == sorted(position[v] for v in acked)

    # Bring the node back: it catches up and rejoins the in-sync replicas.
    await asyncio.to_thread(cluster.start)  # start() runs its own event loop for the readiness probe
    async with asyncio.timeout(120):
        while killed not in await _isr(settings, topic, 0):
            await asyncio.sleep(0.2)  # polled until the follower has caught up, bounded
