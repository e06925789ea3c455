"""Authenticated, encrypted Kafka: the project's broker launcher starts a broker whose only client listener is
SASL_SSL (SCRAM-SHA-512 users written at format time, TLS with certificates made for this test, client certificates
required: mutual TLS), and the platform's own clients talk to it from the same settings: the aiokafka producer,
consumer and admin client, kcat, the Faust turn processor as a service. A client without credentials, with a wrong
password, or without a client certificate is refused."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from runtime.broker import LocalKafka
from runtime.broker_security import make_certificates
from runtime.kafka import kcat_options, make_admin, make_consumer, make_producer
from runtime.provisioning import create_topics
from runtime.settings import KafkaBrokerSettings
from tests.conftest import free_port

pytestmark = pytest.mark.integration

USER, PASSWORD = "voicebus-svc", "correct horse battery staple"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBrokerSettings]:
    """Settings of a client of a running SASL_SSL (+ mTLS) broker."""
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    settings = KafkaBrokerSettings(
        kafka_port=free_port(), kafka_controller_port=free_port(),
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=USER, kafka_sasl_password=SecretStr(PASSWORD),
        kafka_ssl_cafile=str(certs.ca), kafka_ssl_certfile=str(certs.client_cert),
        kafka_ssl_keyfile=str(certs.client_key), kafka_broker_ssl_certfile=str(certs.broker_cert),
        kafka_broker_ssl_keyfile=str(certs.broker_key), kafka_ssl_client_auth="required")
    kafka = LocalKafka(settings, state_dir=tmp_path_factory.mktemp("secure-kafka"))
    kafka.start()
    try:
        yield kafka.client_settings()
    finally:
        kafka.stop()


def _with(settings: KafkaBrokerSettings, **changes: object) -> KafkaBrokerSettings:
    return settings.model_copy(update=changes)


async def _answers(settings: KafkaBrokerSettings) -> bool:
    """Whether this client gets cluster metadata (refused: its connection is closed, or it times out)."""
    admin = make_admin(settings, request_timeout_ms=5000)
    try:
        async with asyncio.timeout(30):
            await admin.start()
            await admin.list_topics()
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        try:
            await admin.close()
        except Exception:
            pass


async def test_platform_clients_produce_and_consume_over_sasl_ssl(secure):
    settings = _with(secure, topic_prefix="sec.")
    results = await create_topics(settings)
    assert {r.status for r in results} == {"created"}
    topic = settings.topic("voice.vad")
    producer = make_producer(settings)
    consumer = make_consumer(settings, topic, group_id="secure-group")
    await producer.start()
    await consumer.start()
    try:
        sent = [f"secret {i}".encode() for i in range(20)]
        for value in sent:
            await producer.send_and_wait(topic, value, key=b"session-a")
        got: list[bytes] = []
        async with asyncio.timeout(30):
            while len(got) < len(sent):
                batch = await consumer.getmany(timeout_ms=500)
                got += [m.value for records in batch.values() for m in records]
        assert got == sent
    finally:
        await consumer.stop()
        await producer.stop()
    # kcat (librdkafka) with the same settings reads them too.
    done = subprocess.run(["kcat", *kcat_options(settings), "-C", "-t", topic, "-e", "-q", "-f", "%s\n"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split("\n")[:-1]) == sorted(v.decode() for v in sent)


async def test_clients_without_the_right_credentials_are_refused(secure):
    assert await _answers(secure)  # the same client with its credentials answers: refusals below are real
    assert not await _answers(_with(secure, kafka_security_protocol="PLAINTEXT"))
    assert not await _answers(_with(secure, kafka_sasl_password=SecretStr("wrong password")))
    assert not await _answers(_with(secure, kafka_sasl_username="nobody"))
    # TLS without a client certificate: the broker requires one (mutual TLS), whatever the password.
    assert not await _answers(_with(secure, kafka_ssl_certfile="", kafka_ssl_keyfile=""))
    # TLS with the system's trust store: the broker's certificate is not from a CA it knows.
    assert not await _answers(_with(secure, kafka_ssl_cafile=""))
    wrong = _with(secure, kafka_sasl_password=SecretStr("wrong password"))
    done = subprocess.run(["kcat", *kcat_options(wrong), "-L", "-m", "10"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "Authentication failed" in done.stderr or "SASL authentication error" in done.stderr, done.stderr


def _env(settings: KafkaBrokerSettings) -> dict[str, str]:
    return {"VOICEBUS_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
            "VOICEBUS_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
            "VOICEBUS_KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
            "VOICEBUS_KAFKA_SASL_PASSWORD": settings.kafka_sasl_password.get_secret_value(),
            "VOICEBUS_KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
            "VOICEBUS_KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
            "VOICEBUS_KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile}


async def test_the_turn_processor_runs_over_sasl_ssl(secure, tmp_path: Path):
    """The Faust app (its consumer, producer, changelog) as `voicebus streams`, configured by environment."""
    from bench.endpointing_events import Conversation
    from tests.streams.test_turn_worker import S1, Outputs, Worker, produce

    settings = _with(secure, topic_prefix="sec-turns.")
    await create_topics(settings)
    topics = SimpleNamespace(settings=settings, prefix=settings.topic_prefix)
    await produce(settings, Conversation(S1).say(500, 1500, "hello there").wait(2500).events)
    worker = Worker(topics, tmp_path, "secure-worker")
    worker.env.update(_env(settings))
    with worker:
        async with Outputs(settings) as out:
            await out.until(lambda o: o.committed(S1) == [(f"{S1}-1", "hello there")], worker, timeout_s=120)
    assert "Authentication" not in worker.log()


async def test_the_telemetry_sink_runs_over_sasl_ssl(secure, tmp_path: Path):
    """An aiokafka service: the sink consumes voice.telemetry/turns/sessions as its group and writes chDB."""
    from streams.telemetry.settings import TelemetrySettings
    from tests.streams.telemetry.test_sink import check_turns, produce, running

    settings = _with(secure, topic_prefix="sec-telemetry.")
    await create_topics(settings)
    topics = SimpleNamespace(settings=settings, prefix=settings.topic_prefix, name=settings.topic)
    rows = await produce(topics)
    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    sink_settings = TelemetrySettings(**{**settings.model_dump(include=set(type(settings).model_fields)
                                                               & set(TelemetrySettings.model_fields)),
                                         "clickhouse_dsn": dsn, "telemetry_group_id": "secure-telemetry",
                                         "telemetry_batch_seconds": 0.2, "telemetry_query_port": 0})
    assert sink_settings.kafka_security_protocol == "SASL_SSL"
    async with running(sink_settings) as sink:
        await sink.wait_for(lambda s: s.rows_written >= rows, 60)
    check_turns(dsn)
