"""The edge's metrics (runtime.metrics renders them on the edge's own /metrics)."""

from __future__ import annotations

from runtime.metrics import Counter, Histogram, Registry


class Metrics(Registry):
    """Every metric of one edge process."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions_started = Counter("voicebus_ingest_sessions_started_total", "Sessions accepted.")
        self.sessions_rejected = Counter("voicebus_ingest_sessions_rejected_total", "Offers refused (4xx/5xx).")
        self.frames_in = Counter("voicebus_ingest_frames_in_total", "20 ms frames cut from received audio.")
        self.frames_concealed = Counter("voicebus_ingest_frames_concealed_total", "Frames concealed (lost packets).")
        self.packets_late = Counter("voicebus_ingest_packets_late_total", "Packets that came after their slot.")
        self.frames_out = Counter("voicebus_ingest_frames_out_total", "20 ms frames sent to peers.")
        self.frames_published = Counter("voicebus_ingest_frames_published_total", "Frames acknowledged by Kafka.")
        self.frames_dropped = Counter("voicebus_ingest_frames_dropped_total",
                                      "Frames dropped: the Kafka queue was full (the oldest go first).")
        self.events_published = Counter("voicebus_ingest_events_published_total", "Events acknowledged by Kafka.")
        self.events_dropped = Counter("voicebus_ingest_events_dropped_total",
                                      "Events dropped: the Kafka queue was full (VAD heartbeats go first).")
        self.publish_errors = Counter("voicebus_ingest_publish_errors_total",
                                      "Kafka sends that failed (each is queued again, not lost).")
        self.kafka_outages = Counter("voicebus_ingest_kafka_outages_total",
                                     "Times the broker stopped acknowledging what the edge publishes.")
        self.barge_ins = Counter("voicebus_ingest_barge_ins_total", "Replies stopped because the person spoke.")
        self.publish_latency = Histogram("voicebus_ingest_publish_latency_ms", "Enqueue to Kafka ack, ms.")
        self.arrival_delay = Histogram("voicebus_ingest_arrival_delay_ms",
                                       "Capture (sender's clock, from RTCP) to packet arrival, ms.")
        self.playout_lateness = Histogram("voicebus_ingest_playout_lateness_ms",
                                          "Send time minus its 20 ms grid slot, ms.", (0.5, 1, 2, 5, 10, 20, 40))
