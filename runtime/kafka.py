"""aiokafka clients configured the one way voicebus uses them."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from runtime.settings import CommonSettings


def ssl_context(settings: CommonSettings) -> ssl.SSLContext | None:
    """The TLS context of every Kafka client (aiokafka and Faust alike), or None for a plaintext protocol."""
    if "SSL" not in settings.kafka_security_protocol:
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile:  # mutual TLS: the broker checks this certificate against its CA
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None)
    return context


def client_options(settings: CommonSettings) -> dict[str, Any]:
    """Where the brokers are and how to authenticate to them: the options every aiokafka client of voicebus
    starts from (producers, consumers, admin clients, the broker's own readiness probe)."""
    options: dict[str, Any] = dict(bootstrap_servers=settings.kafka_bootstrap,
                                   security_protocol=settings.kafka_security_protocol)
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_sasl_username,
                       sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return options


def kcat_options(settings: CommonSettings) -> list[str]:
    """The same connection as kcat (librdkafka) arguments, for tests and operators."""
    args = ["-b", settings.kafka_bootstrap, "-X", f"security.protocol={settings.kafka_security_protocol.lower()}"]
    if "SSL" in settings.kafka_security_protocol:
        if settings.kafka_ssl_cafile:
            args += ["-X", f"ssl.ca.location={settings.kafka_ssl_cafile}"]
        if settings.kafka_ssl_certfile:
            args += ["-X", f"ssl.certificate.location={settings.kafka_ssl_certfile}",
                     "-X", f"ssl.key.location={settings.kafka_ssl_keyfile}"]
        if not settings.kafka_ssl_check_hostname:
            args += ["-X", "ssl.endpoint.identification.algorithm=none"]
    if settings.kafka_security_protocol.startswith("SASL"):
        args += ["-X", f"sasl.mechanisms={settings.kafka_sasl_mechanism}",
                 "-X", f"sasl.username={settings.kafka_sasl_username}",
                 "-X", f"sasl.password={settings.kafka_sasl_password.get_secret_value()}"]
    return args


def make_admin(settings: CommonSettings, **overrides: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**{**client_options(settings), **overrides})


def make_producer(settings: CommonSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer for which acknowledged means durable: acks=all (every in-sync replica has the record; with
    replication factor 3 and min.insync.replicas=2 it survives the loss of any one broker). No linger: every send
    goes out at once. On one broker acks=all costs nothing more than acks=1.

    Not idempotent. aiokafka's (0.14) idempotent producer cannot recover from OutOfOrderSequenceNumber: it does
    not bump its epoch as the Java client does, so every later send fails until the process restarts
    (aio-libs/aiokafka#1017). The chaos test met it: after a 15 s broker outage the responder's producer failed
    every reply from then on. It also never expires a batch, so a service could not tell an outage from a slow
    broker. Without it, a retry after a lost acknowledgement may write a record twice. The readers meet records twice
    anyway (every consumer reads at least once: a failover re-reads what was not committed) and drop repeats by
    their ids: the edge a reply chunk's (turn, index), the turn core an edge event's seq, the responder a turn it
    answered; the sink's writes are idempotent."""
    options: dict[str, Any] = dict(
        client_options(settings),
        linger_ms=0,
        acks="all",
        max_request_size=4 * 1024 * 1024,
        request_timeout_ms=10_000,
    )
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(settings: CommonSettings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer committing manually. The broker answers a fetch as soon as one byte is there (fetch_min_bytes=1),
    so the fetch wait costs no latency; a short one only burns CPU polling (about 10 % of a core at 5 ms)."""
    options: dict[str, Any] = dict(
        client_options(settings),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def rewind(consumer: AIOKafkaConsumer, handled: Mapping[TopicPartition, int]) -> None:
    """Before a consumer loop runs again after it died mid-batch: every assigned partition goes back to the
    first record the loop did not handle, ``handled[tp]`` (one past the last one it handled) or, for a partition
    it handled nothing of, the committed offset (the beginning without one: this consumer resets to earliest).
    Without this, what the batch held after the failure would be committed past unread."""
    for tp in consumer.assignment():
        offset = handled.get(tp)
        if offset is None:
            offset = await consumer.committed(tp)
        if offset is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, offset)


async def read_to_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                      start: Mapping[TopicPartition, int] | None = None) -> AsyncIterator[ConsumerRecord[Any, Any]]:
    """Every record of these partitions from ``start`` (default: their beginning) up to their end as of the call,
    each partition in offset order. The consumer must have no group: it is assigned the partitions, so nothing is
    committed and no consumer group notices (a rebalance of the live consumers, for one)."""
    consumer.assign(partitions)
    end = await consumer.end_offsets(partitions)
    for tp in partitions:
        if start is not None and tp in start:
            consumer.seek(tp, start[tp])
        else:
            await consumer.seek_to_beginning(tp)
    left = {tp for tp in partitions if await consumer.position(tp) < end[tp]}
    while left:
        batch = await consumer.getmany(*left, timeout_ms=200)
        for tp, records in batch.items():
            for record in records:
                if record.offset < end[tp]:
                    yield record
        # Compaction and transaction markers leave gaps: the position, not the last record, says where it is.
        left = {tp for tp in left if await consumer.position(tp) < end[tp]}
