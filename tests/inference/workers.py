"""Running the ASR worker and the responder on the test broker, and the edge-like traffic the ASR tests send."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
import uuid
from contextlib import asynccontextmanager

import numpy as np

from bench.reference_server import shared_sphinx
from inference.asr_worker import AsrWorker
from inference.responder import Responder
from inference.settings import AsrSettings, ResponderSettings
from schemas.audio import FLAG_VOICED, NS_PER_FRAME, AudioFrame
from schemas.base import new_session_id
from schemas.edge import SessionEnded, SpeechStarted, SpeechStopped
from schemas.topics import AUDIO, TRANSCRIPTS, VAD, replies_topic
from tests.conftest import REPO
from tests.inference.kafka_helpers import NODE, Producer, watching

REPLY_TOPIC = replies_topic(NODE)
MS = 1_000_000


def speech_span(pcm: bytes) -> tuple[int, int]:
    """(first, last) voiced 20 ms frame of a clip, by energy: a stand-in for the edge's VAD."""
    frames = np.frombuffer(pcm[: len(pcm) // 640 * 640], dtype="<i2").reshape(-1, 320).astype(float)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 300)
    return int(loud[0]), int(loud[-1])


class EdgeSession:
    """What an edge publishes for one session speaking a clip: frames, then VAD decisions at their times."""

    def __init__(self, pcm: bytes, session_id: str | None = None, node_id: str = NODE) -> None:
        self.session_id, self.node_id = session_id or new_session_id(), node_id
        self.pcm = pcm + bytes(640 * 30)  # 600 ms of silence after the clip
        first, last = speech_span(pcm)
        self.start_ns, self.end_ns = first * NS_PER_FRAME, last * NS_PER_FRAME
        self.seq = 0

    def _base(self, media_ns: int) -> dict:
        self.seq += 1
        return {"session_id": self.session_id, "seq": self.seq, "media_ns": media_ns, "wall_ns": time.time_ns(),
                "node_id": self.node_id}

    def frames(self) -> list[AudioFrame]:
        out = []
        for i in range(len(self.pcm) // 640):
            media = i * NS_PER_FRAME
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
async def running_asr(topics, scorer=None, engine=None, **settings_fields):
    await topics.create_all((NODE,))
    settings = AsrSettings(kafka_bootstrap=topics.settings.kafka_bootstrap, topic_prefix=topics.prefix,
                           asr_group_id=f"asr-{uuid.uuid4().hex[:8]}", **settings_fields)
    worker = AsrWorker(settings, engine=engine or shared_sphinx(), scorer=scorer)
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


def settings_for(topics, **kw) -> ResponderSettings:
    return ResponderSettings(kafka_bootstrap=topics.settings.kafka_bootstrap, topic_prefix=topics.prefix,
                             responder_group_id=f"responder-{uuid.uuid4().hex[:8]}", **kw)


@asynccontextmanager
async def running_responder(topics, llm=None, tts=None, **kw):
    await topics.create_all((NODE,))
    responder = Responder(settings_for(topics, **kw), llm=llm, tts=tts)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(responder.run(stop, ready))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        async with Producer(topics) as producer, watching(topics, REPLY_TOPIC) as edge:
            yield responder, producer, edge
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.lines.append(line.decode(errors="replace"))
            self.changed.set()

    def partitions(self) -> int | None:
        counts = [int(m.group(1)) for line in self.lines if (m := re.search(r"assigned (\d+) partitions", line))]
        return counts[-1] if counts else None


async def start_workers(topics, group: str, count: int, **extra: str) -> list[Worker]:
    """Responders as real processes (``voicebus responder``) in one group; ``extra``: more VOICEBUS_* settings."""
    env = {**os.environ, "VOICEBUS_KAFKA_BOOTSTRAP": topics.settings.kafka_bootstrap,
           "VOICEBUS_TOPIC_PREFIX": topics.prefix, "VOICEBUS_RESPONDER_GROUP_ID": group,
           "VOICEBUS_RESPONDER_SESSION_TIMEOUT_MS": "6000", "VOICEBUS_RESPONDER_MAX_LEAD_MS": "300",
           "VOICEBUS_LOG_LEVEL": "INFO", "VOICEBUS_LOG_JSON": "false", **extra}
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-m", "voicebus.cli", "responder", cwd=REPO,
                                                  env=env, stderr=asyncio.subprocess.PIPE,
                                                  stdin=asyncio.subprocess.DEVNULL)
             for _ in range(count)]
    return [Worker(p) for p in procs]


async def stop_workers(workers: list[Worker]) -> None:
    """SIGTERM the ones still running, then wait for every one (a killed one has already ended)."""
    for w in workers:
        if w.proc.returncode is None:
            w.proc.send_signal(signal.SIGTERM)
    for w in workers:
        await asyncio.wait_for(w.proc.wait(), 30)
        w.reader.cancel()
