"""Counters, gauges and histograms in the Prometheus text format (no client library), and the ``/metrics``
endpoint a service without its own HTTP server serves them on. Updating one is an integer add: cheap enough
for the per-frame path. Values that a service already keeps (a table's size, its stats, a consumer's
position) are not counted twice: they are read when scraped."""

from __future__ import annotations

import asyncio
import bisect
import errno
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka.errors import KafkaError
from pydantic import Field

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280)
PROCESSING_BUCKETS_MS = (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the Prometheus text exposition format
POSITION_WAIT_S = 0.2  # a partition whose position is being reset (a rebalance) is left out of one scrape


def _number(value: float) -> str:
    """A sample value, exact: integers in full (``:g`` would print a large count as 1.23457e+06)."""
    if isinstance(value, int):
        return str(value)
    if value != value:  # noqa: PLR0124 (NaN)
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _header(name: str, help_text: str, kind: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help, self.value = name, help_text, 0

    def inc(self, n: int = 1) -> None:
        self.value += n

    def render(self) -> list[str]:
        return [*_header(self.name, self.help, "counter"), f"{self.name} {_number(self.value)}"]


class Gauge:
    """A value read when scraped (``kind`` "counter" for a count kept elsewhere, e.g. a worker's stats)."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float], kind: str = "gauge") -> None:
        self.name, self.help, self.read, self.kind = name, help_text, read, kind
        self._failed = False

    def render(self) -> list[str]:
        try:
            value = _number(self.read())
        except Exception:  # a scrape must answer: this value is NaN, the others are still reported
            if not self._failed:
                log.warning("metric %s could not be read", self.name, exc_info=True)
            self._failed, value = True, "NaN"
        return [*_header(self.name, self.help, self.kind), f"{self.name} {value}"]


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS_MS) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def render(self) -> list[str]:
        lines = _header(self.name, self.help, "histogram")
        running = 0
        for bound, n in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            running += n
            lines.append(f'{self.name}_bucket{{le="{bound}"}} {running}')
        return [*lines, f"{self.name}_sum {_number(self.sum)}", f"{self.name}_count {self.count}"]


class Registry:
    """The metrics of one process: its Counter and Histogram attributes, and values read when scraped."""

    def __init__(self) -> None:
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help_text, read))

    def counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A count the service keeps anyway (its stats), reported as a counter without counting it twice."""
        self.gauges.append(Gauge(name, help_text, read, kind="counter"))

    def render(self) -> str:
        items = [v for v in vars(self).values() if isinstance(v, Counter | Histogram)] + self.gauges
        return "\n".join(line for item in items for line in item.render()) + "\n"

    async def refresh(self) -> None:
        """Before a scrape renders: read what can only be read asynchronously."""

    async def collect(self) -> str:
        await self.refresh()
        return self.render()


class ServiceMetrics(Registry):
    """What every Kafka service reports, named ``voicebus_<service>_…``: events in and out, dead letters,
    processing time, and its consumer's lag (read when scraped).

    An aiokafka service calls ``consumed(batch)`` with each ``getmany`` result and sets ``consumer``: the lag
    is its highwater minus its position (aiokafka moves a partition's position as it hands records out, and
    sets it afresh when a rebalance assigns the partition). A service on another client passes ``lag``.
    """

    def __init__(self, service: str, *, per: str = "batch of records", out_help: str = "Events produced.",
                 buckets: tuple[float, ...] = PROCESSING_BUCKETS_MS,
                 lag: Callable[[], float] | None = None) -> None:
        super().__init__()
        prefix = f"voicebus_{service}"
        self.prefix = prefix
        self.events_in = Counter(f"{prefix}_events_in_total", "Records consumed.")
        self.events_out = Counter(f"{prefix}_events_out_total", out_help)
        self.dead_letters = Counter(f"{prefix}_dead_letters_total", "Records sent to the dead-letter topic.")
        self.processing = Histogram(f"{prefix}_processing_ms", f"Time to handle one {per}, ms.", buckets)
        self.consumer: Any = None  # the aiokafka consumer whose lag is reported
        self._lag = 0  # as of the last refresh
        self.gauge(f"{prefix}_consumer_lag", "Records not consumed yet: the sum over the assigned partitions "
                   "of the highwater minus the next offset to consume.", lag or (lambda: self._lag))

    def consumed(self, batch: Mapping[Any, Sequence[Any]]) -> None:
        """After each ``getmany``: its records are counted in (per partition, not per record)."""
        n = 0
        for records in batch.values():
            n += len(records)
        if n:
            self.events_in.inc(n)

    async def refresh(self) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        assigned = list(consumer.assignment())
        highwaters = {tp: consumer.highwater(tp) for tp in assigned}  # no await: no rebalance in between
        positions: dict[Any, int] = {}
        for tp in assigned:
            if highwaters[tp] is not None:
                try:
                    positions[tp] = await asyncio.wait_for(consumer.position(tp), POSITION_WAIT_S)
                except (TimeoutError, KafkaError):  # being reset, or revoked meanwhile (IllegalStateError)
                    pass
        self._lag = partition_lag(assigned, highwaters.get, positions.get)


def partition_lag(assigned: Any, highwater: Callable[[Any], int | None],
                  next_offset: Callable[[Any], int | None]) -> int:
    """The sum over ``assigned`` of highwater minus the next offset to consume. A partition counts 0 until
    both are known: a consumer learns the highwater from its first fetch, which returns the records behind it."""
    total = 0
    for tp in assigned:
        high, position = highwater(tp), next_offset(tp)
        if high is not None and position is not None and high > position:
            total += high - position
    return total


def metrics_host_field() -> Any:
    return Field("127.0.0.1", description="Address the Prometheus /metrics endpoints of the ASR worker, the "
                 "responder and the turn processor listen on (0.0.0.0: every interface).")


def metrics_port_field(default: int, service: str) -> Any:
    return Field(default, ge=0, le=65535, description=f"Port of the {service}'s Prometheus /metrics endpoint "
                 "(0: not served; a port in use is reported and the service runs without it).")


async def serve_metrics(registry: Registry, host: str, port: int,
                        down: Callable[[], Sequence[str]] | None = None) -> Any:
    """Serve ``/metrics`` (and ``/healthz``) until the returned runner is cleaned up; port 0: not served.
    ``down()`` names what is broken (a runtime.tasks.Supervisor's dead tasks): ``/healthz`` is 503 while any is.

    A port already in use (a second worker of the same kind on this host) is logged and not served: the
    service runs on without its metrics rather than failing to start. Returns None when not served."""
    if not port:
        return None
    from aiohttp import web

    async def metrics(_: web.Request) -> web.Response:
        return await metrics_response(registry)

    async def healthz(_: web.Request) -> web.Response:
        broken = down() if down is not None else ()
        if broken:
            return web.Response(text=f"down: {', '.join(broken)}", status=503)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno != errno.EADDRINUSE:
            raise
        log.warning("metrics not served: %s:%d is in use (give this process its own port)", host, port)
        return None
    log.info("metrics on http://%s:%d/metrics", host, port)
    return runner


async def metrics_response(registry: Registry) -> web.Response:
    """The ``/metrics`` answer, for a service that has its own aiohttp app."""
    from aiohttp import web

    return web.Response(body=(await registry.collect()).encode(), headers={"Content-Type": CONTENT_TYPE})


async def stop_serving(runner: Any) -> None:
    """Stop what ``serve_metrics`` started (nothing if it returned None)."""
    if runner is not None:
        await runner.cleanup()
