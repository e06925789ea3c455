"""A turn being answered by the responder, and what answering costs (the responder's bookkeeping)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from inference.reply import ReplyJob, Work


@dataclass
class Stats:
    turns: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    speculative: int = 0
    speculative_used: int = 0
    speculative_wasted: int = 0
    used: Work = field(default_factory=Work)  # work of replies the edge got
    wasted: Work = field(default_factory=Work)  # work of speculative replies thrown away
    duplicates: int = 0
    resumed: int = 0  # false interruptions: the edge was told to play on
    stale: int = 0
    empty: int = 0
    unknown_node: int = 0
    cancel_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))  # cancel in -> ReplyCancelled out
    commit_to_first_chunk_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


@dataclass
class Turn:
    """A reply being made, with the records it answers (their offsets are committed when it is done)."""

    job: ReplyJob
    record: Any
    offsets: list[tuple[TopicPartition, int]]
    speculative: bool
    committed_ns: int | None = None  # monotonic time the commit was consumed
    acks: list[asyncio.Future[Any]] = field(default_factory=list)
    abandoned: bool = False  # stopped for a rebalance or shutdown: left uncommitted for the next owner
    cancelled: bool = False  # the edge was told to drop it (or never got it)
    task: asyncio.Task[None] | None = None


def add_work(total: Work, part: Work) -> None:
    total.tokens += part.tokens
    total.audio_ms += part.audio_ms
    total.busy_s += part.busy_s
