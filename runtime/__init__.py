"""The floor every service stands on: settings, Kafka clients, logging, the service runner, ClickHouse, topic
provisioning, the local broker, metrics, PCM helpers and optional imports. It imports ``schemas`` and nothing
else of the project; ``ingest``, ``streams`` and ``inference`` import it, and ``voicebus`` (the CLI) sits on top."""
