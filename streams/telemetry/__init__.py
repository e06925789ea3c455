"""Per-turn latency telemetry: the Kafka -> ClickHouse sink (`voicebus telemetry`) and operator analytics
(`voicebus ops`)."""
