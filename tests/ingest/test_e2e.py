"""Real aiortc client <-> edge <-> real broker: audio in, VAD, replies out, barge-in, echo."""

from __future__ import annotations

import numpy as np
import pytest

import tests.conftest as root
from ingest.client import Clip, EdgeClient
from ingest.server import EdgeNode, running_edge
from schemas.conversation import ReplyAudioChunk, ReplyEnded
from schemas.edge import PlayoutFinished, PlayoutInterrupted, PlayoutStarted, SpeechStarted, SpeechStopped
from tests.ingest.conftest import SPEECH, TopicReader, edge_settings, lab_span, load_speech, send_replies

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LIBRIVOX = SPEECH / "librivox" / "sense_and_sensibility_01_austen_64kb-0880"


def reply_events(session_id: str, turn_id: str, pcm: np.ndarray, chunk_ms: int = 200) -> list[object]:
    step = 16 * chunk_ms
    chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)]
    events: list[object] = [ReplyAudioChunk(session_id=session_id, seq=i, media_ns=0, wall_ns=1, turn_id=turn_id,
                                            index=i, pcm=c.tobytes(), speech_start_media_ns=0,
                                            speech_end_media_ns=0) for i, c in enumerate(chunks)]
    return [*events, ReplyEnded(session_id=session_id, seq=len(chunks), media_ns=0, wall_ns=1, turn_id=turn_id,
                                chunks=len(chunks))]


def locate(received: np.ndarray, clip: np.ndarray, near: int) -> int:
    """Sample offset of ``clip`` in ``received``, searched within 0.5 s of ``near``."""
    lo = max(0, near - 8000)
    window = received[lo:near + 8000 + len(clip)].astype(np.float32)
    corr = np.correlate(window, clip[:16000].astype(np.float32), mode="valid")
    return lo + int(np.argmax(corr))


async def test_speech_becomes_ordered_frames_and_vad_events(edge: tuple[EdgeNode, str],
                                                            topics: root.TestTopics) -> None:
    node, url = edge
    jfk, libri = load_speech(SPEECH / "misc" / "jfk.wav"), load_speech(LIBRIVOX.with_suffix(".wav"))
    client = EdgeClient(url)
    session_id = await client.connect()
    first, _ = await client.mic.say(Clip.of(jfk))
    client.mic.say(Clip.of(np.zeros(16000, np.int16)))
    second, _ = await client.mic.say(Clip.of(libri))
    client.mic.say(Clip.of(np.zeros(16000, np.int16)))  # a second of silence ends the utterance
    expected = second + len(libri) // 320 + 40
    async with TopicReader(topics, "voice.audio", session_id) as audio:
        frames = await audio.until(lambda items: len(items) >= expected, timeout=30)
    await client.close()
    seqs = [f.seq for f in frames]
    assert seqs == list(range(len(frames)))  # in order, none missing
    assert [f.media_ns for f in frames] == [s * 20_000_000 for s in seqs]
    concealed = [f.seq for f in frames if f.flags & 2]
    # On loopback a packet is only given up when this shared 2-core host stalls the test process for longer
    # than the receive buffer waits; the frame is still there (concealed), but such stalls must stay rare.
    assert len(concealed) <= len(frames) // 50, concealed
    pcm = np.concatenate([f.samples() for f in frames])
    at_jfk, at_libri = locate(pcm, jfk, first * 320), locate(pcm, libri, second * 320)
    assert (at_libri - at_jfk) // 320 == second - first  # the right count for jfk's duration: every frame
    capture_lag_ms = [(f.capture_wall_ns / 1e9 - client.mic.capture_times[f.seq]) * 1000 for f in frames[:500]]
    print(f"\n[ingest] capture clock vs the client's capture time: median {np.median(capture_lag_ms):.1f} ms")

    async with TopicReader(topics, "voice.vad", session_id) as vad:
        events = await vad.until(lambda items: sum(isinstance(e, SpeechStopped) for e in items) >= 5)
    start, end = lab_span(LIBRIVOX.with_suffix(".lab"))
    offset = at_libri / 16000
    starts = [e.speech_start_media_ns / 1e9 - offset for e in events if isinstance(e, SpeechStarted)]
    stops = [e.speech_end_media_ns / 1e9 - offset for e in events if isinstance(e, SpeechStopped)]
    libri_starts = [t for t in starts if t > -0.3]
    libri_stops = [t for t in stops if t > 0]
    assert libri_starts and abs(libri_starts[0] - start) <= 0.150
    assert libri_stops and abs(libri_stops[-1] - end) <= 0.150


