"""The turn processor's Faust app and `voicebus streams`. The agent and table live in streams/turns/agent.py."""

from __future__ import annotations

import argparse
from typing import Any

import faust

from runtime.kafka import ssl_context
from runtime.log import setup_logging
from runtime.metrics import Registry, serve_metrics, stop_serving
from schemas.topics import SESSION_PARTITIONS
from streams.turns.agent import TurnProcessor
from streams.turns.settings import TurnSettings


class MetricsEndpoint(faust.Service):
    """``/metrics`` for the worker's lifetime (Faust's own web server stays off): a service of the worker,
    started before the app, so the lag is visible while the table recovers too."""

    def __init__(self, metrics: Registry, host: str, port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics, self.host, self.port = metrics, host, port
        self._runner: Any = None

    async def on_start(self) -> None:
        self._runner = await serve_metrics(self.metrics, self.host, self.port)

    async def on_stop(self) -> None:
        await stop_serving(self._runner)
        self._runner = None


def broker_credentials(settings: TurnSettings) -> Any:
    """Faust's form of the settings every voicebus Kafka client uses (runtime.kafka.client_options)."""
    context = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        # A context makes it SASL_SSL; without one, SASL_PLAINTEXT.
        return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                     password=settings.kafka_sasl_password.get_secret_value(),
                                     mechanism=settings.kafka_sasl_mechanism, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def make_processor(settings: TurnSettings) -> TurnProcessor:
    """The Faust app with the turn agent and table on it (``.app``)."""
    datadir = settings.data_dir / "faust" / settings.app_id()
    datadir.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    app = faust.App(
        settings.app_id(),
        broker=[f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        producer_acks=-1,
        store="memory://",  # the changelog topic is the durable copy; no RocksDB on the worker
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=SESSION_PARTITIONS,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.turn_commit_interval_s,
        broker_session_timeout=settings.turn_session_timeout_s,
        broker_heartbeat_interval=settings.turn_session_timeout_s / 5,
        consumer_group_instance_id=settings.turn_group_instance_id or None,
        producer_linger=0.0,
    )
    return TurnProcessor(app, settings)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="voicebus streams",
        description="the turn processor: decides when the person has finished (settings: VOICEBUS_TURN_*)",
    )
    parser.parse_args(argv)
    settings = TurnSettings()
    setup_logging(settings.log_level, settings.log_json)
    processor = make_processor(settings)
    endpoint = MetricsEndpoint(processor.metrics, settings.metrics_host, settings.turn_metrics_port)
    worker = faust.Worker(processor.app, endpoint, loglevel=settings.log_level, override_logging=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0
