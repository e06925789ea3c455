"""What the edge tells its client on the data channel, and that its media time is the client's microphone clock.

A client (like `voicebus simulate`) pairs the replies it hears with what it said by the speech span the edge
sends with each reply (edge media time: 0 at the session's first audio frame, 20 ms per frame). Here the replies
are put on the edge's return topic by the test, so their spans are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

import tests.conftest as root
from bench.utterances import recording
from ingest.client import Clip, EdgeClient, Told
from ingest.server import running_edge
from schemas.conversation import ReplyAudioChunk, ReplyCancelled, ReplyEnded
from tests.ingest.conftest import SPEECH, edge_settings, load_speech, send_replies

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LIBRIVOX = SPEECH / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav"
NODE = "edge-test"


def chunks(session_id: str, turn_id: str, pcm: np.ndarray, span_ns: tuple[int, int], end: bool) -> list[object]:
    step = 16 * 200
    parts = [pcm[i:i + step] for i in range(0, len(pcm), step)]
    events: list[object] = [ReplyAudioChunk(session_id=session_id, seq=i, media_ns=0, wall_ns=1, turn_id=turn_id,
                                            index=i, pcm=c.tobytes(), speech_start_media_ns=span_ns[0],
                                            speech_end_media_ns=span_ns[1]) for i, c in enumerate(parts)]
    if end:
        events.append(ReplyEnded(session_id=session_id, seq=len(parts), media_ns=0, wall_ns=1, turn_id=turn_id,
                                 chunks=len(parts)))
    return events


def first(client: EdgeClient, kind: str, **fields: object) -> Told | None:
    return next((t for t in client.told if t.type == kind
                 and all(t.message.get(k) == v for k, v in fields.items())), None)


async def test_replies_are_announced_with_the_turn_and_the_speech_they_answer(topics: root.TestTopics) -> None:
    await topics.create_all((NODE,))
    settings = edge_settings(topics, node_id=NODE)
    async with running_edge(settings):
        client = EdgeClient(f"http://127.0.0.1:{settings.ingest_port}")
        session_id = await client.connect()
        hearing = client.hearing
        try:
            libri = recording(LIBRIVOX)
            start_frame, _ = await client.mic.say(libri.clip)
            client.mic.say(Clip.of(np.zeros(16000, np.int16)))  # a second of silence ends the utterance
            await hearing.wait_for(lambda: first(client, "speech", speaking=False) is not None, timeout=20)

            # The edge's media time is the microphone's frame count x 20 ms: the speech it heard sits where the
            # labels put it in the recording the microphone started at frame `start_frame`.
            heard = first(client, "speech", speaking=False)
            assert heard is not None
            onset_ms = start_frame * 20 + libri.speech_start_s * 1000
            offset_ms = start_frame * 20 + libri.speech_end_s * 1000
            assert abs(heard.message["speech_start_ms"] - onset_ms) <= 150, (heard.message, onset_ms)
            assert abs(heard.message["speech_end_ms"] - offset_ms) <= 250, (heard.message, offset_ms)
            said = first(client, "speech", speaking=True)
            assert said is not None and said.message["speech_start_ms"] == heard.message["speech_start_ms"]

            # A reply plays: it is announced with its turn and span, and its end is announced.
            reply = load_speech(SPEECH / "misc" / "jfk.wav")[16000:16000 * 2]  # one second of loud speech
            span_ns = (1_230_000_000, 3_450_000_000)
            await send_replies(topics, NODE, chunks(session_id, "turn-1", reply, span_ns, end=True))
            await hearing.wait_for(lambda: first(client, "reply_ended", turn_id="turn-1") is not None, timeout=20)
            started = first(client, "reply_started", turn_id="turn-1")
            assert started is not None
            assert (started.message["speech_start_ms"], started.message["speech_end_ms"]) == (1230, 3450)
            ended = first(client, "reply_ended", turn_id="turn-1")
            assert ended is not None and ended.message["interrupted"] is False
            assert ended.message["played_ms"] == 1000
            assert first(client, "latency", turn_id="turn-1") is not None  # what the page shows still comes
            loud = [at for at, is_loud in zip(hearing.arrivals, hearing.loud, strict=True) if is_loud]
            assert loud and started.at - 0.1 <= loud[0] <= ended.at  # its audio came between the two messages

            # A reply withdrawn while it plays: it ends, then the cancel is announced with its span.
            await send_replies(topics, NODE, chunks(session_id, "turn-2", np.tile(reply, 5), span_ns, end=False))
            await hearing.wait_for(lambda: first(client, "reply_started", turn_id="turn-2") is not None, timeout=20)
            await send_replies(topics, NODE, [ReplyCancelled(session_id=session_id, seq=99, media_ns=0, wall_ns=1,
                                                             turn_id="turn-2")])
            await hearing.wait_for(lambda: first(client, "reply_cancelled", turn_id="turn-2") is not None,
                                   timeout=20)
            cancelled = first(client, "reply_cancelled", turn_id="turn-2")
            ended = first(client, "reply_ended", turn_id="turn-2")
            assert cancelled is not None and ended is not None and ended.at <= cancelled.at
            assert ended.message["played_ms"] < 5000
            assert (cancelled.message["speech_start_ms"], cancelled.message["speech_end_ms"]) == (1230, 3450)
        finally:
            await client.close()
