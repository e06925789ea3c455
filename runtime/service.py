"""How every long-running service runs: until SIGINT or SIGTERM, with a plain error when Kafka is not there."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaConnectionError

from runtime.settings import CommonSettings

log = logging.getLogger(__name__)


def run_until_signal(settings: CommonSettings, work: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run ``work(stop)``; SIGINT/SIGTERM set ``stop`` and ``work`` drains and returns. Exit code 0, or 1 with
    one clear line when no broker answers."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await work(stop)

    try:
        asyncio.run(run())
    except KafkaConnectionError:
        log.error("no Kafka broker answers at %s (start one with `voicebus kafka start`, or set "
                  "VOICEBUS_KAFKA_BOOTSTRAP)", settings.kafka_bootstrap)
        return 1
    return 0
