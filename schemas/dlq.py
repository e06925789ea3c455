"""Every consumer decodes through here: what cannot be decoded goes to the dead-letter topic, whole."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from schemas.bounds import MAX_ERROR
from schemas.codec import DecodeError
from schemas.telemetry import DeadLetter
from schemas.topics import DLQ

log = logging.getLogger(__name__)


class Record(Protocol):
    """What we need of a consumed message (aiokafka's ConsumerRecord has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]]


class Producer(Protocol):
    async def send_and_wait(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                            partition: int | None = None, timestamp_ms: int | None = None,
                            headers: Any = None) -> Any: ...


def dead_letter_for(record: Record, error: str, consumer: str = "") -> DeadLetter:
    if len(error) > MAX_ERROR:  # a validation error of a big union can be long: the letter must still be made
        error = error[:MAX_ERROR - 20] + " ... (cut)"
    return DeadLetter(
        source_topic=record.topic, partition=record.partition, offset=record.offset,
        key=record.key, value=record.value, headers=list(record.headers or ()), error=error, consumer=consumer,
    )


async def decode_or_dead_letter(codec: Any, record: Record, producer: Producer, dlq_topic: str,
                                consumer: str = "") -> Any | None:
    """The decoded value, or None after the message was written to ``dlq_topic`` with the error."""
    try:
        return codec.decode(record.value)
    except DecodeError as exc:
        letter = dead_letter_for(record, str(exc), consumer)
        await producer.send_and_wait(dlq_topic, value=DLQ.codec.encode(letter), key=record.key)
        log.warning("dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
        return None
