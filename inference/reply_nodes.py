"""Which edge nodes' reply topics exist, for the copies of transcripts the ASR worker sends there.

The copy never holds up the transcript: a node whose reply topic is not known yet is looked up in the
background, and its copies are skipped meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

NODE_LOOKUP_S = 5.0  # how long a node's reply topic is looked up for
KNOWN_FOR_S, UNKNOWN_FOR_S = 300.0, 10.0  # how long an answer holds before it is looked up again


class ReplyNodes:
    def __init__(self, producer: Any, topic_of_node: Any) -> None:
        self._producer = producer
        self._topic_of_node = topic_of_node  # node id -> the reply topic's full name
        self._nodes: dict[str, tuple[bool, float]] = {}  # node id -> (reply topic exists, until when)
        self._lookups: dict[str, asyncio.Task[None]] = {}

    def known(self, node_id: str) -> bool:
        """Whether the node's reply topic exists, as last found; a lookup starts when that answer is stale."""
        known, until = self._nodes.get(node_id, (False, 0.0))
        if time.monotonic() >= until and node_id not in self._lookups:
            self._lookups[node_id] = asyncio.create_task(self._look_up(node_id), name=f"node-{node_id}")
        return known

    async def _look_up(self, node_id: str) -> None:
        topic = self._topic_of_node(node_id)
        try:
            await asyncio.wait_for(self._producer.partitions_for(topic), NODE_LOOKUP_S)
            known = True
        except (TimeoutError, KafkaError):
            known = False
            if node_id not in self._nodes:
                log.warning("no reply topic %s: that node's sessions are transcribed, their words not shown", topic)
        self._nodes[node_id] = (known, time.monotonic() + (KNOWN_FOR_S if known else UNKNOWN_FOR_S))
        del self._lookups[node_id]

    async def aclose(self) -> None:
        for task in list(self._lookups.values()):
            task.cancel()
        await asyncio.gather(*self._lookups.values(), return_exceptions=True)
