"""The registry says who reads each topic; the services say what they consume. They must agree, since the
AsyncAPI export (what other teams build against) is generated from the registry."""

from __future__ import annotations

import importlib

from schemas.export import asyncapi_document
from schemas.topics import ALL_SPECS

# Each consuming service and the module whose CONSUMES its Kafka consumer subscribes to.
CONSUMERS = {
    "asr": "inference.asr_worker",
    "responder": "inference.responder",
    "streams": "streams.turns.agent",
    "telemetry": "streams.telemetry.sink",
    "ingest": "ingest.replies",
}


def test_the_registry_lists_every_reader_the_code_has() -> None:
    in_code = {(service, spec.name) for service, module in CONSUMERS.items()
               for spec in importlib.import_module(module).CONSUMES}
    in_registry = {(reader, spec.name) for spec in ALL_SPECS for reader in spec.readers}
    assert in_registry == in_code


def test_the_asyncapi_export_has_a_receive_operation_per_reader() -> None:
    operations = asyncapi_document()["operations"]
    receives = {op["summary"] for op in operations.values() if op["action"] == "receive"}
    assert receives == {f"{reader} reads {spec.name}" for spec in ALL_SPECS for reader in spec.readers}
    assert "asr reads voice.vad" in receives and "asr reads voice.sessions" in receives
