"""The telemetry sink's settings (environment variables VOICEBUS_TELEMETRY_*)."""

from __future__ import annotations

from pydantic import Field

from runtime.settings import ClickHouseSettings


class TelemetrySettings(ClickHouseSettings):
    telemetry_group_id: str = Field("voicebus-telemetry", description="Consumer group of the telemetry sink.")
    telemetry_batch_rows: int = Field(
        5000, ge=1, description="Rows the sink buffers before it writes a batch to ClickHouse."
    )
    telemetry_batch_seconds: float = Field(
        1.0,
        gt=0,
        description="Longest time (seconds) a row waits in the sink's buffer before its batch is written.",
    )
    telemetry_retry_initial_s: float = Field(
        0.2, gt=0, description="First wait before retrying a failed ClickHouse write (doubles each time)."
    )
    telemetry_retry_max_s: float = Field(
        10.0, gt=0, description="Longest wait between ClickHouse write retries."
    )
    telemetry_query_host: str = Field(
        "127.0.0.1",
        description="Address of the sink's query endpoint, which `voicebus ops` uses while the sink "
        "holds the chDB directory (keep it on loopback).",
    )
    telemetry_query_port: int = Field(
        8124, ge=0, le=65535, description="Port of the sink's query endpoint, which also serves its Prometheus "
        "/metrics (0: serve neither)."
    )
