"""The project's broker is real: produce and consume through aiokafka; topics are provisioned from the registry."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from runtime.kafka import make_consumer, make_producer
from runtime.provisioning import create_topics

pytestmark = pytest.mark.integration


async def test_produce_and_consume_on_the_real_broker(topics):
    await topics.create_all()
    topic = topics.name("voice.vad")
    producer = make_producer(topics.settings)
    consumer = make_consumer(topics.settings, topic, group_id=None)
    await producer.start()
    await consumer.start()
    try:
        sent = [f"message {i}".encode() for i in range(20)]
        for value in sent:
            await producer.send_and_wait(topic, value, key=b"session-a")
        got: list[bytes] = []
        async with asyncio.timeout(20):
            while len(got) < len(sent):
                batch = await consumer.getmany(timeout_ms=500)
                got += [m.value for msgs in batch.values() for m in msgs]
        assert got == sent  # one key: one partition, order kept
    finally:
        await consumer.stop()
        await producer.stop()


async def test_topics_create_is_idempotent_and_reports_partition_mismatch(topics):
    first = await create_topics(topics.settings, ("edge-a",))
    assert {r.status for r in first} == {"created"}
    assert topics.name("voice.replies.edge-a") in {r.name for r in first}
    second = await create_topics(topics.settings, ("edge-a",))
    assert {r.status for r in second} == {"exists"}

    # A topic made by someone else with the wrong partition count is reported, not ignored.
    other = type(topics)(topics.settings.kafka_bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=topics.settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(other.name("voice.turns"), 3, 1)])
    finally:
        await admin.close()
    results = {r.name: r for r in await create_topics(other.settings)}
    assert results[other.name("voice.turns")].status == "mismatch"
    assert "3 partitions" in results[other.name("voice.turns")].detail


async def test_changelog_is_compact_only_and_audio_has_short_retention(topics):
    await topics.create_all()
    admin = AIOKafkaAdminClient(bootstrap_servers=topics.settings.kafka_bootstrap)
    await admin.start()
    try:
        names = [topics.name("voice.turn-state-changelog"), topics.name("voice.audio")]
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    finally:
        await admin.close()
    configs = {}
    for response in responses:
        for resource in response.resources:
            configs[resource[3]] = {entry[0]: entry[1] for entry in resource[4]}
    assert configs[names[0]]["cleanup.policy"] == "compact"
    assert configs[names[1]]["cleanup.policy"] == "delete"
    assert configs[names[1]]["retention.ms"] == str(10 * 60_000)


async def _configs(settings, names):
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    finally:
        await admin.close()
    return {resource[3]: {entry[0]: entry[1] for entry in resource[4]}
            for response in responses for resource in response.resources}


async def test_decision_inputs_are_kept_for_the_replay_window_and_audio_is_not(topics):
    day = 24 * 3600 * 1000
    names = [topics.name(n) for n in ("voice.vad", "voice.turns", "voice.audio", "voice.history")]
    await create_topics(topics.settings.model_copy(update={"replay_retention_days": 3}))
    configs = await _configs(topics.settings, names)
    assert [configs[n].get("retention.ms") for n in names] == [str(3 * day), str(3 * day), str(10 * 60_000),
                                                                str(7 * day)]
    # Asked again with another window: the existing topics change, their other configs stay.
    await create_topics(topics.settings.model_copy(update={"replay_retention_days": 0.5}))
    configs = await _configs(topics.settings, names)
    assert configs[names[0]]["retention.ms"] == str(day // 2) and configs[names[0]]["cleanup.policy"] == "delete"
    assert configs[names[2]]["retention.ms"] == str(10 * 60_000)
    assert configs[names[3]]["cleanup.policy"] == "compact,delete"


async def test_rewind_reads_again_what_a_dead_loop_did_not_handle(topics):
    """A loop handed a batch dies after handling part of it: rewind goes back to the first record it did not
    handle, on the partition it was handling (a), on one it had not reached (b: its committed offset), and on one
    with nothing committed (c: the beginning)."""
    from aiokafka import TopicPartition

    from runtime.kafka import rewind

    await topics.create_all()
    topic = topics.name("voice.vad")
    producer = make_producer(topics.settings)
    consumer = make_consumer(topics.settings, topic, group_id=f"g-{topics.prefix}")
    await producer.start()
    await consumer.start()
    try:
        a, b, c = (TopicPartition(topic, p) for p in range(3))
        for i in range(4):
            await producer.send_and_wait(topic, f"a{i}".encode(), partition=0)
            await producer.send_and_wait(topic, f"b{i}".encode(), partition=1)
        await producer.send_and_wait(topic, b"c0", partition=2)

        async def read_all(n: int) -> dict:
            got: dict = {a: [], b: [], c: []}
            async with asyncio.timeout(20):
                while sum(map(len, got.values())) < n:
                    for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                        got[tp] += [r.value for r in records]
            return got

        await read_all(9)
        await consumer.commit({b: 1})  # b0 was handled in an earlier batch
        await rewind(consumer, {a: 2})  # handled a0, a1; died on a2
        again = await read_all(2 + 3 + 1)
        assert again == {a: [b"a2", b"a3"], b: [b"b1", b"b2", b"b3"], c: [b"c0"]}
    finally:
        await consumer.stop()
        await producer.stop()
