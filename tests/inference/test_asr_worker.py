"""The ASR worker on the real broker: edge audio and VAD events in, transcripts out."""

from __future__ import annotations

import asyncio

import pytest

from inference.engines.base import TurnEndEngine
from runtime.kafka import make_producer
from schemas.base import new_session_id
from schemas.topics import AUDIO, DLQ, SESSIONS, TYPE_HEADER, VAD
from tests.inference.conftest import shared_whisper
from tests.inference.kafka_helpers import watching
from tests.inference.recordings import load
from tests.inference.workers import MS, REPLY_TOPIC, EdgeSession, finals, publish, running_asr

pytestmark = pytest.mark.integration

async def test_speech_is_transcribed_with_partials_and_media_span(topics, speech_dir):
    session = EdgeSession(load(speech_dir / "misc" / "goforward.wav"))
    async with running_asr(topics) as (worker, producer, transcripts):
        await publish(producer, session)
        await transcripts.until(lambda ev: finals(ev, session.session_id))
        await producer.send(SESSIONS.name, session.ended())
        await worker.wait_for(lambda w: session.session_id not in w._sessions, 10)
    events = [e for e in transcripts.events if e.session_id == session.session_id]
    # Smart Turn's score of the utterance comes just before its final, with the same span.
    score = events[-2]
    assert score.type == "end_of_turn_scored" and score.engine == "smart-turn-v3.2" and 0 <= score.probability <= 1
    assert (score.start_media_ns, score.end_media_ns) == (session.start_ns, session.end_ns)
    assert worker.stats.scores == 1 and worker.stats.scores_missed == 0
    events = [e for e in events if e is not score]
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


async def test_the_words_are_copied_to_the_reply_topic_of_the_node_holding_the_session(topics, speech_dir):
    clip = load(speech_dir / "misc" / "goforward.wav")
    ours, elsewhere = EdgeSession(clip), EdgeSession(clip, node_id="edge-without-a-topic")
    async with running_asr(topics) as (_, producer, transcripts), watching(topics, REPLY_TOPIC) as edge:
        await publish(producer, ours)
        await publish(producer, elsewhere)
        await transcripts.until(lambda ev: finals(ev, ours.session_id) and finals(ev, elsewhere.session_id))
        await edge.until(lambda ev: any(e.final for e in ev))
    # Every copy is the transcript with the same seq (the copy reuses its envelope): same text, span and times.
    sent = {e.seq: e for e in transcripts.events if e.session_id == ours.session_id}
    assert edge.events and {e.session_id for e in edge.events} == {ours.session_id}
    for copy in edge.events:
        original = sent[copy.seq]
        assert copy.final == (original.type == "transcript_final")
        assert (copy.text, copy.start_media_ns, copy.end_media_ns, copy.media_ns, copy.wall_ns) == (
            original.text, original.start_media_ns, original.end_media_ns, original.media_ns, original.wall_ns)
    assert [e.text for e in edge.events if e.final] == ["go forward ten meters"]
    # The other node has no reply topic: its session was transcribed all the same.
    assert finals(transcripts.events, elsewhere.session_id)[0].text == "go forward ten meters"


async def test_sessions_in_parallel_and_vad_ahead_of_audio(topics, speech_dir):
    clip = load(speech_dir / "misc" / "goforward.wav")
    a, b = EdgeSession(clip), EdgeSession(clip[: len(clip) // 640 * 640])
    async with running_asr(topics) as (worker, producer, transcripts):
        await asyncio.gather(publish(producer, a), publish(producer, b, vad_first=True))
        await transcripts.until(lambda ev: finals(ev, a.session_id) and finals(ev, b.session_id))
    assert finals(transcripts.events, a.session_id)[0].text == "go forward ten meters"
    assert finals(transcripts.events, b.session_id)[0].text == "go forward ten meters"
    assert worker.stats.finals == 2 and worker.stats.utterances == 2


class _SilentScorer(TurnEndEngine):
    """A scorer that never answers (overloaded, or hung)."""

    name = "silent"

    async def score(self, pcm: bytes) -> float:
        await asyncio.Event().wait()
        return 1.0


async def test_a_score_not_ready_in_time_is_left_out_and_the_final_goes_alone(topics, speech_dir):
    session = EdgeSession(load(speech_dir / "misc" / "goforward.wav"))
    async with running_asr(topics, asr_turn_score_wait_ms=50, scorer=_SilentScorer()) as (worker, producer,
                                                                                          transcripts):
        await publish(producer, session)
        await transcripts.until(lambda ev: finals(ev, session.session_id))
    assert finals(transcripts.events, session.session_id)[0].text == "go forward ten meters"
    assert not [e for e in transcripts.events if e.type == "end_of_turn_scored"]
    assert (worker.stats.scores, worker.stats.scores_missed) == (0, 1)


async def test_without_a_scorer_only_transcripts_are_sent(topics, speech_dir):
    session = EdgeSession(load(speech_dir / "misc" / "goforward.wav"))
    async with running_asr(topics, asr_turn_scorer="off") as (worker, producer, transcripts):
        await publish(producer, session)
        await transcripts.until(lambda ev: finals(ev, session.session_id))
    assert worker.scorer is None
    assert {e.type for e in transcripts.events} <= {"transcript_partial", "transcript_final"}


async def test_bad_audio_is_dead_lettered_and_the_worker_goes_on(topics, speech_dir):
    session = EdgeSession(load(speech_dir / "misc" / "goforward.wav"))
    async with running_asr(topics) as (_, producer, transcripts), watching(topics, DLQ.name) as dlq:
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
    async with running_asr(topics), watching(topics, DLQ.name) as dlq:
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


async def test_whisper_final_is_worked_out_at_the_first_pause_and_is_the_final(topics, speech_dir):
    whisper = shared_whisper()
    session = EdgeSession(load(speech_dir / "misc" / "goforward.wav"))
    async with running_asr(topics, engine=whisper) as (worker, producer, transcripts):
        await publish(producer, session)
        await transcripts.until(lambda ev: finals(ev, session.session_id))
    final = finals(transcripts.events, session.session_id)[0]
    assert final.engine == "whisper-tiny.en" and final.text.rstrip(".").lower() == "go forward 10 meters"
    assert (final.start_media_ns, final.end_media_ns) == (session.start_ns, session.end_ns)
    assert (worker.stats.prepared, worker.stats.prepared_used) == (1, 1)
    # The words up to the pause may have gone out as a partial meanwhile; never after the final.
    events = [e for e in transcripts.events if e.session_id == session.session_id]
    assert all(e.type == "transcript_partial" and e.text == final.text for e in events[:-2]), events
