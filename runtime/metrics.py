"""Counters, gauges and histograms in the Prometheus text format (no client library), and the ``/metrics``
endpoint a service without its own HTTP server serves them on. Updating one is an integer add: cheap enough
for the per-frame path."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 40, 80, 160, 320, 640, 1280)


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help, self.value = name, help_text, 0

    def inc(self, n: int = 1) -> None:
        self.value += n

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter", f"{self.name} {self.value}"]


class Gauge:
    """A value read when scraped."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help_text, read

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {self.read():g}"]


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
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, n in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            running += n
            lines.append(f'{self.name}_bucket{{le="{bound}"}} {running}')
        return [*lines, f"{self.name}_sum {self.sum:g}", f"{self.name}_count {self.count}"]


class Registry:
    """The metrics of one process: its Counter and Histogram attributes, and gauges read when scraped."""

    def __init__(self) -> None:
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        items = [v for v in vars(self).values() if isinstance(v, Counter | Histogram)] + self.gauges
        return "\n".join(line for item in items for line in item.render()) + "\n"


class ServiceMetrics(Registry):
    """What every Kafka service reports: events in and out, dead letters, processing time; ``lag`` is read from
    its consumer when scraped."""

    def __init__(self, service: str) -> None:
        super().__init__()
        prefix = f"voicebus_{service}"
        self.events_in = Counter(f"{prefix}_events_in_total", "Records consumed.")
        self.events_out = Counter(f"{prefix}_events_out_total", "Events produced.")
        self.dead_letters = Counter(f"{prefix}_dead_letters_total", "Records sent to the dead-letter topic.")
        self.processing = Histogram(f"{prefix}_processing_ms", "Time to handle one batch of records, ms.")
        self.prefix = prefix


async def serve_metrics(registry: Registry, host: str, port: int) -> Any:
    """Serve ``/metrics`` (and ``/healthz``) until the returned runner is cleaned up; port 0: not served."""
    if not port:
        return None
    from aiohttp import web

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=registry.render(), content_type="text/plain", charset="utf-8")

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
