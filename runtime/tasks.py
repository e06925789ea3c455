"""A service's long-lived tasks (consumer loops, publishers), supervised one way.

A task that raises is not left dead and silent: its death is logged at ERROR (with the traceback the first time
in a row), counted in ``/metrics``, and it is started again after a backoff that doubles while it keeps dying.
While any task is down the service's health is bad. A task that returns has finished (a loop that saw its stop).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from runtime.metrics import Registry

log = logging.getLogger(__name__)


class Supervisor:
    """Runs ``start``-ed tasks and restarts the ones that die. ``down`` names those waiting to be restarted."""

    def __init__(self, registry: Registry, prefix: str, *, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 stable_s: float = 60.0) -> None:
        self._backoff_s, self._max_backoff_s, self._stable_s = backoff_s, max_backoff_s, stable_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._down: set[str] = set()
        self._changed = asyncio.Event()
        self.deaths = 0
        registry.counter(f"{prefix}_task_deaths_total", "Long-lived tasks that died (each is restarted).",
                         lambda: self.deaths)
        registry.gauge(f"{prefix}_tasks_down", "Long-lived tasks dead and waiting to be restarted.",
                       lambda: len(self._down))

    @property
    def down(self) -> list[str]:
        return sorted(self._down)

    @property
    def healthy(self) -> bool:
        return not self._down

    def start(self, name: str, run: Callable[[], Awaitable[None]], until: asyncio.Event | None = None) -> None:
        """Run ``run()`` as the task ``name``, again (after a backoff) each time it raises; once ``until`` is
        set (the service stops), a task that dies is not started again."""
        if name in self._tasks and not self._tasks[name].done():
            raise RuntimeError(f"task {name} is already running")
        self._tasks[name] = asyncio.create_task(self._keep(name, run, until), name=name)

    async def join(self) -> None:
        """Until every task has returned. A task that dies is restarted, so this waits for it to return too."""
        await asyncio.gather(*self._tasks.values())

    async def cancel(self, name: str) -> None:
        """Cancel the task ``name`` (if there is one) and wait for it to end."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._set_down(name, False)

    async def stop(self) -> None:
        """Cancel every task and wait for it to end."""
        for name in list(self._tasks):
            await self.cancel(name)

    async def wait_for(self, predicate: Callable[[Supervisor], bool], timeout: float) -> None:
        """Until ``predicate(self)`` holds (tests wait on it); TimeoutError after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    def _set_down(self, name: str, down: bool) -> None:
        if down:
            self._down.add(name)
        else:
            self._down.discard(name)
        self._changed.set()

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]], until: asyncio.Event | None) -> None:
        loop = asyncio.get_running_loop()
        in_a_row = 0
        while True:
            started = loop.time()
            try:
                await run()
                return
            except Exception as exc:  # noqa: BLE001 -- any death of a long-lived task is reported and restarted
                self.deaths += 1
                # A task that ran a good while before dying starts its backoff afresh.
                in_a_row = 1 if loop.time() - started >= self._stable_s else in_a_row + 1
                delay = min(self._backoff_s * 2 ** (in_a_row - 1), self._max_backoff_s)
                if in_a_row == 1:
                    log.exception("task %s died; restarting it in %.1f s", name, delay)
                else:
                    log.error("task %s died again (%d in a row): %r; restarting it in %.1f s", name, in_a_row,
                              exc, delay)
                self._set_down(name, True)
            try:
                if await _set_within(until, delay):
                    return  # the service is stopping: nothing to restart for
            finally:
                self._set_down(name, False)
            log.info("task %s restarted", name)


async def _set_within(event: asyncio.Event | None, seconds: float) -> bool:
    """Whether ``event`` is set within ``seconds`` (the backoff: it is the wait itself, not a synchronisation)."""
    if event is None:
        await asyncio.sleep(seconds)
        return False
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True
