"""`voicebus up`: the whole platform on one machine, each service a supervised child process.

A child that dies is reported and restarted (with backoff); Ctrl-C or SIGTERM stops every child, then the broker
this command started, leaving nothing running.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from pydantic import Field

from runtime.broker import LocalKafka
from runtime.provisioning import create_topics
from runtime.settings import KafkaBrokerSettings

log = logging.getLogger("voicebus.up")


class UpSettings(KafkaBrokerSettings):
    up_start_kafka: bool = Field(True, description="`voicebus up` starts the local broker, or VOICEBUS_KAFKA_BROKERS of them "
                                 "(false: use VOICEBUS_KAFKA_BOOTSTRAP).")
    up_services: str = Field("ingest,streams,asr,responder,telemetry",
                             description="Services `voicebus up` runs, comma separated.")
    up_stop_timeout_s: float = Field(15.0, description="How long a child may take to stop before it is killed.")
    up_max_restarts: int = Field(5, description="Restarts of one service within a minute before `up` gives up.")


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process | None = None
    restarts: list[float] = field(default_factory=list)


async def _spawn(child: Child) -> None:
    child.proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebus.cli", child.name, stdin=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log.info("started %s (pid %d)", child.name, child.proc.pid)


async def _stop(children: list[Child], timeout: float) -> None:
    running = [c.proc for c in children if c.proc and c.proc.returncode is None]
    for proc in running:
        proc.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(p.wait() for p in running))
    except TimeoutError:
        for proc in running:
            if proc.returncode is None:
                log.warning("pid %d did not stop in %.0f s: killing it", proc.pid, timeout)
                proc.kill()
                await proc.wait()


async def supervise(settings: UpSettings, stop: asyncio.Event, children: list[Child] | None = None) -> int:
    """Run the services until ``stop`` is set; ``children`` (if given) is filled in for the caller to watch."""
    children = [] if children is None else children
    children[:] = [Child(name.strip()) for name in settings.up_services.split(",") if name.strip()]
    for child in children:
        await _spawn(child)
    try:
        while not stop.is_set():
            waits = {asyncio.ensure_future(c.proc.wait()): c for c in children if c.proc}
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
            for fut in waits:
                if fut not in done:
                    fut.cancel()
            stopper.cancel()
            if stop.is_set():
                break
            for fut in done:
                child = waits.get(fut)
                if child is None:
                    continue
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < 60] + [now]
                log.error("%s exited with %s", child.name, fut.result())
                if len(child.restarts) > settings.up_max_restarts:
                    log.error("%s keeps dying (%d restarts in a minute): stopping everything",
                              child.name, len(child.restarts) - 1)
                    return 1
                await asyncio.sleep(min(5.0, 0.5 * 2 ** (len(child.restarts) - 1)))
                await _spawn(child)
    finally:
        await _stop(children, settings.up_stop_timeout_s)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="voicebus up", description=__doc__)
    parser.parse_args(argv)
    settings = UpSettings()
    broker = LocalKafka(settings) if settings.up_start_kafka else None
    if broker is not None:
        started = broker.start()
        log.info("kafka (%d broker%s) ready at %s in %.1f s%s", len(broker.nodes), "s" if len(broker.nodes) > 1 else "",
                 started.bootstrap, started.seconds, " (already running: left running at exit)" if started.reused else "")
        if started.reused:
            broker = None
        settings = settings.model_copy(update={"kafka_bootstrap": started.bootstrap})
        os.environ["VOICEBUS_KAFKA_BOOTSTRAP"] = started.bootstrap

    from ingest.settings import IngestSettings  # the composition root may know the edge's settings

    edge = IngestSettings()  # the edge runs its front and a worker per core (VOICEBUS_INGEST_WORKERS)
    for result in asyncio.run(create_topics(settings, edge.worker_node_ids())):
        if result.status == "mismatch":
            log.error("topic %s: %s", result.name, result.detail)
    print(f"voicebus is up: open http://{edge.ingest_host}:{edge.ingest_port}/ (Ctrl-C stops everything)", flush=True)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await supervise(settings, stop)

    try:
        return asyncio.run(run())
    finally:
        if broker is not None:
            broker.stop()
            log.info("kafka stopped")
