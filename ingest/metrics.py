"""The edge's counters, gauges and histograms, rendered in the Prometheus text format (no client library)."""

from __future__ import annotations

import bisect
from collections.abc import Callable

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


class Metrics:
    """Every metric of one edge process."""

    def __init__(self) -> None:
        self.sessions_started = Counter("voicebus_ingest_sessions_started_total", "Sessions accepted.")
        self.sessions_rejected = Counter("voicebus_ingest_sessions_rejected_total", "Offers refused (4xx/5xx).")
        self.frames_in = Counter("voicebus_ingest_frames_in_total", "20 ms frames cut from received audio.")
        self.frames_concealed = Counter("voicebus_ingest_frames_concealed_total", "Frames concealed (lost packets).")
        self.packets_late = Counter("voicebus_ingest_packets_late_total", "Packets that came after their slot.")
        self.frames_out = Counter("voicebus_ingest_frames_out_total", "20 ms frames sent to peers.")
        self.frames_published = Counter("voicebus_ingest_frames_published_total", "Frames acknowledged by Kafka.")
        self.frames_dropped = Counter("voicebus_ingest_frames_dropped_total", "Frames dropped: Kafka queue full.")
        self.events_published = Counter("voicebus_ingest_events_published_total", "Events acknowledged by Kafka.")
        self.events_dropped = Counter("voicebus_ingest_events_dropped_total", "Events dropped: Kafka queue full.")
        self.publish_errors = Counter("voicebus_ingest_publish_errors_total", "Kafka sends that failed.")
        self.barge_ins = Counter("voicebus_ingest_barge_ins_total", "Replies stopped because the person spoke.")
        self.publish_latency = Histogram("voicebus_ingest_publish_latency_ms", "Enqueue to Kafka ack, ms.")
        self.arrival_delay = Histogram("voicebus_ingest_arrival_delay_ms",
                                       "Capture (sender's clock, from RTCP) to packet arrival, ms.")
        self.playout_lateness = Histogram("voicebus_ingest_playout_lateness_ms",
                                          "Send time minus its 20 ms grid slot, ms.", (0.5, 1, 2, 5, 10, 20, 40))
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help_text, read))

    def render(self) -> str:
        items = [v for v in vars(self).values() if isinstance(v, Counter | Histogram)] + self.gauges
        return "\n".join(line for item in items for line in item.render()) + "\n"
