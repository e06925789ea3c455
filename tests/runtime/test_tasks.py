"""A long-lived task that dies is logged, counted, restarted, and the service is unhealthy while it is down."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from runtime.metrics import Registry, serve_metrics, stop_serving
from runtime.tasks import Supervisor
from tests.conftest import free_port
from tests.metrics import scrape


class Flaky:
    """A loop that dies ``deaths`` times, then runs until ``done`` is set."""

    def __init__(self, deaths: int) -> None:
        self.deaths, self.runs = deaths, 0
        self.done = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.deaths:
            raise ValueError(f"poison #{self.runs}")
        await self.done.wait()


async def test_a_dead_task_is_reported_restarted_and_health_is_bad_meanwhile(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry()
    tasks = Supervisor(registry, "voicebus_test", backoff_s=0.05)
    port = free_port()
    runner = await serve_metrics(registry, "127.0.0.1", port, down=lambda: tasks.down)
    loop = Flaky(deaths=2)
    try:
        with caplog.at_level(logging.INFO, logger="runtime.tasks"):
            tasks.start("consumer", loop)
            await tasks.wait_for(lambda t: not t.healthy, timeout=5)
            assert tasks.down == ["consumer"]
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 503 and "consumer" in await resp.text()
            await tasks.wait_for(lambda t: t.healthy and loop.runs == 3, timeout=5)
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
            samples = await scrape(port)
            assert samples["voicebus_test_task_deaths_total"] == 2 and samples["voicebus_test_tasks_down"] == 0
            loop.done.set()
            await tasks.join()  # a task that returns has finished: nothing restarts it
    finally:
        await tasks.stop()
        await stop_serving(runner)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("consumer" in r.getMessage() for r in errors)
    assert errors[0].exc_info is not None and "poison #1" in caplog.text  # the traceback, once
    assert errors[1].exc_info is None and "2 in a row" in errors[1].getMessage()
    assert loop.runs == 3


async def test_stop_cancels_a_task_waiting_for_its_restart() -> None:
    tasks = Supervisor(Registry(), "voicebus_test", backoff_s=60)
    tasks.start("consumer", Flaky(deaths=1))
    await tasks.wait_for(lambda t: not t.healthy, timeout=5)
    await asyncio.wait_for(tasks.stop(), 5)
    assert tasks.healthy


async def test_a_task_that_dies_once_the_service_stops_is_not_restarted() -> None:
    tasks, stop = Supervisor(Registry(), "voicebus_test", backoff_s=60), asyncio.Event()
    loop = Flaky(deaths=1)
    tasks.start("consumer", loop, until=stop)
    await tasks.wait_for(lambda t: not t.healthy, timeout=5)
    stop.set()
    await asyncio.wait_for(tasks.join(), 5)  # not the 60 s backoff
    assert loop.runs == 1 and tasks.healthy
