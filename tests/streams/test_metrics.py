"""/metrics of the telemetry sink (on its query endpoint) and of the turn processor (`voicebus streams` in its
own process), scraped over HTTP after known traffic on the real broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.endpointing_events import Conversation
from runtime.kafka import make_producer
from schemas.topics import TELEMETRY, VAD
from tests.conftest import free_port
from tests.inference.test_metrics import histogram_is_whole, scrape
from tests.streams.telemetry.test_sink import produce as produce_telemetry
from tests.streams.telemetry.test_sink import running, settings_for
from tests.streams.test_turn_worker import S1, Outputs, Worker, produce

pytestmark = pytest.mark.integration


async def test_sink_serves_metrics_beside_its_queries(topics, chdb_dsn):
    await topics.create_all()
    port = free_port()
    settings = settings_for(topics, chdb_dsn).model_copy(update={"telemetry_query_port": port})
    events = await produce_telemetry(topics)  # one row each
    producer = make_producer(topics.settings)
    await producer.start()
    try:
        await producer.send_and_wait(topics.name(TELEMETRY.name), b"{not json", key=b"junk")
    finally:
        await producer.stop()
    async with running(settings) as sink:
        await sink.wait_for(lambda s: s.rows_written >= events and sink.metrics.dead_letters.value >= 1, 30)
        samples = await scrape(port)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 200 and (await resp.json())["ok"]
    assert samples["voicebus_telemetry_events_in_total"] == events + 1
    assert samples["voicebus_telemetry_dead_letters_total"] == 1
    assert samples["voicebus_telemetry_events_out_total"] == events  # rows written
    assert samples["voicebus_telemetry_pending_rows"] == 0 and samples["voicebus_telemetry_paused"] == 0
    assert samples["voicebus_telemetry_consumer_lag"] == 0
    histogram_is_whole(samples, "voicebus_telemetry_processing_ms")
    histogram_is_whole(samples, "voicebus_telemetry_write_ms")


async def test_turn_processor_serves_metrics(topics: Any, tmp_path: Path) -> None:
    await topics.create_all()
    port = free_port()
    script = Conversation(S1).say(500, 1500, "hello there").wait(2500)
    # The junk goes first on S1's VAD partition: the turn cannot be committed before it was dead-lettered.
    await produce(topics.settings, script.events, raw=[(VAD.name, b"{not json")])
    worker = Worker(topics, tmp_path, "metrics")
    worker.env["VOICEBUS_TURN_METRICS_PORT"] = str(port)
    with worker:
        async with Outputs(topics.settings) as out:
            await out.until(lambda o: o.committed(S1) == [(f"{S1}-1", "hello there")], worker)
            samples = await scrape(port)
    assert samples["voicebus_streams_dead_letters_total"] == 1
    assert samples["voicebus_streams_events_in_total"] >= 2
    assert samples["voicebus_streams_events_out_total"] >= len(out.turns) + len(out.stamps) >= 1
    assert samples["voicebus_streams_sessions"] == 1
    assert samples["voicebus_streams_consumer_lag"] >= 0
    histogram_is_whole(samples, "voicebus_streams_processing_ms")
