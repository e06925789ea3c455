"""The ASR worker on the real broker: edge audio and VAD events in, transcripts out."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import asynccontextmanager

import numpy as np
import pytest

from inference.asr_worker import AsrWorker
from inference.settings import AsrSettings
from runtime.kafka import make_producer
from schemas.audio import FLAG_VOICED, AudioFrame
from schemas.base import new_session_id
from schemas.edge import SessionEnded, SpeechStarted, SpeechStopped
from schemas.topics import AUDIO, DLQ, SESSIONS, TRANSCRIPTS, TYPE_HEADER, VAD
from tests.inference.kafka_helpers import NODE, Producer, watching
from tests.inference.openai_server import shared_sphinx
from tests.inference.recordings import load

pytestmark = pytest.mark.integration

FRAME_NS = 20_000_000
MS = 1_000_000


def speech_span(pcm: bytes) -> tuple[int, int]:
    """(first, last) voiced 20 ms frame of a clip, by energy: a stand-in for the edge's VAD."""
    frames = np.frombuffer(pcm[: len(pcm) // 640 * 640], dtype="<i2").reshape(-1, 320).astype(float)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 300)
    return int(loud[0]), int(loud[-1])


class EdgeSession:
    """What an edge publishes for one session speaking a clip: frames, then VAD decisions at their times."""

    def __init__(self, pcm: bytes, session_id: str | None = None) -> None:
        self.session_id = session_id or new_session_id()
        self.pcm = pcm + bytes(640 * 30)  # 600 ms of silence after the clip
        first, last = speech_span(pcm)
        self.start_ns, self.end_ns = first * FRAME_NS, last * FRAME_NS
        self.seq = 0

    def _base(self, media_ns: int) -> dict:
        self.seq += 1
        return {"session_id": self.session_id, "seq": self.seq, "media_ns": media_ns, "wall_ns": time.time_ns(),
                "node_id": NODE}

    def frames(self) -> list[AudioFrame]:
        out = []
        for i in range(len(self.pcm) // 640):
            media = i * FRAME_NS
            voiced = FLAG_VOICED if self.start_ns <= media <= self.end_ns else 0
            out.append(AudioFrame(self.session_id, i, time.time_ns(), media, 16000,
                                  self.pcm[i * 640:(i + 1) * 640], voiced))
        return out

    def started(self) -> SpeechStarted:
        return SpeechStarted(speech_start_media_ns=self.start_ns, speech_start_wall_ns=time.time_ns(),
                             probability=0.9, **self._base(self.start_ns + 60 * MS))

    def stopped(self) -> SpeechStopped:
        return SpeechStopped(speech_start_media_ns=self.start_ns, speech_end_media_ns=self.end_ns,
                             speech_end_wall_ns=time.time_ns(), **self._base(self.end_ns + 240 * MS))

    def ended(self) -> SessionEnded:
        return SessionEnded(reason="client_closed", **self._base(len(self.pcm) // 32 * MS))


async def publish(producer: Producer, session: EdgeSession, vad_first: bool = False) -> None:
    """Frames and VAD events interleaved by media time, as the edge sends them (or the VAD ones first)."""
    items = [(f.media_ns, AUDIO.name, f) for f in session.frames()]
    items += [(e.media_ns, VAD.name, e) for e in (session.started(), session.stopped())]
    items.sort(key=lambda item: (item[0], item[1] == VAD.name))
    if vad_first:
        items.sort(key=lambda item: item[1] != VAD.name)
    for _, topic, value in items:
        await producer.send(topic, value)


@asynccontextmanager
async def running(topics):
    await topics.create_all((NODE,))
    settings = AsrSettings(kafka_bootstrap=topics.settings.kafka_bootstrap, topic_prefix=topics.prefix,
                           asr_group_id=f"asr-{uuid.uuid4().hex[:8]}")
    worker = AsrWorker(settings, engine=shared_sphinx())
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(worker.run(stop, ready))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        async with Producer(topics) as producer, watching(topics, TRANSCRIPTS.name) as transcripts:
            yield worker, producer, transcripts
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def finals(events, session_id):
    return [e for e in events if e.type == "transcript_final" and e.session_id == session_id]


async def test_speech_is_transcribed_with_partials_and_media_span(topics, speech_dir):
    session = EdgeSession(load(speech_dir / "misc" / "goforward.wav"))
    async with running(topics) as (worker, producer, transcripts):
        await publish(producer, session)
        await transcripts.until(lambda ev: finals(ev, session.session_id))
        await producer.send(SESSIONS.name, session.ended())
        await worker.wait_for(lambda w: session.session_id not in w._sessions, 10)
    events = [e for e in transcripts.events if e.session_id == session.session_id]
    final = events[-1]
    assert final.text == "go forward ten meters" and final.engine == "pocketsphinx"
    assert (final.start_media_ns, final.end_media_ns) == (session.start_ns, session.end_ns)
    partials = events[:-1]
    assert partials and all(p.type == "transcript_partial" and p.text for p in partials)
    assert all(session.start_ns < p.end_media_ns <= session.end_ns + 300 * MS for p in partials)
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    # The contract (schemas.conversation): one utterance, one start; the media clock never goes backwards.
    assert {e.start_media_ns for e in events} == {session.start_ns}
    assert [e.media_ns for e in events] == sorted(e.media_ns for e in events)
    assert final.media_ns >= max(p.media_ns for p in partials)
    assert worker.open_streams == 0 and list(worker.stats.final_lag_ms)


async def test_sessions_in_parallel_and_vad_ahead_of_audio(topics, speech_dir):
    clip = load(speech_dir / "misc" / "goforward.wav")
    a, b = EdgeSession(clip), EdgeSession(clip[: len(clip) // 640 * 640])
    async with running(topics) as (worker, producer, transcripts):
        await asyncio.gather(publish(producer, a), publish(producer, b, vad_first=True))
        await transcripts.until(lambda ev: finals(ev, a.session_id) and finals(ev, b.session_id))
    assert finals(transcripts.events, a.session_id)[0].text == "go forward ten meters"
    assert finals(transcripts.events, b.session_id)[0].text == "go forward ten meters"
    assert worker.stats.finals == 2 and worker.stats.utterances == 2


async def test_bad_audio_is_dead_lettered_and_the_worker_goes_on(topics, speech_dir):
    session = EdgeSession(load(speech_dir / "misc" / "goforward.wav"))
    async with running(topics) as (_, producer, transcripts), watching(topics, DLQ.name) as dlq:
        await producer.send_raw(AUDIO.name, b"VBAF but not really a frame", key=session.session_id.encode())
        await publish(producer, session)
        await transcripts.until(lambda ev: finals(ev, session.session_id))
        await dlq.until(lambda ev: len(ev) == 1)
    assert dlq.events[0].source_topic.endswith("voice.audio") and "frame" in dlq.events[0].error
    assert finals(transcripts.events, session.session_id)[0].text == "go forward ten meters"


async def test_vad_progress_is_passed_over_by_its_type_header(topics):
    # Undecodable bytes that say they are a VadProgress are not even decoded (so not dead-lettered); the same
    # bytes without the header are decoded as before, and dead-lettered. One key: one partition, in order, so
    # once the second is dead-lettered the first was handled.
    key, junk = new_session_id().encode(), b"{not json"
    async with running(topics), watching(topics, DLQ.name) as dlq:
        raw = make_producer(topics.settings)
        await raw.start()
        try:
            await raw.send_and_wait(topics.name(VAD.name), junk, key=key,
                                    headers=[(TYPE_HEADER, b"vad_progress")])
            await raw.send_and_wait(topics.name(VAD.name), junk, key=key)
        finally:
            await raw.stop()
        await dlq.until(lambda ev: len(ev) >= 1)
    assert [(d.value, d.headers) for d in dlq.events] == [(junk, [])]
