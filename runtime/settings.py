"""Settings shared by every service. Each service has one settings object that extends these.

Every field is read from an environment variable named ``VOICEBUS_<FIELD>`` (upper case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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

    # How every client (aiokafka, Faust, the admin client, kcat in tests) reaches the brokers: runtime.kafka turns
    # these into client options in one place. PLAINTEXT is the local default; SASL_SSL with SCRAM-SHA-512 (and a
    # client certificate for mTLS) is what a shared cluster should ask for.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to Kafka: PLAINTEXT, SSL (TLS; mTLS with a client certificate), "
        "SASL_PLAINTEXT or SASL_SSL (SASL over TLS). The local broker's client listener speaks it too.")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism for SASL_PLAINTEXT / SASL_SSL.")
    kafka_sasl_username: str = Field("", description="SASL user name (the local broker creates this SCRAM user).")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password of VOICEBUS_KAFKA_SASL_USERNAME.")
    kafka_ssl_cafile: str = Field("", description="PEM file of the CA that signed the brokers' certificates "
                                  "(empty: the system's trust store).")
    kafka_ssl_certfile: str = Field("", description="PEM client certificate for mutual TLS (empty: none).")
    kafka_ssl_keyfile: str = Field("", description="PEM private key of VOICEBUS_KAFKA_SSL_CERTFILE.")
    kafka_ssl_check_hostname: bool = Field(True, description="Check that a broker's certificate names the host "
                                           "the client dialled.")

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
    """The local KRaft broker (or cluster of them) that `voicebus kafka start` runs."""

    kafka_host: str = Field("127.0.0.1", description="Address the local broker listens on.")
    kafka_port: int = Field(9092, description="Port of the local broker's client listener.")
    kafka_controller_port: int = Field(0, description="Controller port of the local broker (0: port + 1000).")
    kafka_heap: str = Field("512m", description="JVM heap of the local broker.")
    kafka_jar_cache: Path = Field(
        Path.home() / ".cache" / "voicebus" / "kafka-jars",
        description="Where `voicebus kafka start` keeps the broker jars fetched by mvn.",
    )
    kafka_start_timeout_s: float = Field(90.0, description="How long to wait for the broker to answer.")
    kafka_brokers: int = Field(
        1, ge=1, le=9, description="Nodes of the local KRaft cluster that `voicebus kafka start` and `voicebus up` "
        "run, each a broker and a controller, on consecutive ports from VOICEBUS_KAFKA_PORT (and the controller "
        "port). With 3, `voicebus topics create` replicates every topic 3 times with min.insync.replicas=2.")
    kafka_broker_ssl_certfile: str = Field(
        "", description="PEM certificate (chain) of the local broker's TLS listener, signed by "
        "VOICEBUS_KAFKA_SSL_CAFILE; needed when VOICEBUS_KAFKA_SECURITY_PROTOCOL is SSL or SASL_SSL.")
    kafka_broker_ssl_keyfile: str = Field("", description="PEM (PKCS#8) private key of the local broker's certificate.")
    kafka_ssl_client_auth: Literal["none", "requested", "required"] = Field(
        "none", description="Whether the local broker's TLS listener asks clients for a certificate signed by "
        "VOICEBUS_KAFKA_SSL_CAFILE (required: mutual TLS).")
