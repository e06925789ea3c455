"""Replies a barge-in paused at the edge, waiting for the turn processor's judgement.

The edge keeps a paused reply's unplayed audio for ``window_s`` (``reply_resume_window_ms``); so does the
responder's judgement: a ``FalseInterruption`` within it resumes the reply, words (``TurnCancelled`` /
``TurnEnded(interrupted)``) cancel it, and no judgement at all gives it up (``give_up``, which cancels it as
any cancel does). The responder keeps the generation going meanwhile; this keeps only the clocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from schemas.conversation import BargeIn


class PausedReplies:
    def __init__(self, window_s: float, give_up: Callable[[BargeIn], Awaitable[None]]) -> None:
        self._window_s, self._give_up = window_s, give_up
        self._timers: dict[str, asyncio.TimerHandle] = {}  # turn id -> when its paused reply is given up
        self._background: set[asyncio.Task[None]] = set()

    def __contains__(self, turn_id: object) -> bool:
        return turn_id in self._timers

    def __len__(self) -> int:
        return len(self._timers)

    def pause(self, event: BargeIn) -> None:
        """Keep the reply of this barge-in for the window, then give it up."""
        self.unpause(event.turn_id)
        self._timers[event.turn_id] = asyncio.get_running_loop().call_later(self._window_s, self._expire, event)

    def unpause(self, turn_id: str) -> None:
        """Judged (resumed, cancelled, ended): no longer given up by the clock."""
        timer = self._timers.pop(turn_id, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, event: BargeIn) -> None:
        self._timers.pop(event.turn_id, None)
        task = asyncio.create_task(self._give_up(event), name=f"give-up-{event.turn_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """No more clocks; the give-ups under way finish (briefly)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._background:
            await asyncio.wait(self._background, timeout=5.0)
