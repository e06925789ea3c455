"""Settings shared by every service. Each service has one settings object that extends these.

Every field is read from an environment variable named ``VOICEBUS_<FIELD>`` (upper case).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "voicebus"


class CommonSettings(BaseSettings):
    """Kafka, topic naming, data directory, logging: what every service needs."""

    model_config = SettingsConfigDict(env_prefix="VOICEBUS_", frozen=True, extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    topic_prefix: str = Field("", description="Prepended to every topic name (isolates tests and tenants).")
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where local state lives (chDB data, broker logs).")
    log_level: str = Field("INFO", description="Standard library logging level.")
    log_json: bool = Field(False, description="Log one JSON object per line instead of text.")
    replay_retention_days: float = Field(
        1.0, gt=0, description="How long the turn processor's inputs (voice.vad, voice.transcripts, "
        "voice.playout, voice.sessions) and decisions (voice.turns) are kept, so that `voicebus replay` can re-run "
        "them; raw audio keeps its short retention. Applied by `voicebus topics create`, to existing topics too.")

    def replay_retention_ms(self) -> int:
        return round(self.replay_retention_days * 24 * 3600 * 1000)

    def topic(self, name: str) -> str:
        """The physical Kafka topic for a registry topic name."""
        return f"{self.topic_prefix}{name}"


class ClickHouseSettings(CommonSettings):
    clickhouse_dsn: str = Field(
        "",
        description="clickhouse-connect DSN: chdb://PATH for the embedded engine (default: "
        "chdb://<data_dir>/clickhouse), or http://user:pass@host:8123/db for a server.",
    )

    def dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.data_dir / 'clickhouse'}"


class KafkaBrokerSettings(CommonSettings):
    """The local single-node KRaft broker that `voicebus kafka start` runs."""

    kafka_host: str = Field("127.0.0.1", description="Address the local broker listens on.")
    kafka_port: int = Field(9092, description="Port of the local broker's client listener.")
    kafka_controller_port: int = Field(0, description="Controller port of the local broker (0: port + 1000).")
    kafka_heap: str = Field("512m", description="JVM heap of the local broker.")
    kafka_jar_cache: Path = Field(
        Path.home() / ".cache" / "voicebus" / "kafka-jars",
        description="Where `voicebus kafka start` keeps the broker jars fetched by mvn.",
    )
    kafka_start_timeout_s: float = Field(90.0, description="How long to wait for the broker to answer.")
