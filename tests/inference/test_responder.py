"""The responder on the real broker: turns in, reply events out on the owning node's topic."""

from __future__ import annotations

import numpy as np
import pytest

from bench.reference_server import Fault
from inference.engines.openai_compat import OpenAiLlm
from schemas.conversation import BargeIn
from schemas.topics import DLQ, TELEMETRY, TURNS
from tests.inference.conftest import endpoint
from tests.inference.kafka_helpers import Turns, ended, watching
from tests.inference.workers import running_responder

pytestmark = pytest.mark.integration

STORY = "tell me a story"


def chunks_of(events, turn_id):
    return [e for e in events if e.type == "reply_audio_chunk" and e.turn_id == turn_id]


async def test_committed_turn_gets_reply_audio_in_order_ending_with_reply_ended(topics):
    turns = Turns()
    async with running_responder(topics) as (responder, producer, edge), watching(topics, TELEMETRY.name) as telemetry:
        commit = turns.committed("t1", "what is seven times six")
        await producer.send(TURNS.name, commit)
        events = edge.of("t1") if await edge.until(ended("t1")) else []
        await telemetry.until(lambda ev: len(ev) >= 2)
    chunks = [e for e in events if e.type == "reply_audio_chunk"]
    assert [e.type for e in events] == ["reply_stages"] + ["reply_audio_chunk"] * len(chunks) + ["reply_text",
                                                                                                 "reply_ended"]
    # The edge learns the stages the responder stamped, and the commit's time (the TurnCommitted's).
    stamped = {e.stage: e.stage_wall_ns for e in telemetry.events}
    assert events[0].stages == {**stamped, "turn_committed": commit.wall_ns}
    assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) >= 3
    assert events[-2].text == "7 times 6 is 42." and events[-1].chunks == len(chunks)
    assert chunks[0].text == "7 times 6 is 42." and all(c.sample_rate == 16000 for c in chunks)
    assert all(c.session_id == turns.session_id for c in events)
    audio = np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2")
    assert 0.8 < len(audio) / 16000 < 4 and np.abs(audio).max() > 1000
    assert {e.stage for e in telemetry.events} == {"llm_first_token", "tts_first_audio"}
    assert all(e.turn_id == "t1" and e.service == "responder" for e in telemetry.events)
    assert list(responder.stats.commit_to_first_chunk_ms)


async def test_cancel_mid_reply_stops_the_stream(topics):
    turns = Turns()
    async with running_responder(topics, responder_max_lead_ms=400) as (responder, producer, edge):
        await producer.send(TURNS.name, turns.committed("t1", STORY))
        await edge.until(lambda ev: len(chunks_of(ev, "t1")) >= 3)
        await producer.send(TURNS.name, turns.cancelled("t1", "barge_in"))
        await edge.until(lambda ev: any(e.type == "reply_cancelled" for e in ev))
        # A later turn of the same session: anything of t1 sent after its cancel would arrive before its end.
        await producer.send(TURNS.name, turns.committed("t2", "hello"))
        await edge.until(ended("t2"))
    t1 = edge.of("t1")
    assert t1[-1].type == "reply_cancelled" and "reply_ended" not in [e.type for e in t1]
    story_audio_ms = sum(len(c.pcm) / 32 for c in chunks_of(t1, "t1"))
    assert story_audio_ms < 5000  # the whole story is about 25 s of speech
    assert responder.stats.cancelled == 1 and list(responder.stats.cancel_ms)


async def test_withdrawn_speculative_reply_never_reaches_the_edge(topics):
    turns = Turns()
    async with running_responder(topics, responder_max_lead_ms=1000) as (responder, producer, edge):
        await producer.send(TURNS.name, turns.speculative("t1", STORY))
        await responder.wait_for(lambda r: r.held_audio_ms("t1") >= 1000, 20)
        await producer.send(TURNS.name, turns.cancelled("t1", "withdrawn"))
        await producer.send(TURNS.name, turns.committed("t2", "hello"))
        await edge.until(ended("t2"))
    assert edge.of("t1") == []
    s = responder.stats
    assert (s.speculative, s.speculative_wasted, s.speculative_used) == (1, 1, 0)
    assert 1000 <= s.wasted.audio_ms < 1500  # a held reply prepares no more than the lead
    assert s.wasted.tokens > 0


async def test_speculative_reply_is_released_on_commit(topics):
    turns = Turns()
    async with running_responder(topics) as (responder, producer, edge):
        await producer.send(TURNS.name, turns.speculative("t1", "what is seven times six"))
        await responder.wait_for(lambda r: r.held_audio_ms("t1") > 1000, 20)
        assert edge.events == []
        await producer.send(TURNS.name, turns.committed("t1", "what is seven times six"))
        events = await edge.until(ended("t1"))
    assert [e.index for e in chunks_of(events, "t1")] == list(range(len(chunks_of(events, "t1"))))
    assert responder.stats.speculative_used == 1 and responder.stats.speculative_wasted == 0


