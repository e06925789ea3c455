"""Which consumed offsets may be committed while some turns are still being answered (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

P = TypeVar("P")  # a topic partition


class OffsetTracker(Generic[P]):
    """An offset is committable once every record at or before it is done: records whose work runs on
    (a turn being answered) are ``hold``-ed until ``release``-d. A crash re-reads from the earliest held one."""

    def __init__(self) -> None:
        self._next: dict[P, int] = {}  # one past the last consumed offset
        self._held: dict[P, dict[int, int]] = {}  # offset -> hold count
        self._committed: dict[P, int] = {}

    def consumed(self, tp: P, offset: int) -> None:
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def next_offsets(self) -> dict[P, int]:
        """One past the last offset consumed, per partition: where to read again after a loop died."""
        return dict(self._next)

    def hold(self, tp: P, offset: int) -> None:
        held = self._held.setdefault(tp, {})
        held[offset] = held.get(offset, 0) + 1

    def release(self, tp: P, offset: int) -> None:
        held = self._held.get(tp, {})
        if offset in held:
            held[offset] -= 1
            if not held[offset]:
                del held[offset]

    def committable(self) -> dict[P, int]:
        """The offsets to commit now (only those that moved since ``committed`` was last called)."""
        out = {}
        for tp, nxt in self._next.items():
            held = self._held.get(tp)
            offset = min(held) if held else nxt
            if offset > self._committed.get(tp, -1):
                out[tp] = offset
        return out

    def committed(self, offsets: dict[P, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: Iterable[P]) -> None:
        """Partitions given away in a rebalance: their new owner starts from what was committed."""
        for tp in tps:
            self._next.pop(tp, None)
            self._held.pop(tp, None)
            self._committed.pop(tp, None)
