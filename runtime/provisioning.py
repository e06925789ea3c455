"""Create the registry's topics (idempotently) and report ones that exist with the wrong shape."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from runtime.kafka import make_admin
from runtime.settings import CommonSettings
from schemas.topics import REGISTRY, REPLIES, TopicSpec, replies_topic

TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicResult:
    name: str
    status: str  # created | exists | mismatch
    detail: str = ""


@dataclass(frozen=True)
class Replication:
    factor: int
    min_insync: int


def replication_for(brokers: int) -> Replication:
    """How many copies of every topic a cluster of this many brokers keeps. Three copies with two in sync: an
    acks=all write survives any one broker's loss and producers keep writing while one is down. Fewer than three
    brokers get one copy: two copies cannot have both (min.insync 2 stops writes when either is down; 1 lets a
    write acknowledged by one copy be lost with it)."""
    return Replication(3, 2) if brokers >= 3 else Replication(1, 1)


def specs_for(node_ids: tuple[str, ...] = ()) -> list[tuple[str, TopicSpec]]:
    """(registry name, spec) for every topic a deployment with these edge nodes needs."""
    return [(s.name, s) for s in REGISTRY] + [(replies_topic(n), REPLIES) for n in node_ids]


async def _shapes(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, tuple[int, int]]:
    """(partitions, replicas) of each of these topics that the broker asked knows."""
    described = await admin.describe_topics(names)
    return {t["topic"]: (len(t["partitions"]), len(t["partitions"][0]["replicas"])) for t in described
            if t["error_code"] == 0 and t["partitions"]}


async def _cluster_size(admin: AIOKafkaAdminClient) -> int:
    """The brokers the cluster has: those alive, or as many as the replicas of its consumer offsets topic (the
    brokers made it with one per broker, up to three) when one is down. Counting only the live ones would give a
    three-broker cluster with one node down single-copy topics; asked for three copies, KRaft places one on the
    node that is down, which catches up when it is back."""
    live = len((await admin.describe_cluster())["brokers"])
    offsets = await _shapes(admin, ["__consumer_offsets"])
    return max(live, offsets.get("__consumer_offsets", (0, 0))[1])


async def _retentions(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, str | None]:
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    out: dict[str, str | None] = {}
    for response in responses:
        for _, _, _, name, entries in response.resources:
            out[name] = next((value for key, value, *_ in entries if key == "retention.ms"), None)
    return out


async def create_topics(settings: CommonSettings, node_ids: tuple[str, ...] = (),
                        timeout_s: float = 15.0) -> list[TopicResult]:
    """Create what is missing and return once every topic is visible in the cluster metadata. The replication
    follows the cluster: its broker count, from the cluster metadata (``replication_for``)."""
    wanted = {settings.topic(name): spec for name, spec in specs_for(node_ids)}
    admin = make_admin(settings)
    await admin.start()
    try:
        created: set[str] = set()
        retention = settings.replay_retention_ms()
        replication = replication_for(await _cluster_size(admin))

        def config(spec: TopicSpec) -> dict[str, str]:
            return {**spec.config(retention), "min.insync.replicas": str(replication.min_insync)}

        existing = await _shapes(admin, list(wanted))
        missing = [NewTopic(name, spec.partitions, replication.factor, topic_configs=config(spec))
                   for name, spec in wanted.items() if name not in existing]
        # Replayable topics that exist get the retention asked for now, if they have another (the whole config is
        # set: AlterConfigs replaces a topic's configs, and the registry's are all of them).
        replayable = [ConfigResource(ConfigResourceType.TOPIC, name, configs=config(spec))
                      for name, spec in wanted.items() if name in existing and spec.replayable]
        if replayable:
            now = await _retentions(admin, [r.name for r in replayable])
            replayable = [r for r in replayable if now.get(r.name) != r.configs.get("retention.ms")]
        if replayable:
            for response in await admin.alter_configs(replayable):
                for code, message, _, name in response.resources:
                    if code != 0:
                        raise RuntimeError(f"setting the retention of topic {name} failed: error {code} {message}")
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *message in response.topic_errors:
                if code == 0:
                    created.add(name)
                elif code != TOPIC_ALREADY_EXISTS:
                    raise RuntimeError(f"creating topic {name} failed: error {code} {message}")
        async with asyncio.timeout(timeout_s):
            # Each request may go to another broker, which may not know a new topic yet: all of them from one.
            while len(shapes := await _shapes(admin, list(wanted))) < len(wanted):
                await asyncio.sleep(0.05)  # metadata propagation after CreateTopics; polled, bounded
            asked = {r.name: r.configs["retention.ms"] for r in replayable if "retention.ms" in r.configs}
            while asked and await _retentions(admin, list(asked)) != asked:
                await asyncio.sleep(0.05)  # the brokers apply AlterConfigs a moment later; polled, bounded
    finally:
        await admin.close()
    results = []
    for name, spec in wanted.items():
        partitions, replicas = shapes[name]
        if partitions != spec.partitions:
            results.append(TopicResult(name, "mismatch",
                                       f"has {partitions} partitions, registry says {spec.partitions}"))
        elif replicas != replication.factor:
            # Kafka cannot change it in place (a partition reassignment would): reported, not fixed.
            results.append(TopicResult(name, "mismatch", f"has {replicas} replicas, a cluster of this "
                                       f"size wants {replication.factor}"))
        else:
            results.append(TopicResult(name, "created" if name in created else "exists",
                                       f"{spec.partitions} partitions, {replication.factor} replicas"))
    return results