async def test_commit_with_other_text_replaces_the_speculative_reply(topics):
    turns = Turns()
    async with running_responder(topics) as (responder, producer, edge):
        await producer.send(TURNS.name, turns.speculative("t1", "what is seven times"))
        await responder.wait_for(lambda r: r.stats.speculative == 1, 20)
        await producer.send(TURNS.name, turns.committed("t1", "what is seven times six"))
        events = await edge.until(ended("t1"))
    assert [e.text for e in events if e.type == "reply_text"] == ["7 times 6 is 42."]
    assert [e.type for e in events].count("reply_ended") == 1
    assert responder.stats.speculative_wasted == 1


async def test_history_keeps_only_what_was_heard(topics):
    turns = Turns()
    async with running_responder(topics, responder_max_lead_ms=500) as (responder, producer, edge):
        await producer.send(TURNS.name, turns.committed("t1", STORY))
        await edge.until(lambda ev: len(chunks_of(ev, "t1")) >= 9)
        barge = BargeIn(turn_id="t1", played_ms=1500, **{k: v for k, v in turns._base().items()})
        await producer.send(TURNS.name, barge)
        await producer.send(TURNS.name, turns.committed("t2", "my name is alice"))
        await edge.until(ended("t2"))
        messages = responder._history.messages(turns.session_id, "", "next")
    said = [(m.role, m.content) for m in messages]
    assert said[0] == ("user", STORY) and said[2][0] == "user" and said[2][1] == "my name is alice"
    heard = said[1][1]
    assert heard.startswith("Once upon a time, a") and heard.endswith("...") and "lighthouse" not in heard


async def test_bad_input_gives_clear_events_and_nothing_sticks(topics, openai_server):
    turns, lost = Turns(), Turns(node_id="edge-nowhere")
    openai_server.behaviour.faults = [Fault(500)] * 3 + [Fault(400)]
    llm = OpenAiLlm(endpoint(openai_server, retries=2))
    async with running_responder(topics, llm=llm, responder_node_timeout_s=1.0) as (responder, producer, edge), \
            watching(topics, DLQ.name) as dlq:
        await producer.send_raw(TURNS.name, b"{not json", key=turns.session_id.encode())
        await producer.send(TURNS.name, lost.committed("t0", "hello"))
        await producer.send(TURNS.name, turns.committed("t1", ""))
        # One at a time: a new committed turn of a session supersedes the reply still being made.
        for turn_id in ("t2", "t3", "t4"):  # the LLM server answers 500 x3 (retries exhausted), 400, then fine
            await producer.send(TURNS.name, turns.committed(turn_id, "hello"))
            await edge.until(ended(turn_id))
        await dlq.until(lambda ev: len(ev) >= 2)
    assert sorted(e.error.split(":")[0] for e in dlq.events) == ["no reply topic for node 'edge-nowhere'",
                                                                 "not JSON"]
    assert [e.type for e in edge.of("t2")] == ["reply_ended"] and edge.of("t2")[0].chunks == 0
    assert [e.type for e in edge.of("t3")] == ["reply_ended"]
    assert edge.of("t1") == [] and edge.of("t4")[-1].chunks > 0
    s = responder.stats
    assert (s.empty, s.unknown_node, s.failed, s.completed) == (1, 1, 3, 1)  # the unknown node counts as failed


async def test_redelivered_turn_is_answered_once(topics):
    turns = Turns()
    async with running_responder(topics) as (responder, producer, edge):
        await producer.send(TURNS.name, turns.committed("t1", "hello"), turns.committed("t1", "hello"))
        await edge.until(ended("t1"))
        await producer.send(TURNS.name, turns.committed("t1", "hello"), turns.committed("t2", "thank you"))
        await edge.until(ended("t2"))
    assert [e.type for e in edge.of("t1")].count("reply_ended") == 1
    assert responder.stats.duplicates == 2


async def test_new_committed_turn_supersedes_the_reply_in_progress(topics):
    turns = Turns()
    async with running_responder(topics, responder_max_lead_ms=300) as (_, producer, edge):
        await producer.send(TURNS.name, turns.committed("t1", STORY))
        await edge.until(lambda ev: len(chunks_of(ev, "t1")) >= 2)
        await producer.send(TURNS.name, turns.committed("t2", "hello"))
        await edge.until(ended("t2"))
    t1 = edge.of("t1")
    assert t1[-1].type == "reply_cancelled" and "reply_ended" not in [e.type for e in t1]
    first_t2 = next(i for i, e in enumerate(edge.events) if e.turn_id == "t2")
    assert all(e.turn_id != "t1" for e in edge.events[first_t2:])