async def test_reply_is_heard_paced_and_reported(edge: tuple[EdgeNode, str], topics: root.TestTopics) -> None:
    node, url = edge
    client = EdgeClient(url)
    session_id = await client.connect()
    reply = load_speech(SPEECH / "misc" / "jfk.wav")[16000 * 1:16000 * 3]  # two seconds of speech
    await send_replies(topics, "edge-test", reply_events(session_id, "turn-1", reply))
    hearing = client.hearing
    await hearing.wait_for(lambda: hearing.first_loud() is not None, timeout=10)
    async with TopicReader(topics, "voice.playout", session_id) as playout:
        events = await playout.until(lambda items: any(isinstance(e, PlayoutFinished) for e in items))
    await client.close()
    assert isinstance(events[0], PlayoutStarted) and events[0].turn_id == "turn-1"
    assert abs(events[-1].played_ms - 2000) <= 20
    first, last = hearing.first_loud(), hearing.last_loud()
    assert first is not None and last is not None
    heard_s = hearing.arrivals[last] - hearing.arrivals[first]
    assert heard_s > 1.5  # paced over the reply's length, not sent in a burst
    lateness = np.array(node.metrics.playout_lateness.counts)
    sends = np.diff(np.array(list(client.hearing.arrivals[first:last + 1]))) * 1000
    print(f"\n[ingest] reply heard over {heard_s:.2f} s; client inter-arrival p50 {np.median(sends):.1f} ms, "
          f"p99 {np.percentile(sends, 99):.1f} ms; edge lateness histogram {lateness.tolist()}")


async def test_speech_over_a_reply_stops_it_at_the_client(edge: tuple[EdgeNode, str],
                                                          topics: root.TestTopics) -> None:
    node, url = edge
    client = EdgeClient(url)
    session_id = await client.connect()
    jfk = load_speech(SPEECH / "misc" / "jfk.wav")
    await send_replies(topics, "edge-test", reply_events(session_id, "long", np.tile(jfk, 2)))  # 22 s reply
    hearing = client.hearing
    await hearing.wait_for(lambda: hearing.first_loud() is not None, timeout=10)
    await hearing.wait_for(lambda: len(hearing.loud) - (hearing.first_loud() or 0) > 50, timeout=5)
    await client.mic.say(Clip.of(load_speech(LIBRIVOX.with_suffix(".wav"))))
    async with TopicReader(topics, "voice.playout", session_id) as playout:
        events = await playout.until(lambda items: any(isinstance(e, PlayoutInterrupted) for e in items))
    async with TopicReader(topics, "voice.vad", session_id) as vad:
        started = (await vad.until(lambda items: any(isinstance(e, SpeechStarted) for e in items)))
    onset = next(e for e in started if isinstance(e, SpeechStarted))
    await hearing.wait_for(lambda: len(hearing.arrivals) > 0 and hearing.arrivals[-1] > onset.wall_ns / 1e9 + 0.3,
                           timeout=5)
    await client.close()
    interrupted = next(e for e in events if isinstance(e, PlayoutInterrupted))
    assert 900 <= interrupted.played_ms <= 5000
    last_loud = hearing.arrivals[hearing.last_loud() or 0]
    reaction_ms = (last_loud - onset.wall_ns / 1e9) * 1000
    print(f"\n[ingest] barge-in: last agent audio reached the client {reaction_ms:.1f} ms after the edge's onset")
    assert reaction_ms <= 100


@pytest.mark.parametrize("aec", [True, False], ids=["aec_on", "aec_off"])
async def test_the_agent_does_not_hear_itself(aec: bool, topics: root.TestTopics) -> None:
    await topics.create_all(("edge-test",))
    settings = edge_settings(topics, aec=aec)
    async with running_edge(settings):
        client = EdgeClient(f"http://127.0.0.1:{settings.ingest_port}")
        client.mic.echo(delay_ms=100, gain=0.3)  # the client's loudspeaker leaks into its microphone
        session_id = await client.connect()
        reply = load_speech(SPEECH / "misc" / "jfk.wav")[:16000 * 8]
        await send_replies(topics, "edge-test", reply_events(session_id, "echo", reply))
        async with TopicReader(topics, "voice.playout", session_id) as playout:
            played = await playout.until(lambda items: any(isinstance(e, PlayoutFinished | PlayoutInterrupted)
                                                           for e in items), timeout=20)
        heard = len(client.hearing.loud)
        await client.hearing.wait_for(lambda: len(client.hearing.loud) > heard + 25, timeout=5)  # 0.5 s more
        await client.close()
    async with TopicReader(topics, "voice.vad", session_id) as vad:
        events = await vad.until(lambda items: any(e.media_ns >= played[-1].media_ns for e in items))
    began = played[0].media_ns / 1e9
    starts = [e.speech_start_media_ns / 1e9 - began for e in events if isinstance(e, SpeechStarted)]
    print(f"\n[ingest] aec={aec}: speech starts during the reply at {[round(t, 2) for t in starts]} s")
    if aec:  # AEC3, and the echo guard while AEC3 converges
        assert starts == [] and not any(isinstance(e, PlayoutInterrupted) for e in played)
    else:  # the agent hears itself, and even interrupts itself
        assert len(starts) >= 1
